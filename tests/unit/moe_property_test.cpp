// MoEBlock with MXFP4, bf16 and float expert matrices against an independent
// float64 recomputation on random weights: RMSNorm, router, top-k (ties to
// the lower index), softmax over the selected logits, clipped SwiGLU experts
// and the weighted sum plus residual. Also: pre-activations past the SwiGLU
// limit, tied router logits, top-1 of one expert as a dense MLP, and shape
// errors that name the tensor.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_elementwise;
using gptoss::test::compare_to_max;

namespace {

using FP4Experts = FP4TensorView<MXFP4Checkpoint>;
using BF16Experts = MatrixView<const bf16>;
using F32Experts = MatrixView<const float>;

/// The block in float64, with the routing and what the data exercised.
struct ReferenceMoE {
  std::vector<double> logits;        // (T, E)
  std::vector<std::int32_t> indices; // (T, k)
  std::vector<double> weights;       // (T, k)
  std::vector<double> out;           // (T, H)
  double top_k_margin = INFINITY;    // smallest gap between the k-th and the next logit
  int glu_clipped = 0;               // gate pre-activations above the limit
  int linear_clipped = 0;            // linear pre-activations outside [-limit, limit]
};

/// Clipped SwiGLU of one (gate, linear) pair, from the gpt-oss definition.
double swiglu(double glu, double linear, double limit) {
  glu = std::min(glu, limit);
  linear = std::max(-limit, std::min(linear, limit));
  return glu * (1.0 / (1.0 + std::exp(-1.702 * glu))) * (linear + 1.0);
}

/// RMSNorm of row t of x (T, H) with the given scale, in float64.
std::vector<double> reference_norm(const Tensor<float, 2>& x, index_t t,
                                   const std::vector<double>& scale, double eps) {
  const index_t h = x.extent(1);
  double ms = 0.0;
  for (index_t i = 0; i < h; ++i) ms += static_cast<double>(x(t, i)) * x(t, i);
  const double inv = 1.0 / std::sqrt(ms / static_cast<double>(h) + eps);
  std::vector<double> n;
  for (index_t i = 0; i < h; ++i) n.push_back(x(t, i) * inv * scale[static_cast<std::size_t>(i)]);
  return n;
}

/// Expert e applied to the normed row n (H): mlp2(swiglu(mlp1 n + b1)) + b2, (H).
template <class M>
std::vector<double> reference_expert(const test::RandomMoEWeights<M>& rw, index_t e,
                                     const std::vector<double>& n, ReferenceMoE* stats) {
  const index_t h = rw.params.hidden, inter = rw.params.intermediate;
  const double limit = rw.params.swiglu_limit;
  std::vector<double> act(static_cast<std::size_t>(inter));  // (I)
  for (index_t m = 0; m < inter; ++m) {
    double u[2];  // columns 2m (gate) and 2m + 1 (linear)
    for (index_t c = 0; c < 2; ++c) {
      const index_t row = 2 * m + c;
      double acc = rw.mlp1_bias(e, row).to_float();
      for (index_t i = 0; i < h; ++i) acc += rw.mlp1.value(e, row, i) * n[static_cast<std::size_t>(i)];
      u[c] = acc;
    }
    if (stats != nullptr) {
      stats->glu_clipped += u[0] > limit;
      stats->linear_clipped += std::fabs(u[1]) > limit;
    }
    act[static_cast<std::size_t>(m)] = swiglu(u[0], u[1], limit);
  }
  std::vector<double> y(static_cast<std::size_t>(h));  // (H)
  for (index_t o = 0; o < h; ++o) {
    double acc = rw.mlp2_bias(e, o).to_float();
    for (index_t m = 0; m < inter; ++m) acc += rw.mlp2.value(e, o, m) * act[static_cast<std::size_t>(m)];
    y[static_cast<std::size_t>(o)] = acc;
  }
  return y;
}

template <class M>
ReferenceMoE reference_moe(const test::RandomMoEWeights<M>& rw, const Tensor<float, 2>& x) {
  const MoEParams& p = rw.params;
  const index_t t_count = x.extent(0), h = p.hidden, e_count = p.num_experts;
  const index_t k = p.experts_per_token;
  const auto scale = test::to_double(rw.norm_scale);
  ReferenceMoE r;
  for (index_t t = 0; t < t_count; ++t) {
    const std::vector<double> n = reference_norm(x, t, scale, p.rms_eps);  // (H)
    std::vector<double> logits;                                          // (E)
    for (index_t e = 0; e < e_count; ++e) {
      double acc = rw.gate_bias(e).to_float();
      for (index_t i = 0; i < h; ++i) acc += static_cast<double>(rw.gate_weight(e, i).to_float()) * n[static_cast<std::size_t>(i)];
      logits.push_back(acc);
    }
    r.logits.insert(r.logits.end(), logits.begin(), logits.end());

    // Top-k by repeated selection of the largest remaining logit; scanning
    // upwards with a strict > keeps the lower index on ties.
    std::vector<bool> taken(static_cast<std::size_t>(e_count), false);
    std::vector<std::int32_t> chosen;
    for (index_t j = 0; j < k; ++j) {
      index_t best = -1;
      for (index_t e = 0; e < e_count; ++e) {
        if (taken[static_cast<std::size_t>(e)]) continue;
        if (best < 0 || logits[static_cast<std::size_t>(e)] > logits[static_cast<std::size_t>(best)]) best = e;
      }
      taken[static_cast<std::size_t>(best)] = true;
      chosen.push_back(static_cast<std::int32_t>(best));
    }
    for (index_t e = 0; e < e_count; ++e) {
      if (!taken[static_cast<std::size_t>(e)]) {
        r.top_k_margin = std::min(r.top_k_margin, logits[static_cast<std::size_t>(chosen.back())] -
                                                      logits[static_cast<std::size_t>(e)]);
      }
    }
    double max_logit = -INFINITY, sum = 0.0;
    for (std::int32_t e : chosen) max_logit = std::max(max_logit, logits[static_cast<std::size_t>(e)]);
    for (std::int32_t e : chosen) sum += std::exp(logits[static_cast<std::size_t>(e)] - max_logit);

    std::vector<double> out(static_cast<std::size_t>(h));
    for (index_t i = 0; i < h; ++i) out[static_cast<std::size_t>(i)] = x(t, i);
    for (std::int32_t e : chosen) {
      const double w = std::exp(logits[static_cast<std::size_t>(e)] - max_logit) / sum;
      r.indices.push_back(e);
      r.weights.push_back(w);
      const std::vector<double> y = reference_expert(rw, e, n, &r);
      for (index_t i = 0; i < h; ++i) out[static_cast<std::size_t>(i)] += w * y[static_cast<std::size_t>(i)];
    }
    r.out.insert(r.out.end(), out.begin(), out.end());
  }
  return r;
}

MoEParams make_params(index_t hidden, index_t inter, index_t experts, index_t k) {
  MoEParams p;
  p.hidden = hidden;
  p.intermediate = inter;
  p.num_experts = experts;
  p.experts_per_token = k;
  return p;
}

/// Runs the block; checks routing and output against the recomputation.
template <class M>
void check_against_reference(const test::RandomMoEWeights<M>& rw, const Tensor<float, 2>& x,
                             const ReferenceMoE& ref) {
  const MoEBlock<M> block(rw.params);
  Tensor<float, 2> out(x.shape());  // (T, H)
  MoERouting routing;
  block.forward(rw.weights(), x.view(), out.view(), &routing);

  GPTOSS_REQUIRE_CLOSE(compare_to_max(routing.logits.storage(), ref.logits, 0.0, 1e-5));
  CHECK(routing.indices.storage() == ref.indices);
  GPTOSS_REQUIRE_CLOSE(compare_elementwise(routing.weights.storage(), ref.weights, 1e-6, 1e-5));
  GPTOSS_REQUIRE_CLOSE(compare_to_max(out.storage(), ref.out, 0.0, 1e-5));
  // The MoE branch alone (out - x), so that the residual cannot hide errors.
  std::vector<double> branch, branch_ref;
  for (std::size_t i = 0; i < ref.out.size(); ++i) {
    branch.push_back(static_cast<double>(out.storage()[i]) - x.storage()[i]);
    branch_ref.push_back(ref.out[i] - x.storage()[i]);
  }
  GPTOSS_REQUIRE_CLOSE(compare_to_max(branch, branch_ref, 1e-6 * test::max_abs(x.storage()), 1e-5));
}

struct MoEShape {
  index_t hidden, inter, experts, k;
};
const MoEShape kShapes[] = {{64, 64, 4, 2}, {64, 32, 6, 3}, {96, 64, 5, 1}};

template <class M>
void check_random_blocks(float gain) {
  for (const MoEShape& s : kShapes) {
    for (const std::uint32_t seed : {1u, 2u}) {
      DYNAMIC_SECTION("H " << s.hidden << ", I " << s.inter << ", E " << s.experts << ", k " << s.k
                           << ", seed " << seed) {
        test::Rng rng(seed * 1000 + static_cast<std::uint32_t>(s.experts));
        const auto rw = test::random_moe_weights<M>(rng, make_params(s.hidden, s.inter, s.experts, s.k), gain);
        const Tensor<float, 2> x = test::random_matrix(rng, 7, s.hidden);  // (T, H)
        const ReferenceMoE ref = reference_moe(rw, x);
        // Routing near a tie could flip on float rounding: the data avoid it.
        REQUIRE(ref.top_k_margin > 1e-4);
        if (gain > 2.0f * rw.params.swiglu_limit) {
          // The clamps are exercised on both halves.
          CHECK(ref.glu_clipped > 0);
          CHECK(ref.linear_clipped > 0);
        }
        check_against_reference(rw, x, ref);
      }
    }
  }
}

}  // namespace

