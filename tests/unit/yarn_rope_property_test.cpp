// YaRNRope against independent float64 YaRN formulas: inverse frequencies,
// concentration and the half-split rotation, on random inputs; plus the
// properties plain RoPE, norm preservation, position offsets, positions past
// the table, the unrounded ramp bounds, and parameter validation.
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_elementwise;
using gptoss::test::compare_to_max;

namespace {

/// The YaRN frequencies and concentration, written from the formulas.
struct ReferenceYarn {
  std::vector<double> inv_freq;  // (D/2)
  double concentration = 1.0;
};

/// Rounding of the ramp bounds: none (gpt-oss), or floor(low) / ceil(high)
/// as some implementations do.
enum class Bounds { exact, rounded };

ReferenceYarn reference_yarn(int head_dim, double theta, double factor, double l0, double alpha,
                             double beta, Bounds bounds = Bounds::exact) {
  ReferenceYarn r;
  const double d = head_dim;
  double low = d / 2.0 * std::log(l0 / (beta * 2.0 * std::numbers::pi)) / std::log(theta);
  double high = d / 2.0 * std::log(l0 / (alpha * 2.0 * std::numbers::pi)) / std::log(theta);
  if (bounds == Bounds::rounded) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  if (factor > 1.0) r.concentration = 0.1 * std::log(factor) + 1.0;
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(theta, 2.0 * i / d);
    if (factor > 1.0) {
      const double ramp = (i - low) / (high - low);
      const double mask = 1.0 - std::min(1.0, std::max(0.0, ramp));
      r.inv_freq.push_back(1.0 / (factor * freq) * (1.0 - mask) + 1.0 / freq * mask);
    } else {
      r.inv_freq.push_back(1.0 / freq);
    }
  }
  return r;
}

ReferenceYarn reference_yarn(const RopeParams& p, Bounds bounds = Bounds::exact) {
  return reference_yarn(p.head_dim, p.theta, p.scaling_factor, p.initial_context, p.ntk_alpha,
                        p.ntk_beta, bounds);
}

/// Half-split rotation of x (T, H, D) at positions, in float64: (T, H, D) flattened.
std::vector<double> reference_rotate(const Tensor<float, 3>& x, const std::vector<index_t>& positions,
                                     const ReferenceYarn& yarn) {
  const index_t t_count = x.extent(0), heads = x.extent(1), half = x.extent(2) / 2;
  std::vector<double> out(x.storage().size());
  for (index_t t = 0; t < t_count; ++t) {
    for (index_t h = 0; h < heads; ++h) {
      for (index_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[static_cast<std::size_t>(t)]) *
                             yarn.inv_freq[static_cast<std::size_t>(i)];
        const double c = std::cos(angle) * yarn.concentration;
        const double s = std::sin(angle) * yarn.concentration;
        const double x1 = x(t, h, i), x2 = x(t, h, i + half);
        const index_t base = (t * heads + h) * 2 * half;
        out[static_cast<std::size_t>(base + i)] = x1 * c - x2 * s;
        out[static_cast<std::size_t>(base + i + half)] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

/// The gpt-oss YaRN parameters and two more valid configurations.
const RopeParams kGptOss{64, 150000.0, 32.0, 4096.0, 1.0, 32.0};
const RopeParams kSmall{32, 10000.0, 8.0, 1024.0, 1.5, 24.0};
const RopeParams kWide{128, 500000.0, 4.0, 8192.0, 1.0, 32.0};

}  // namespace

TEST_CASE("YaRN property: inv_freq and concentration match the float64 formulas",
          "[property][rope]") {
  const RopeParams cases[] = {kGptOss, kSmall, kWide, {16, 150000.0, 1.0, 4096.0, 1.0, 32.0}};
  for (const RopeParams& p : cases) {
    DYNAMIC_SECTION("head_dim " << p.head_dim << ", theta " << p.theta << ", factor "
                                << p.scaling_factor) {
      const YaRNRope<> rope(p, 4);
      const ReferenceYarn ref = reference_yarn(p);
      REQUIRE(rope.inv_freq().size() == ref.inv_freq.size());
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(rope.inv_freq(), ref.inv_freq, 0.0, 1e-12));
      CHECK(rope.concentration() == Approx(ref.concentration).epsilon(1e-12));
    }
  }
}

TEST_CASE("YaRN property: rotation matches the float64 half-split rotation", "[property][rope]") {
  const RopeParams cases[] = {kGptOss, kSmall, kWide};
  for (const RopeParams& p : cases) {
    for (const std::uint32_t seed : {1u, 2u}) {
      DYNAMIC_SECTION("head_dim " << p.head_dim << ", seed " << seed) {
        test::Rng rng(seed);
        const index_t t_count = 9, heads = 3;
        Tensor<float, 3> x = test::random_tensor<3>(rng, {t_count, heads, p.head_dim}, 2.0f);
        std::vector<index_t> positions;  // (T): small, inside and past the table, large
        for (index_t t = 0; t < t_count; ++t) {
          positions.push_back(t < 4 ? t : test::uniform_int(rng, 0, 100000));
        }
        const auto expected = reference_rotate(x, positions, reference_yarn(p));
        const YaRNRope<> rope(p, 64);
        rope.forward(x.view(), VectorView<const index_t>(positions.data(), {t_count}));
        // Angles are float64 in both; only the float rotation rounds.
        GPTOSS_REQUIRE_CLOSE(compare_to_max(x.storage(), expected, 0.0, 2e-6));
      }
    }
  }
}

TEST_CASE("YaRN property: factor 1 is plain RoPE theta^(-2i/D)", "[property][rope]") {
  for (const double factor : {1.0, 0.5}) {
    DYNAMIC_SECTION("factor " << factor) {
      const RopeParams p{32, 10000.0, factor, 4096.0, 1.0, 32.0};
      const YaRNRope<> rope(p, 16);
      CHECK(rope.concentration() == 1.0);
      std::vector<double> plain;  // (D/2)
      for (int i = 0; i < p.head_dim / 2; ++i) plain.push_back(std::pow(10000.0, -2.0 * i / 32.0));
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(rope.inv_freq(), plain, 0.0, 1e-12));

      test::Rng rng(7);
      Tensor<float, 3> x = test::random_tensor<3>(rng, {12, 2, 32});  // (T, H, D)
      std::vector<index_t> positions;
      for (index_t t = 0; t < 12; ++t) positions.push_back(5 + 3 * t);
      const auto expected = reference_rotate(x, positions, {plain, 1.0});
      rope.forward(x.view(), VectorView<const index_t>(positions.data(), {12}));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(x.storage(), expected, 0.0, 2e-6));
    }
  }
}

