// Example: look inside a forward pass with an observer. Runs a prompt through
// a checkpoint (default: the bundled tiny reference checkpoint) with an
// observer that asks only for MoE routing and attention maps, then prints,
// per layer, how many tokens each expert received (top-k choices) and, per
// query head, the mean probability its learned sink absorbed. Layers whose
// observer hooks are absent cost nothing; here the residual hook is absent.
//
// Usage: 05_inspect [checkpoint_dir [comma-separated token ids]]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"

using namespace gptoss;

namespace {

/// Counts expert choices and sums sink mass, per layer.
struct Inspector {
  index_t num_heads = 0;
  std::vector<std::vector<int>> expert_load;   // [layer][expert]
  std::vector<std::vector<double>> sink_sum;   // [layer][head]
  std::vector<index_t> queries;                // [layer]
  double worst_row_error = 0.0;                // |sum of a row + sink - 1|

  void routing(int layer, const MoERouting& r) {
    auto& load = expert_load.at(static_cast<std::size_t>(layer));
    load.resize(static_cast<std::size_t>(r.logits.extent(1)));
    for (std::int32_t e : r.indices.storage()) ++load.at(static_cast<std::size_t>(e));
  }
  std::vector<index_t> attention_heads(int /*layer*/) const {
    std::vector<index_t> all;
    for (index_t h = 0; h < num_heads; ++h) all.push_back(h);
    return all;
  }
  void attention(int layer, const AttentionProbabilities& a) {
    auto& sums = sink_sum.at(static_cast<std::size_t>(layer));
    sums.resize(a.heads.size());
    for (std::size_t i = 0; i < a.heads.size(); ++i) {
      for (index_t t = 0; t < a.sink.extent(1); ++t) {
        sums[i] += a.sink(static_cast<index_t>(i), t);
        double row = a.sink(static_cast<index_t>(i), t);
        for (index_t j = 0; j < a.probs.extent(2); ++j) row += a.probs(static_cast<index_t>(i), t, j);
        worst_row_error = std::max(worst_row_error, std::abs(row - 1.0));
      }
    }
    queries.at(static_cast<std::size_t>(layer)) += a.sink.extent(1);
  }
};

std::vector<std::int32_t> prompt_tokens(const std::filesystem::path& dir, int argc, char** argv) {
  std::vector<std::int32_t> tokens;
  if (argc > 2) {
    std::stringstream in(argv[2]);
    std::string item;
    while (std::getline(in, item, ',')) tokens.push_back(std::stoi(item));
  } else if (std::filesystem::exists(dir / "golden.safetensors")) {
    tokens = io::SafetensorsFile(dir / "golden.safetensors").read<std::int32_t>("tokens");
  } else {
    tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  }
  return tokens;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::filesystem::path dir = argc > 1 ? argv[1] : GPTOSS_EXAMPLE_MODEL_DIR;
    const auto model = load_checkpoint(dir);
    const ModelDims& d = model.dims();
    const std::vector<std::int32_t> tokens = prompt_tokens(dir, argc, argv);

    Inspector inspect{d.num_heads,
                      std::vector<std::vector<int>>(static_cast<std::size_t>(d.num_layers)),
                      std::vector<std::vector<double>>(static_cast<std::size_t>(d.num_layers)),
                      std::vector<index_t>(static_cast<std::size_t>(d.num_layers), 0)};
    // A prefill of all but the last token, then one KV-cache step: both are observed.
    Sequence seq = model.new_sequence(static_cast<index_t>(tokens.size()));
    const std::span<const std::int32_t> all(tokens);
    model.forward(seq, all.first(all.size() - 1), inspect);
    model.forward(seq, all.last(1), inspect);

    std::printf("%zu tokens through %s (%d layers, %lld experts, top-%lld, %lld heads)\n", tokens.size(),
                dir.string().c_str(), d.num_layers, static_cast<long long>(d.num_experts),
                static_cast<long long>(d.experts_per_token), static_cast<long long>(d.num_heads));
    for (int l = 0; l < d.num_layers; ++l) {
      const auto li = static_cast<std::size_t>(l);
      std::printf("\nlayer %d (%s)\n  expert load (tokens routed to each expert):\n", l,
                  ModelDims::is_sliding_layer(l) ? "sliding window" : "full attention");
      for (std::size_t e = 0; e < inspect.expert_load[li].size(); ++e) {
        const int n = inspect.expert_load[li][e];
        std::printf("    expert %2zu %4d %s\n", e, n, std::string(static_cast<std::size_t>(n), '#').c_str());
      }
      std::printf("  mean sink mass per head:");
      for (double s : inspect.sink_sum[li]) std::printf(" %.3f", s / static_cast<double>(inspect.queries[li]));
      std::printf("\n");
    }
    std::printf("\nevery attention row plus its sink mass sums to 1 within %.2g\n", inspect.worst_row_error);
    return inspect.worst_row_error <= 1e-5 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "05_inspect: %s\n", e.what());
    return 1;
  }
}