TEST_CASE("MoE property: MXFP4 experts match the float64 recomputation", "[property][moe]") {
  check_random_blocks<FP4Experts>(1.5f);
}

TEST_CASE("MoE property: bf16 experts match the float64 recomputation", "[property][moe]") {
  check_random_blocks<BF16Experts>(1.5f);
}

TEST_CASE("MoE property: float experts match the float64 recomputation", "[property][moe]") {
  check_random_blocks<F32Experts>(1.5f);
}

TEST_CASE("MoE property: pre-activations past the SwiGLU limit are clamped like the recomputation",
          "[property][moe]") {
  SECTION("MXFP4") { check_random_blocks<FP4Experts>(20.0f); }
  SECTION("bf16") { check_random_blocks<BF16Experts>(20.0f); }
  SECTION("float") { check_random_blocks<F32Experts>(20.0f); }
}

TEST_CASE("MoE property: tied router logits pick the lower expert indices", "[property][moe]") {
  struct TieCase {
    std::vector<float> biases;
    std::vector<std::int32_t> expected;  // top-3, by descending logit then ascending index
  };
  const TieCase cases[] = {
      {{0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, {0, 1, 2}},
      {{0.5f, 1.0f, 0.5f, 1.0f, 1.0f, 0.5f}, {1, 3, 4}},
      {{1.0f, 0.5f, 0.5f, 0.5f, 2.0f, 0.5f}, {4, 0, 1}},
      {{-1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 3.0f}, {5, 1, 2}},
  };
  for (std::size_t c = 0; c < std::size(cases); ++c) {
    DYNAMIC_SECTION("case " << c) {
      test::Rng rng(static_cast<std::uint32_t>(40 + c));
      auto rw = test::random_moe_weights<BF16Experts>(rng, make_params(64, 32, 6, 3));
      // Zero gate weights: every token's logits are exactly the biases.
      for (bf16& v : rw.gate_weight.storage()) v = bf16::from_float(0.0f);
      for (index_t e = 0; e < 6; ++e) rw.gate_bias(e) = bf16::from_float(cases[c].biases[static_cast<std::size_t>(e)]);
      const Tensor<float, 2> x = test::random_matrix(rng, 4, 64);  // (T, H)
      const ReferenceMoE ref = reference_moe(rw, x);

      const MoEBlock<BF16Experts> block(rw.params);
      Tensor<float, 2> out(x.shape());
      MoERouting routing;
      block.forward(rw.weights(), x.view(), out.view(), &routing);
      for (index_t t = 0; t < 4; ++t) {
        const std::vector<std::int32_t> row(&routing.indices(t, 0), &routing.indices(t, 0) + 3);
        CHECK(row == cases[c].expected);
      }
      CHECK(routing.indices.storage() == ref.indices);
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(routing.weights.storage(), ref.weights, 1e-7, 1e-6));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(out.storage(), ref.out, 0.0, 1e-5));
    }
  }
}

