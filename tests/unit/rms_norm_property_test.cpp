// RMSNorm against an independent float64 recomputation on random rows of
// very different magnitudes, its (eps-aware) scale invariance, and its shape
// checks.
#include <cmath>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_elementwise;

namespace {

/// Mean of the squares of row t of x (T, D), in float64.
double mean_square(const Tensor<float, 2>& x, index_t t) {
  double sum = 0.0;
  for (index_t i = 0; i < x.extent(1); ++i) sum += static_cast<double>(x(t, i)) * x(t, i);
  return sum / static_cast<double>(x.extent(1));
}

/// x / sqrt(mean(x^2) + eps) * scale, row by row, in float64: (T, D) flattened.
std::vector<double> reference_rms_norm(const Tensor<float, 2>& x, const std::vector<double>& scale,
                                       double eps) {
  std::vector<double> out;
  for (index_t t = 0; t < x.extent(0); ++t) {
    const double denom = std::sqrt(mean_square(x, t) + eps);
    for (index_t i = 0; i < x.extent(1); ++i) {
      out.push_back(static_cast<double>(x(t, i)) / denom * scale[static_cast<std::size_t>(i)]);
    }
  }
  return out;
}

/// Random (T, D) rows whose magnitudes range over 10^-4 .. 10^3 (row t has
/// amplitude 10^(t mod 8 - 4)), so eps dominates some rows and not others.
Tensor<float, 2> rows_of_many_magnitudes(test::Rng& rng, index_t t_count, index_t d) {
  Tensor<float, 2> x({t_count, d});
  for (index_t t = 0; t < t_count; ++t) {
    const float amplitude = std::pow(10.0f, static_cast<float>(t % 8 - 4));
    for (index_t i = 0; i < d; ++i) x(t, i) = test::uniform(rng, -amplitude, amplitude);
  }
  return x;
}

}  // namespace

TEST_CASE("RMSNorm property: random rows match the float64 formula", "[property][rmsnorm]") {
  for (const std::uint32_t seed : {1u, 2u, 3u}) {
    for (const index_t d : {1, 7, 64, 256}) {
      for (const float eps : {1e-5f, 1e-2f}) {
        DYNAMIC_SECTION("seed " << seed << ", D " << d << ", eps " << eps) {
          test::Rng rng(seed);
          const index_t t_count = 16;
          const Tensor<float, 2> x = rows_of_many_magnitudes(rng, t_count, d);  // (T, D)
          const Tensor<bf16, 1> scale = test::random_bf16<1>(rng, {d}, -2.0f, 2.0f);  // (D)
          const RMSNorm<> norm(d, eps);
          Tensor<float, 2> out({t_count, d});  // (T, D)
          norm.forward({scale.view()}, x.view(), out.view());

          const auto expected = reference_rms_norm(x, test::to_double(scale), eps);
          // The result is one float rounding away from the float64 value.
          GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), expected, 1e-30, 1e-6));
        }
      }
    }
  }
}

TEST_CASE("RMSNorm property: out may alias the input", "[property][rmsnorm]") {
  test::Rng rng(11);
  const index_t t_count = 5, d = 48;
  Tensor<float, 2> x = rows_of_many_magnitudes(rng, t_count, d);  // (T, D)
  const Tensor<bf16, 1> scale = test::random_bf16<1>(rng, {d}, 0.5f, 1.5f);  // (D)
  const auto expected = reference_rms_norm(x, test::to_double(scale), 1e-5);
  const RMSNorm<> norm(d);
  norm.forward({scale.view()}, x.view(), x.view());
  GPTOSS_REQUIRE_CLOSE(compare_elementwise(x.storage(), expected, 1e-30, 1e-6));
}

