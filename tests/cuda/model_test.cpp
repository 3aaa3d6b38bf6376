// The golden checkpoints (tests/data/golden/tiny, tiny_long) end to end
// through the CUDA model: prefill logits, prefill then decode through the
// device KV cache. On fp32 CUDA cores the golden tolerance (1e-4 of the
// largest logit) applies; with every product on tensor cores (activations
// rounded to bf16) the stated bf16 tolerance is 3e-2 of the largest logit.
#include <cstdint>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/cuda/transformer.hpp"
#include "gptoss/model/checkpoint.hpp"
#include "cuda/device_test_support.hpp"
#include "support/compare.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;

namespace {

constexpr double kGoldenTol = 1e-4;
constexpr double kTensorCoreTol = 3e-2;

std::vector<float> rows_of(const std::vector<float>& t, std::size_t width, std::size_t begin, std::size_t end) {
  return {t.begin() + static_cast<std::ptrdiff_t>(begin * width), t.begin() + static_cast<std::ptrdiff_t>(end * width)};
}

}  // namespace

TEST_CASE("CUDA model matches the reference checkpoints", "[cuda][golden][model]") {
  test::skip_without_device();
  for (const char* name : {"tiny", "tiny_long"}) {
    const auto dir = test::golden_dir() / name;
    const auto cpu = load_original_checkpoint<Transformer<DynamicConfig, cpu_reference>>(dir);
    const io::SafetensorsFile golden(dir / "golden.safetensors");
    const auto tokens = golden.read<std::int32_t>("tokens");
    const auto logits = golden.read<float>("logits");
    const auto prefill = static_cast<std::size_t>(golden.read<std::int32_t>("decode_prefill_len")[0]);
    const auto decode_tokens = golden.read<std::int32_t>("decode_tokens");
    const auto decode_golden = golden.read<float>("decode_logits");
    const std::size_t vocab = static_cast<std::size_t>(cpu.dims().vocab);

    struct Mode { const char* what; cuda::ModelOptions options; double tol; };
    const cuda::ModelOptions fp32{.tensor_cores = false};
    const cuda::ModelOptions tensor{.tensor_cores = true, .gemm_min_tokens = 1, .moe_gemm_min_tokens = 1};
    cuda::CudaTransformer model(cpu);
    for (const Mode mode : {Mode{"fp32 CUDA cores", fp32, kGoldenTol}, Mode{"tensor cores", tensor, kTensorCoreTol}}) {
      INFO(name << ", " << mode.what);
      model.set_options(mode.options);
      const Tensor<float, 2> all = model.forward(tokens);
      GPTOSS_REQUIRE_CLOSE(compare_to_max(all.storage(), logits, 0.0, mode.tol));

      cuda::DeviceSequence seq = model.new_sequence(static_cast<index_t>(tokens.size()));
      const Tensor<float, 2> first = model.forward(seq, std::span(tokens).first(prefill));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(first.storage(), rows_of(logits, vocab, 0, prefill), 0.0, mode.tol));
      std::vector<float> decoded;
      for (std::size_t s = 0; s < decode_tokens.size(); ++s) {
        const Tensor<float, 2> step = model.forward_last(seq, std::span(decode_tokens).subspan(s, 1));
        decoded.insert(decoded.end(), step.data(), step.data() + vocab);
      }
      CHECK(seq.length() == static_cast<index_t>(tokens.size()));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(decoded, decode_golden, 0.0, mode.tol));
      // the cache is full: one more token overflows it
      REQUIRE_THROWS_AS(model.forward(seq, std::span(decode_tokens).first(1)), RangeError);
    }
  }
}

TEST_CASE("CUDA model rejects out-of-vocabulary and empty token lists", "[cuda][model][errors]") {
  test::skip_without_device();
  const auto cpu = load_original_checkpoint<Transformer<DynamicConfig, cpu_reference>>(test::golden_dir() / "tiny");
  const cuda::CudaTransformer model(cpu);
  cuda::DeviceSequence seq = model.new_sequence(16);
  const std::vector<std::int32_t> bad = {1, 2, static_cast<std::int32_t>(cpu.dims().vocab)};
  REQUIRE_THROWS_WITH(model.forward(seq, bad), Catch::Contains("outside the vocabulary"));
  REQUIRE(seq.length() == 0);
  const std::vector<std::int32_t> none;
  REQUIRE_THROWS_AS(model.forward(seq, none), RangeError);
}