TEST_CASE("YaRN property: rotation scales every head vector's norm by the concentration",
          "[property][rope]") {
  // Concentration 1 (plain RoPE) preserves norms exactly in real arithmetic;
  // YaRN multiplies them by 0.1 ln(s) + 1.
  const RopeParams cases[] = {{64, 150000.0, 1.0, 4096.0, 1.0, 32.0}, kGptOss, kSmall};
  for (const RopeParams& p : cases) {
    DYNAMIC_SECTION("head_dim " << p.head_dim << ", factor " << p.scaling_factor) {
      test::Rng rng(21);
      const index_t t_count = 20, heads = 4, d = p.head_dim;
      Tensor<float, 3> x = test::random_tensor<3>(rng, {t_count, heads, d}, 3.0f);  // (T, H, D)
      const Tensor<float, 3> before = x;
      const YaRNRope<> rope(p, 8);
      rope.forward(x.view(), index_t{1000});
      const double c = p.scaling_factor > 1.0 ? 0.1 * std::log(p.scaling_factor) + 1.0 : 1.0;
      std::vector<double> norms, expected;  // (T, H)
      for (index_t t = 0; t < t_count; ++t) {
        for (index_t h = 0; h < heads; ++h) {
          double n_after = 0.0, n_before = 0.0;
          for (index_t i = 0; i < d; ++i) {
            n_after += static_cast<double>(x(t, h, i)) * x(t, h, i);
            n_before += static_cast<double>(before(t, h, i)) * before(t, h, i);
          }
          norms.push_back(std::sqrt(n_after));
          expected.push_back(c * std::sqrt(n_before));
        }
      }
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(norms, expected, 0.0, 2e-6));
    }
  }
}

TEST_CASE("YaRN property: explicit positions equal the first_position offset",
          "[property][rope]") {
  test::Rng rng(8);
  const YaRNRope<> rope(kGptOss, 32);
  for (const index_t first : {index_t{0}, index_t{5}, index_t{30}, index_t{4000}, index_t{70000}}) {
    DYNAMIC_SECTION("first position " << first) {
      Tensor<float, 3> a = test::random_tensor<3>(rng, {6, 2, 64});  // (T, H, D)
      Tensor<float, 3> b = a;
      const Tensor<float, 3> input = a;
      std::vector<index_t> positions;
      for (index_t t = 0; t < 6; ++t) positions.push_back(first + t);
      rope.forward(a.view(), first);
      rope.forward(b.view(), VectorView<const index_t>(positions.data(), {6}));
      CHECK(a.storage() == b.storage());
      // ... and both are the rotation at first, first + 1, ...
      GPTOSS_REQUIRE_CLOSE(
          compare_to_max(a.storage(), reference_rotate(input, positions, reference_yarn(kGptOss)),
                         0.0, 2e-6));
    }
  }
}

