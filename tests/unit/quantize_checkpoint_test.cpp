// Checkpoint quantization: NVFP4 checkpoints written and loaded in both
// layouts (the expert values equal the quantizer's output for the source's
// decoded experts), the reported errors against a float64 recomputation,
// and clear errors for a format the model type does not hold.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/model/any_checkpoint.hpp"
#include "gptoss/model/quantize.hpp"

#include "support/matchers.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("gptoss_quantize_test_" + name);
  fs::remove_all(p);
  return p;
}

const MoEWeights<FP4TensorView<MXFP4Checkpoint>>& mlp_of(const MXFP4Model& m, int layer) {
  return layer % 2 == 0 ? std::get<0>(m.weights().blocks)[static_cast<std::size_t>(layer / 2)].mlp
                        : std::get<1>(m.weights().blocks)[static_cast<std::size_t>(layer / 2)].mlp;
}
const MoEWeights<FP4TensorView<NVFP4>>& mlp_of(const NVFP4Model& m, int layer) {
  return layer % 2 == 0 ? std::get<0>(m.weights().blocks)[static_cast<std::size_t>(layer / 2)].mlp
                        : std::get<1>(m.weights().blocks)[static_cast<std::size_t>(layer / 2)].mlp;
}

}  // namespace

TEST_CASE("quantize_checkpoint: NVFP4 experts are written, loaded in both layouts and reported", "[quantize][nvfp4]") {
  const fs::path src = test::golden_dir() / "tiny", out = scratch("nvfp4"), hf = scratch("nvfp4_hf");
  const QuantizeReport report = quantize_checkpoint(src, out, {.format = "nvfp4", .scale = ScaleRule::search});
  const auto original = load_checkpoint<MXFP4Model>(src);
  const auto quantized = load_checkpoint<NVFP4Model>(out);
  write_checkpoint(quantized, hf, CheckpointLayout::hugging_face, 2);
  const auto reloaded = load_checkpoint<NVFP4Model>(hf);
  REQUIRE(report.tensors.size() == 2 * static_cast<std::size_t>(original.dims().num_layers));
  for (int l = 0; l < original.dims().num_layers; ++l) {
    const auto& w0 = mlp_of(original, l).mlp1_weight;
    const auto& wq = mlp_of(quantized, l).mlp1_weight;
    const auto& wh = mlp_of(reloaded, l).mlp1_weight;
    double err2 = 0.0, ref2 = 0.0, max_abs = 0.0;
    std::size_t mismatches = 0;
    for (std::size_t e = 0; e < w0.size(); ++e) {
      const Tensor<float, 2> x = dequantize(w0[e]);
      const Tensor<float, 2> want = dequantize(FP4Tensor<NVFP4>::quantize(x.view(), ScaleRule::search).view());
      const Tensor<float, 2> got = dequantize(wq[e]), got_hf = dequantize(wh[e]);
      REQUIRE(wq[e].global_scale() == wh[e].global_scale());
      for (std::size_t i = 0; i < x.storage().size(); ++i) {
        mismatches += got.storage()[i] != want.storage()[i] || got_hf.storage()[i] != want.storage()[i];
        const double d = static_cast<double>(got.storage()[i]) - x.storage()[i];
        err2 += d * d;
        ref2 += static_cast<double>(x.storage()[i]) * x.storage()[i];
        max_abs = std::max(max_abs, std::fabs(d));
      }
    }
    CHECK(mismatches == 0);
    const TensorQuantError& t = report.tensors[static_cast<std::size_t>(2 * l)];
    CHECK(t.name == "block." + std::to_string(l) + ".mlp.mlp1_weight");
    CHECK(t.rel_frobenius == Approx(std::sqrt(err2 / ref2)).epsilon(1e-9));
    CHECK(t.max_abs == max_abs);
    CHECK(t.rel_frobenius > 0.0);
  }
  // The quantized model runs and stays near the original.
  const std::vector<std::int32_t> tokens{1, 7, 300, 42, 5};
  const Tensor<float, 2> a = original.forward(tokens), b = quantized.forward(tokens), c = reloaded.forward(tokens);
  CHECK(b.storage() == c.storage());
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.storage().size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a.storage()[i]) - b.storage()[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(a.storage()[i])));
  }
  CHECK(diff > 0.0);
  CHECK(diff < 0.5 * scale);
  fs::remove_all(out);
  fs::remove_all(hf);
}