TEST_CASE("RMSNorm property: scaling the input by c changes the output only through eps",
          "[property][rmsnorm]") {
  // RMSNorm(c x) = x / sqrt(mean(x^2) + eps / c^2) * scale, so
  // RMSNorm(c x) / RMSNorm(x) = sqrt((ms + eps) / (ms + eps / c^2)) per row:
  // 1 when mean(x^2) >> eps, far from 1 for the small rows.
  for (const std::uint32_t seed : {5u, 6u}) {
    for (const float c : {0.25f, 3.0f, 1024.0f}) {
      DYNAMIC_SECTION("seed " << seed << ", c " << c) {
        test::Rng rng(seed);
        const index_t t_count = 16, d = 32;
        const float eps = 1e-5f;
        const Tensor<float, 2> x = rows_of_many_magnitudes(rng, t_count, d);  // (T, D)
        Tensor<float, 2> cx({t_count, d});                                     // (T, D)
        for (std::size_t i = 0; i < x.storage().size(); ++i) cx.storage()[i] = c * x.storage()[i];
        const Tensor<bf16, 1> scale = test::random_bf16<1>(rng, {d}, 0.5f, 1.5f);  // (D)

        const RMSNorm<> norm(d, eps);
        Tensor<float, 2> out({t_count, d}), out_c({t_count, d});  // (T, D)
        norm.forward({scale.view()}, x.view(), out.view());
        norm.forward({scale.view()}, cx.view(), out_c.view());

        std::vector<double> predicted;  // (T, D): out * the eps-aware ratio
        bool eps_matters = false, eps_negligible = false;
        for (index_t t = 0; t < t_count; ++t) {
          const double ms = mean_square(x, t);
          const double ratio = std::sqrt((ms + eps) / (ms + eps / (static_cast<double>(c) * c)));
          eps_matters = eps_matters || std::fabs(ratio - 1.0) > 0.1;
          eps_negligible = eps_negligible || std::fabs(ratio - 1.0) < 1e-6;
          for (index_t i = 0; i < d; ++i) predicted.push_back(out(t, i) * ratio);
        }
        // The data exercise both regimes.
        REQUIRE(eps_matters);
        REQUIRE(eps_negligible);
        GPTOSS_REQUIRE_CLOSE(compare_elementwise(out_c.storage(), predicted, 1e-30, 2e-6));
      }
    }
  }
}

TEST_CASE("RMSNorm property: a constant row a gives a / sqrt(a^2 + eps) times the scale",
          "[property][rmsnorm]") {
  const index_t d = 10;
  const float eps = 1e-5f;
  Tensor<float, 2> x({4, d});  // (4, D)
  const float values[4] = {0.0f, 1e-3f, -1.0f, 300.0f};
  for (index_t t = 0; t < 4; ++t) {
    for (index_t i = 0; i < d; ++i) x(t, i) = values[t];
  }
  test::Rng rng(3);
  const Tensor<bf16, 1> scale = test::random_bf16<1>(rng, {d}, -2.0f, 2.0f);  // (D)
  Tensor<float, 2> out({4, d});
  RMSNorm<>(d, eps).forward({scale.view()}, x.view(), out.view());
  std::vector<double> expected;
  for (index_t t = 0; t < 4; ++t) {
    const double a = values[t];
    for (index_t i = 0; i < d; ++i) {
      expected.push_back(a / std::sqrt(a * a + static_cast<double>(eps)) * scale(i).to_float());
    }
  }
  GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), expected, 1e-30, 1e-6));
}

TEST_CASE("RMSNorm property: wrong shapes throw ShapeError", "[property][rmsnorm]") {
  test::Rng rng(4);
  const index_t d = 16;
  const RMSNorm<> norm(d);
  const Tensor<float, 2> x = test::random_matrix(rng, 3, d);                  // (3, D)
  const Tensor<bf16, 1> scale = test::random_bf16<1>(rng, {d}, 0.5f, 1.5f);   // (D)
  const Tensor<bf16, 1> short_scale = test::random_bf16<1>(rng, {d - 1}, 0.5f, 1.5f);
  const Tensor<float, 2> wide_x = test::random_matrix(rng, 3, d + 1);         // (3, D + 1)
  Tensor<float, 2> out({3, d}), short_out({2, d}), wide_out({3, d + 1});

  CHECK_NOTHROW(norm.forward({scale.view()}, x.view(), out.view()));
  CHECK_THROWS_AS(norm.forward({short_scale.view()}, x.view(), out.view()), ShapeError);
  CHECK_THROWS_WITH(norm.forward({short_scale.view()}, x.view(), out.view()),
                    Catch::Contains("scale"));
  CHECK_THROWS_AS(norm.forward({scale.view()}, wide_x.view(), wide_out.view()), ShapeError);
  CHECK_THROWS_AS(norm.forward({scale.view()}, x.view(), short_out.view()), ShapeError);
  CHECK_THROWS_AS(norm.forward({scale.view()}, x.view(), wide_out.view()), ShapeError);
  CHECK_THROWS_AS(RMSNorm<>(0), ShapeError);
}