TEST_CASE("YaRN property: positions past the table equal a larger table's values",
          "[property][rope]") {
  const RopeParams cases[] = {kGptOss, kSmall};
  for (const RopeParams& p : cases) {
    DYNAMIC_SECTION("head_dim " << p.head_dim) {
      const YaRNRope<> small(p, 8), large(p, 256), none(p, 0);
      const index_t half = p.head_dim / 2;
      const ReferenceYarn ref = reference_yarn(p);
      std::vector<float> cs(half), ss(half), cl(half), sl(half), cn(half), sn(half);
      for (const index_t pos : {0, 1, 7, 8, 9, 100, 255, 256, 5000}) {
        INFO("position " << pos);
        small.cos_sin(pos, cs, ss);
        large.cos_sin(pos, cl, sl);
        none.cos_sin(pos, cn, sn);
        CHECK(cs == cl);
        CHECK(ss == sl);
        CHECK(cn == cl);
        CHECK(sn == sl);
        std::vector<double> cos_ref, sin_ref;  // (D/2)
        for (index_t i = 0; i < half; ++i) {
          const double angle = static_cast<double>(pos) * ref.inv_freq[static_cast<std::size_t>(i)];
          cos_ref.push_back(std::cos(angle) * ref.concentration);
          sin_ref.push_back(std::sin(angle) * ref.concentration);
        }
        GPTOSS_REQUIRE_CLOSE(compare_to_max(cs, cos_ref, 0.0, 1e-6));
        GPTOSS_REQUIRE_CLOSE(compare_to_max(ss, sin_ref, 0.0, 1e-6));
      }
      // The same through forward() on a whole sequence crossing the table's end.
      test::Rng rng(9);
      Tensor<float, 3> a = test::random_tensor<3>(rng, {20, 2, p.head_dim});  // (T, H, D)
      Tensor<float, 3> b = a;
      small.forward(a.view(), index_t{0});
      large.forward(b.view(), index_t{0});
      CHECK(a.storage() == b.storage());
    }
  }
}

TEST_CASE("YaRN property: the ramp bounds are not rounded (gpt-oss parameters)",
          "[property][rope]") {
  // For head_dim 64, theta 150000, factor 32, L0 4096, alpha 1, beta 32:
  // low = 8.09..., high = 17.40...; flooring low / ceiling high (8, 18)
  // changes inv_freq of pairs 9..17. The library must give the unrounded
  // values, and those must be measurably different from the rounded ones.
  const ReferenceYarn exact = reference_yarn(kGptOss, Bounds::exact);
  const ReferenceYarn rounded = reference_yarn(kGptOss, Bounds::rounded);
  const YaRNRope<> rope(kGptOss, 4);

  GPTOSS_REQUIRE_CLOSE(compare_elementwise(rope.inv_freq(), exact.inv_freq, 0.0, 1e-12));
  double largest_relative_gap = 0.0;  // between the library and the rounded-bound variant
  for (std::size_t i = 0; i < rounded.inv_freq.size(); ++i) {
    largest_relative_gap =
        std::max(largest_relative_gap,
                 std::fabs(rope.inv_freq()[i] - rounded.inv_freq[i]) / rounded.inv_freq[i]);
  }
  INFO("largest relative difference from the rounded-bound inv_freq: " << largest_relative_gap);
  REQUIRE(largest_relative_gap > 1e-2);

  // The difference is visible in rotated vectors, too.
  test::Rng rng(10);
  Tensor<float, 3> x = test::random_tensor<3>(rng, {4, 1, 64});  // (T, H, D)
  const Tensor<float, 3> input = x;
  const std::vector<index_t> positions{100, 1000, 3000, 60000};
  rope.forward(x.view(), VectorView<const index_t>(positions.data(), {4}));
  GPTOSS_REQUIRE_CLOSE(compare_to_max(x.storage(), reference_rotate(input, positions, exact), 0.0, 2e-6));
  CHECK_FALSE(compare_to_max(x.storage(), reference_rotate(input, positions, rounded), 0.0, 1e-3).ok());
}