TEST_CASE("MoE property: top-1 of a single expert is a dense SwiGLU MLP", "[property][moe]") {
  auto check = [](auto tag, std::uint32_t seed) {
    using M = decltype(tag);
    test::Rng rng(seed);
    const auto rw = test::random_moe_weights<M>(rng, make_params(64, 64, 1, 1), 4.0f);
    const Tensor<float, 2> x = test::random_matrix(rng, 5, 64);  // (T, H)
    // out = x + mlp2(swiglu(mlp1(norm(x)))), no routing involved.
    std::vector<double> dense;  // (T, H)
    const auto scale = test::to_double(rw.norm_scale);
    for (index_t t = 0; t < 5; ++t) {
      const std::vector<double> y = reference_expert(rw, 0, reference_norm(x, t, scale, 1e-5), nullptr);
      for (index_t i = 0; i < 64; ++i) dense.push_back(x(t, i) + y[static_cast<std::size_t>(i)]);
    }
    const MoEBlock<M> block(rw.params);
    Tensor<float, 2> out(x.shape());
    MoERouting routing;
    block.forward(rw.weights(), x.view(), out.view(), &routing);
    for (index_t t = 0; t < 5; ++t) {
      CHECK(routing.indices(t, 0) == 0);
      CHECK(routing.weights(t, 0) == 1.0f);
    }
    GPTOSS_REQUIRE_CLOSE(compare_to_max(out.storage(), dense, 0.0, 1e-5));
  };
  SECTION("MXFP4") { check(FP4Experts{}, 51); }
  SECTION("bf16") { check(BF16Experts{}, 52); }
  SECTION("float") { check(F32Experts{}, 53); }
}

