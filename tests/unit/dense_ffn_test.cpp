// The dense feed-forward variant: DenseFFN on MXFP4, bf16 and float weights
// against a float64 recomputation (tests/support/float64_model.hpp), on both
// backends; whole dense models (TinyDense) through a checkpoint round trip;
// parameter counts of the "20B dense" config; bad shapes.
#include <cstdint>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/float64_model.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;
using gptoss::test::MessageHas;

namespace {

using Mxfp4 = FP4TensorView<MXFP4Checkpoint>;

/// Random dense weights: one expert of random MoE weights, viewed as a dense MLP.
template <class M>
DenseFFNWeights<M> dense_view(const test::RandomMoEWeights<M>& r) {
  return {{r.norm_scale.view()}, r.mlp1.view(0), r.mlp1_bias.view()[0], r.mlp2.view(0), r.mlp2_bias.view()[0]};
}

template <class M, class Backend>
void check_layer_against_float64(float gain) {
  test::Rng rng(41);
  const ModelDims d{.hidden = 64, .intermediate = 96};
  const DenseFFNParams p = DenseFFNParams::from(d);
  const auto storage = test::random_moe_weights<M>(rng, MoEParams{.hidden = 64, .intermediate = 96, .num_experts = 1,
                                                                   .experts_per_token = 1}, gain);
  const DenseFFNWeights<M> w = dense_view(storage);
  const Tensor<float, 2> x = test::random_matrix(rng, 7, p.hidden, 2.0f);
  Tensor<float, 2> out({7, p.hidden});
  DenseFFN<M, Backend>(p).forward(w, x.view(), out.view());

  test::f64::Rows rows(7);
  for (index_t t = 0; t < 7; ++t) rows[t].assign(&x(t, 0), &x(t, 0) + p.hidden);
  test::f64::add_mlp(d, w, rows);
  std::vector<double> expected;
  for (const auto& r : rows) expected.insert(expected.end(), r.begin(), r.end());
  GPTOSS_REQUIRE_CLOSE(compare_to_max(out.storage(), expected, 0.0, 1e-5));
}

}  // namespace

TEMPLATE_TEST_CASE("DenseFFN matches a float64 recomputation for every weight type", "[dense][property]",
                   Mxfp4, MatrixView<const bf16>, MatrixView<const float>) {
  for (const float gain : {1.0f, 12.0f}) {  // 12: pre-activations past the SwiGLU clamps
    INFO("gain " << gain);
    check_layer_against_float64<TestType, cpu_reference>(gain);
    check_layer_against_float64<TestType, cpu_fast>(gain);
  }
}

TEST_CASE("DenseFFN equals a one-expert top-1 MoE block on the same weights", "[dense]") {
  test::Rng rng(5);
  const MoEParams mp{.hidden = 64, .intermediate = 64, .num_experts = 1, .experts_per_token = 1};
  const auto storage = test::random_moe_weights<Mxfp4>(rng, mp, 4.0f);
  const Tensor<float, 2> x = test::random_matrix(rng, 5, 64);
  Tensor<float, 2> dense({5, 64}), moe({5, 64});
  DenseFFN<Mxfp4>(DenseFFNParams{64, 64}).forward(dense_view(storage), x.view(), dense.view());
  MoEBlock<Mxfp4>(mp).forward(storage.weights(), x.view(), moe.view());
  GPTOSS_REQUIRE_CLOSE(compare_to_max(dense.storage(), moe.storage(), 0.0, 1e-6));
}