TEST_CASE("YaRN property: invalid parameters throw ConfigError", "[property][rope]") {
  CHECK_NOTHROW(YaRNRope<>(kGptOss, 1));
  // L0 so small that low <= 0.
  CHECK_THROWS_AS(YaRNRope<>(RopeParams{64, 150000.0, 32.0, 100.0, 1.0, 32.0}, 1), ConfigError);
  // alpha > beta: low >= high.
  CHECK_THROWS_AS(YaRNRope<>(RopeParams{64, 150000.0, 32.0, 4096.0, 32.0, 1.0}, 1), ConfigError);
  // L0 so large that high >= D/2 - 1.
  CHECK_THROWS_AS(YaRNRope<>(RopeParams{64, 150000.0, 32.0, 1e12, 1.0, 32.0}, 1), ConfigError);
  // Odd head_dim, theta <= 1.
  CHECK_THROWS_AS(YaRNRope<>(RopeParams{63, 150000.0, 32.0, 4096.0, 1.0, 32.0}, 1), ConfigError);
  CHECK_THROWS_AS(YaRNRope<>(RopeParams{64, 1.0, 1.0, 4096.0, 1.0, 32.0}, 1), ConfigError);
}

TEST_CASE("YaRN property: bad positions and shapes are rejected", "[property][rope]") {
  const YaRNRope<> rope(kSmall, 4);
  std::vector<float> c(16), s(16);
  CHECK_THROWS_AS(rope.cos_sin(-1, c, s), RangeError);
  Tensor<float, 3> x({2, 1, 30});  // wrong head_dim (D = 32)
  CHECK_THROWS_AS(rope.forward(x.view(), index_t{0}), ShapeError);
  Tensor<float, 3> y({2, 1, 32});
  const std::vector<index_t> one_position{0};
  CHECK_THROWS_AS(rope.forward(y.view(), VectorView<const index_t>(one_position.data(), {1})),
                  ShapeError);
  // cos_sin writes D/2 floats to each span, so a span of another size is refused.
  std::vector<float> short_span(2), long_span(17);
  CHECK_THROWS_WITH(rope.cos_sin(0, short_span, s), Catch::Contains("spans of 2 and 16"));
  CHECK_THROWS_AS(rope.cos_sin(9, c, long_span), ShapeError);
  CHECK_NOTHROW(rope.cos_sin(9, c, s));
  // A table too large to address is a ShapeError, not a wrapped size.
  CHECK_THROWS_AS(YaRNRope<>(kSmall, index_t{1} << 62), ShapeError);
  CHECK_THROWS_WITH((Tensor<float, 2>({index_t{1} << 62, 4})), Catch::Contains("more elements than memory"));
  CHECK_THROWS_AS((Tensor<double, 1>({index_t{1} << 61})), ShapeError);  // 2^64 bytes
}

TEST_CASE("YaRN property: ropes of equal parameters share one table, others get their own",
          "[property][rope]") {
  const RopeParams p = GptOss20b::value.rope();
  const AttentionParams a = AttentionParams::from(GptOss20b::value);
  // Two layers of a model, one sliding and one full: one table between them.
  const SlidingSinkAttention<AttentionSpan::sliding> slide(a);
  const SlidingSinkAttention<AttentionSpan::full> full(a);
  REQUIRE(slide.rope().table() == full.rope().table());
  REQUIRE(slide.rope().table()->cos.extent(0) == YaRNRope<>::kDefaultTablePositions);
  RopeParams rounded = p;
  rounded.truncate = true;
  RopeParams other_theta = p;
  other_theta.theta = p.theta * 2.0;
  const YaRNRope<> a_rope(p, 64), same(p, 64), longer(p, 65), b(rounded, 64), c(other_theta, 64);
  REQUIRE(a_rope.table() == same.table());
  REQUIRE(a_rope.table() != longer.table());
  REQUIRE(a_rope.table() != b.table());
  REQUIRE(a_rope.table() != c.table());
  // The shared table holds what each rope computes on the fly (no table).
  for (const YaRNRope<>* rope : {&a_rope, &b, &c}) {
    const YaRNRope<> untabled(rope->params(), 0);
    std::vector<float> cos_t(32), sin_t(32), cos_f(32), sin_f(32);
    for (index_t pos : {0, 1, 17, 63}) {
      rope->cos_sin(pos, cos_t, sin_t);
      untabled.cos_sin(pos, cos_f, sin_f);
      REQUIRE(cos_t == cos_f);
      REQUIRE(sin_t == sin_f);
    }
  }
}
