// Checks a `gptoss forward --dump` folder: the documented tensor names and
// shapes for the layers and heads asked for, and that every attention row is
// a distribution: probabilities and sink mass in [0, 1], summing to 1, none
// on later tokens. Used by the cli.forward_dump.* tests.
//
//   check_dump DIR TOKENS LAYERS HEADS    e.g. check_dump out 40 0,3 1,6
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "gptoss/io/safetensors.hpp"

namespace {

using gptoss::index_t;

std::vector<index_t> ints(const std::string& text) {
  std::vector<index_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

int failures = 0;
void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "check_dump: " << what << "\n";
    ++failures;
  }
}

void expect_shape(const gptoss::io::SafetensorsFile& f, const std::string& name, std::vector<index_t> shape) {
  if (!f.contains(name)) return expect(false, "missing tensor " + name);
  expect(f.info(name).shape == shape, name + ": shape " + gptoss::shape_string(f.info(name).shape) + ", expected " +
                                          gptoss::shape_string(shape));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: check_dump DIR TOKENS LAYERS HEADS\n";
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    const index_t t_count = std::stoll(argv[2]);
    const auto layers = ints(argv[3]), heads = ints(argv[4]);
    const index_t h_count = static_cast<index_t>(heads.size());
    const gptoss::io::SafetensorsFile residual(dir / "residual.safetensors"), router(dir / "router.safetensors"),
        attention(dir / "attention.safetensors");
    expect(residual.tensors().size() == 3 * layers.size(), "residual.safetensors holds other tensors");
    expect(router.tensors().size() == 3 * layers.size(), "router.safetensors holds other tensors");
    expect(attention.tensors().size() == 3 * layers.size() + 1, "attention.safetensors holds other tensors");
    expect_shape(attention, "query_positions", {t_count});
    double worst_sum = 0.0, min_sink = 1.0, max_sink = 0.0;
    for (index_t l : layers) {
      const std::string p = "block." + std::to_string(l) + ".";
      const index_t hidden = residual.contains(p + "input") ? residual.info(p + "input").shape.at(1) : 0;
      for (const char* stage : {"input", "attn_out", "mlp_out"}) expect_shape(residual, p + stage, {t_count, hidden});
      const index_t experts = router.contains(p + "router_logits") ? router.info(p + "router_logits").shape.at(1) : 0;
      const index_t k = router.contains(p + "expert_indices") ? router.info(p + "expert_indices").shape.at(1) : 0;
      expect(experts > 0 && k > 0 && k <= experts, p + ": expert count or top-k missing");
      expect_shape(router, p + "router_logits", {t_count, experts});
      expect_shape(router, p + "expert_indices", {t_count, k});
      expect_shape(router, p + "expert_weights", {t_count, k});
      expect_shape(attention, p + "attn_probs", {h_count, t_count, t_count});
      expect_shape(attention, p + "attn_sink", {h_count, t_count});
      if (failures) continue;
      std::vector<index_t> stored_heads;
      for (auto h : attention.read<std::int32_t>(p + "attn_heads")) stored_heads.push_back(h);
      expect(stored_heads == heads, p + "attn_heads differ from the heads asked for");
      const auto probs = attention.read<float>(p + "attn_probs");
      const auto sink = attention.read<float>(p + "attn_sink");
      for (index_t i = 0; i < h_count; ++i) {
        for (index_t t = 0; t < t_count; ++t) {
          const float s = sink[static_cast<std::size_t>(i * t_count + t)];
          min_sink = std::min<double>(min_sink, s);
          max_sink = std::max<double>(max_sink, s);
          double sum = s;
          for (index_t j = 0; j < t_count; ++j) {
            const float v = probs[static_cast<std::size_t>((i * t_count + t) * t_count + j)];
            if (!(v >= 0.0f && v <= 1.0f) || (j > t && v != 0.0f)) {
              expect(false, p + "attn_probs: " + std::to_string(v) + " at head row " + std::to_string(i) +
                                ", query " + std::to_string(t) + ", key " + std::to_string(j));
              return 1;
            }
            sum += v;
          }
          worst_sum = std::max(worst_sum, std::fabs(sum - 1.0));
        }
      }
    }
    expect(min_sink >= 0.0 && max_sink <= 1.0, "sink mass outside [0, 1]");
    expect(worst_sum <= 1e-5, "an attention row plus its sink mass is off 1 by " + std::to_string(worst_sum));
    if (failures) return 1;
    std::cout << "check_dump: " << layers.size() << " layers, " << h_count << " heads, " << t_count
              << " tokens: names and shapes as documented; rows + sink sum to 1 within " << worst_sum
              << "; sink mass in [" << min_sink << ", " << max_sink << "]\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "check_dump: " << e.what() << "\n";
    return 1;
  }
}