TEST_CASE("quantize_checkpoint: expert formats the model type does not hold are clear errors", "[quantize][bad-input]") {
  const fs::path src = test::golden_dir() / "tiny", out = scratch("mismatch");
  QuantizeOptions options;
  options.format = "nvfp4";
  quantize_checkpoint(src, out, options);
  REQUIRE_THROWS_MATCHES(load_checkpoint<MXFP4Model>(out), FormatError,
                         test::MessageHas({out.string(), "stores its expert weights as nvfp4", "expects mxfp4"}));
  REQUIRE_THROWS_MATCHES(load_checkpoint<NVFP4Model>(src), FormatError,
                         test::MessageHas({"stores its expert weights as mxfp4", "expects nvfp4"}));
  REQUIRE_THROWS_MATCHES(load_original_checkpoint<MXFP4Model>(out), FormatError, test::MessageHas({"nvfp4"}));
  // An unknown quant_method in config.json.
  std::ifstream in(out / "config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  text.replace(text.find("\"nvfp4\""), 7, "\"int3\"");
  std::ofstream(out / "config.json") << text;
  REQUIRE_THROWS_MATCHES(load_checkpoint<NVFP4Model>(out), ConfigError, test::MessageHas({"config.json", "'int3'"}));
  // Unknown formats and writing over the source.
  options.format = "fp3";
  REQUIRE_THROWS_MATCHES(quantize_checkpoint(src, out, options), RangeError, test::MessageHas({"'fp3'"}));
  options.format = "mxfp4";
  REQUIRE_THROWS_MATCHES(quantize_checkpoint(src, src, options), RangeError, test::MessageHas({"is the checkpoint being read"}));
  fs::remove_all(out);
}

TEST_CASE("quantize_checkpoint: --modules all stores quantize-dequantized attention and embeddings as bf16",
          "[quantize][simulated]") {
  const fs::path src = test::golden_dir() / "tiny", out = scratch("all");
  const QuantizeReport report = quantize_checkpoint(src, out, {.format = "nvfp4", .modules = QuantModules::all});
  const auto original = load_checkpoint<MXFP4Model>(src);
  const auto quantized = load_checkpoint<NVFP4Model>(out);
  // Each (rows, cols) bf16 matrix equals its NVFP4 quantize-dequantize (power-of-two global scale).
  const auto expect_simulated = [](MatrixView<const bf16> before, MatrixView<const bf16> after, const char* what) {
    Tensor<float, 2> x({before.extent(0), before.extent(1)});
    for (index_t i = 0; i < x.size(); ++i) x.storage()[static_cast<std::size_t>(i)] = before.data()[i].to_float();
    const Tensor<float, 2> want =
        dequantize(FP4Tensor<NVFP4>::quantize(x.view(), ScaleRule::ocp, GlobalScale::power_of_two).view());
    std::size_t mismatches = 0, changed = 0;
    for (index_t i = 0; i < x.size(); ++i) {
      mismatches += after.data()[i].to_float() != want.storage()[static_cast<std::size_t>(i)];
      changed += after.data()[i].to_float() != x.storage()[static_cast<std::size_t>(i)];
    }
    INFO(what);
    CHECK(mismatches == 0);
    CHECK(changed > 0);
  };
  expect_simulated(original.weights().embedding.table, quantized.weights().embedding.table, "embedding");
  expect_simulated(original.weights().unembedding.weight, quantized.weights().unembedding.weight, "unembedding");
  const auto& a0 = std::get<0>(original.weights().blocks)[0].attn;
  const auto& q0 = std::get<0>(quantized.weights().blocks)[0].attn;
  expect_simulated(a0.out_weight, q0.out_weight, "block 0 out");
  // QKV is quantized as one matrix (one global scale): its rows are contiguous in the original layout.
  const index_t qkv_rows = a0.q_weight.extent(0) + a0.k_weight.extent(0) + a0.v_weight.extent(0);
  expect_simulated(MatrixView<const bf16>(a0.q_weight.data(), {qkv_rows, a0.q_weight.extent(1)}),
                   MatrixView<const bf16>(q0.q_weight.data(), {qkv_rows, q0.q_weight.extent(1)}), "block 0 qkv");
  CHECK(q0.sinks.data()[0].to_float() == a0.sinks.data()[0].to_float());
  std::size_t simulated = 0;
  for (const auto& t : report.tensors) simulated += t.simulated;
  CHECK(simulated == 2 + 2 * static_cast<std::size_t>(original.dims().num_layers));
  fs::remove_all(out);
}