TEST_CASE("DenseFFN rejects weights of the wrong shape, naming them", "[dense][errors]") {
  test::Rng rng(3);
  const auto storage = test::random_moe_weights<MatrixView<const bf16>>(
      rng, MoEParams{.hidden = 64, .intermediate = 64, .num_experts = 1, .experts_per_token = 1});
  DenseFFNWeights<MatrixView<const bf16>> w = dense_view(storage);
  const DenseFFN<> layer(DenseFFNParams{64, 32});  // expects (64, 64) / (64, 32)
  Tensor<float, 2> x({2, 64});
  REQUIRE_THROWS_MATCHES(layer.forward(w, x.view(), x.view()), ShapeError,
                         MessageHas({"mlp mlp1_weight", "(64, 64)", "(128, 64)"}));
  const DenseFFN<> right(DenseFFNParams{64, 64});
  Tensor<float, 2> narrow({2, 32});
  REQUIRE_THROWS_MATCHES(right.forward(w, narrow.view(), narrow.view()), ShapeError, MessageHas({"DenseFFN", "(2, 32)"}));
  REQUIRE_THROWS_AS(DenseFFN<>(DenseFFNParams{64, 0}), ConfigError);
}

TEMPLATE_TEST_CASE("A dense model matches float64 after a checkpoint round trip, prefill and decode",
                   "[dense][model]", Mxfp4, MatrixView<const bf16>, MatrixView<const float>) {
  using Model = Transformer<TinyDense, cpu_fast, GptOssDenseBlocks<cpu_fast, TestType>>;
  Model written;
  fill_random_weights(written, 77);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gptoss_dense_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  write_original_checkpoint(written, dir);
  const Model model = load_original_checkpoint<Model>(dir);
  std::filesystem::remove_all(dir);

  const auto tokens = test::random_tokens(9, model.dims().vocab, 12);
  const Tensor<float, 2> logits = model.forward(tokens);
  const auto expected = test::f64::reference_logits(model, test::f64::gptoss_layers(model), tokens);
  GPTOSS_REQUIRE_CLOSE(compare_to_max(logits.storage(), expected, 0.0, 1e-4));
  GPTOSS_REQUIRE_CLOSE(compare_to_max(written.forward(tokens).storage(), logits.storage(), 0.0, 0.0));

  // Prefill 4, then one token at a time through the KV cache.
  Sequence seq = model.new_sequence(16);
  std::vector<float> rows;
  for (std::size_t t = 0; t < tokens.size(); t += (t == 0 ? 4 : 1)) {
    const std::size_t n = t == 0 ? 4 : 1;
    const auto step = model.forward(seq, std::span(tokens).subspan(t, n));
    rows.insert(rows.end(), step.storage().begin(), step.storage().end());
  }
  GPTOSS_REQUIRE_CLOSE(compare_to_max(rows, expected, 0.0, 1e-4));

  // Every MLP parameter is active; the counts follow the shapes.
  const ModelDims& d = model.dims();
  const ParameterCount c = count_parameters(model);
  const std::int64_t mlp = 3LL * d.hidden * d.intermediate + 2LL * d.intermediate + 2LL * d.hidden;
  CHECK(c.expert == d.num_layers * (mlp - d.hidden));  // mlp1/mlp2 weights and biases
  CHECK(c.active_per_token == c.total - c.embedding);
}

TEST_CASE("The 20B dense config has gpt-oss-20b's parameters in one MLP per layer", "[dense][config]") {
  using Dense = Transformer<GptOss20bDense, cpu_fast, GptOssDenseBlocks<cpu_fast, Mxfp4>>;
  const ParameterCount dense = count_parameters(Dense());
  const ParameterCount moe = count_parameters(Transformer<GptOss20b>());
  const ModelDims& d = GptOss20b::value;
  // The router (E x H + E) and E - 1 of the E mlp2 bias vectors go; nothing else changes.
  const std::int64_t router = static_cast<std::int64_t>(d.num_experts) * d.hidden + d.num_experts;
  const std::int64_t biases = static_cast<std::int64_t>(d.num_experts - 1) * d.hidden;
  CHECK(dense.total == moe.total - d.num_layers * (router + biases));
  CHECK(dense.active_per_token == dense.total - dense.embedding);
  CHECK(dense.total > 20'800'000'000LL);
  CHECK(dense.total < 21'000'000'000LL);
}