TEST_CASE("MoE property: wrong weight shapes throw ShapeError naming the tensor", "[property][moe]") {
  test::Rng rng(61);
  const MoEParams p = make_params(64, 32, 4, 2);
  const auto rw = test::random_moe_weights<FP4Experts>(rng, p);
  const auto other = test::random_moe_weights<FP4Experts>(rng, make_params(64, 64, 4, 2));
  const Tensor<float, 2> x = test::random_matrix(rng, 3, 64);  // (T, H)
  Tensor<float, 2> out(x.shape());
  const MoEBlock<FP4Experts> block(p);
  CHECK_NOTHROW(block.forward(rw.weights(), x.view(), out.view()));

  auto expect_error = [&](const MoEWeights<FP4Experts>& w, const std::string& name) {
    INFO("expected a ShapeError naming " << name);
    CHECK_THROWS_AS(block.forward(w, x.view(), out.view()), ShapeError);
    CHECK_THROWS_WITH(block.forward(w, x.view(), out.view()), Catch::Contains(name));
  };
  MoEWeights<FP4Experts> w = rw.weights();
  w.mlp1_weight[2] = other.mlp1.view(2);  // (128, 64) instead of (64, 64)
  expect_error(w, "mlp1_weight[2]");
  w = rw.weights();
  w.mlp2_weight[1] = other.mlp2.view(1);  // (64, 64) instead of (64, 32)
  expect_error(w, "mlp2_weight[1]");
  w = rw.weights();
  w.mlp1_weight[3] = rw.mlp2.view(3);  // mlp2's shape in mlp1's place
  expect_error(w, "mlp1_weight[3]");
  w = rw.weights();
  w.mlp2_weight.pop_back();
  expect_error(w, "expert matrices");
  w = rw.weights();
  w.gate_weight = MatrixView<const bf16>(rw.gate_weight.data(), {3, 64});
  expect_error(w, "gate.weight");
  w = rw.weights();
  w.mlp1_bias = MatrixView<const bf16>(rw.mlp1_bias.data(), {4, 32});
  expect_error(w, "mlp1_bias");

  // Dense experts with a transposed matrix.
  const auto dense = test::random_moe_weights<F32Experts>(rng, p);
  MoEWeights<F32Experts> wd = dense.weights();
  wd.mlp2_weight[0] = MatrixView<const float>(wd.mlp2_weight[0].data(), {32, 64});
  CHECK_THROWS_WITH(MoEBlock<F32Experts>(p).forward(wd, x.view(), out.view()),
                    Catch::Contains("mlp2_weight[0]"));

  CHECK_THROWS_AS(MoEBlock<FP4Experts>(make_params(64, 32, 4, 5)), ConfigError);
  CHECK_THROWS_AS(MoEBlock<FP4Experts>(make_params(64, 32, 4, 0)), ConfigError);
}
