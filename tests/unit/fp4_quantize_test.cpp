// The MXFP4 quantizer and format: E2M1 rounding (nearest, ties to even,
// saturating), the OCP Microscaling scale choice, exact round trips of every
// representable value at every scale, agreement with an independent float64
// implementation of OCP quantization written here, both nibble orders, and
// the shape checks of FP4TensorView. Also the 8-bit block format
// (int8_matrix.hpp): error bound, exact values, padding, non-finite input.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/formats/int8_matrix.hpp"

#include "support/matchers.hpp"

using namespace gptoss;

namespace {

/// Matches an exception whose what() contains every given fragment.
using MentionsAll = test::MessageHas;

MentionsAll mentions(std::initializer_list<std::string> parts) { return MentionsAll(parts); }

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

// ---- Independent float64 OCP MX (MXFP4) quantization ----------------------

/// The non-negative E2M1 grid; index parity is the mantissa bit.
constexpr std::array<double, 8> kGrid = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};

/// Nearest grid value to y (ties to the even index), saturating at +-6; the
/// sign of y (including -0) is kept.
double ref_round_e2m1(double y) {
  const double a = std::fabs(y);
  if (a >= 6.0) return std::copysign(6.0, y);
  std::size_t best = 0;
  for (std::size_t i = 1; i < kGrid.size(); ++i) {
    const double d = std::fabs(a - kGrid[i]), bd = std::fabs(a - kGrid[best]);
    if (d < bd || (d == bd && i % 2 == 0)) best = i;
  }
  return std::copysign(kGrid[best], y);
}

/// OCP shared exponent: floor(log2(amax)) - emax(E2M1) = floor(log2 amax) - 2,
/// clamped to the E8M0 range [-127, 127]; an all-zero block gets -127 (byte 0).
int ref_scale_exponent(double amax) {
  if (amax == 0.0) return -127;
  if (std::isinf(amax)) return 127;
  const int e = static_cast<int>(std::floor(std::log2(amax))) - 2;
  return std::clamp(e, -127, 127);
}

/// One block quantized and dequantized in float64. Every value converts to
/// float exactly, except in a block with an infinite amax (scale 2^127), where
/// magnitudes of 2 * 2^127 and more overflow to +-inf, as in float.
struct RefBlock {
  int scale_exponent = 0;
  std::array<double, 32> value{};
};

RefBlock ref_quantize_block(const float* x) {
  double amax = 0.0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
  RefBlock b;
  b.scale_exponent = ref_scale_exponent(amax);
  const double scale = std::ldexp(1.0, b.scale_exponent);
  for (int i = 0; i < 32; ++i) b.value[i] = ref_round_e2m1(x[i] / scale) * scale;
  return b;
}

/// Largest allowed |x - q| for an element: half the E2M1 grid spacing at
/// |x| / 2^s (spacing 0.5 below 2, 1 in [2, 4), 2 in [4, 6]) times 2^s, and,
/// past the largest value 6 (OCP clips amax / 2^s in [6, 8) to 6),
/// |x| - 6 * 2^s (less than 2 * 2^s).
double half_step_bound(double x, int s) {
  const double y = std::fabs(x) / std::ldexp(1.0, s);
  const double bound = y < 2.0 ? 0.25 : y < 4.0 ? 0.5 : y <= 6.0 ? 1.0 : y - 6.0;
  return bound * std::ldexp(1.0, s);
}

template <class F>
FP4Tensor<F> quantize(const Tensor<float, 2>& x) {
  return FP4Tensor<F>::quantize(x.view());
}

/// Random test matrices: blocks of several kinds (Gaussian at random scales,
/// exact E2M1 midpoints, sparse blocks with signed zeros, float extremes).
Tensor<float, 2> random_matrix(std::mt19937_64& rng, index_t rows, index_t cols) {
  Tensor<float, 2> x({rows, cols});
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> kind_dist(0, 5), exp_dist(-150, 125), pos(0, 31);
  std::uniform_int_distribution<int> scale_dist(-100, 124);  // keeps midpoints +- 1 ulp exact
  const double midpoints[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  const float fmax = std::numeric_limits<float>::max();
  const float denorm = std::numeric_limits<float>::denorm_min();
  const float inf = std::numeric_limits<float>::infinity();
  for (index_t r = 0; r < rows; ++r) {
    for (index_t g = 0; g < cols / 32; ++g) {
      float* v = &x(r, g * 32);
      const int kind = kind_dist(rng);
      if (kind <= 1) {  // Gaussian at a random binade, possibly underflowing
        const int k = exp_dist(rng);
        for (int i = 0; i < 32; ++i) v[i] = static_cast<float>(std::ldexp(normal(rng), k));
      } else if (kind == 2) {  // exact midpoints and neighbours, scale pinned by +-6 * 2^s
        const int s = scale_dist(rng);
        for (int i = 0; i < 32; ++i) {
          float m = static_cast<float>(midpoints[i % 7] * ((i / 7) % 2 ? -1.0 : 1.0));
          if (i >= 28) m = std::nextafter(m, i % 2 ? 0.0f : 8.0f);  // just off a midpoint
          v[i] = std::ldexp(m, s);
        }
        v[pos(rng)] = static_cast<float>(std::ldexp(pos(rng) % 2 ? 6.0 : -6.0, s));
      } else if (kind == 3) {  // sparse: signed zeros and a few values
        for (int i = 0; i < 32; ++i) v[i] = i % 2 ? -0.0f : 0.0f;
        for (int n = pos(rng) % 4; n > 0; --n) {
          v[pos(rng)] = static_cast<float>(std::ldexp(normal(rng), exp_dist(rng)));
        }
      } else if (kind == 4) {  // float extremes (finite)
        for (int i = 0; i < 32; ++i) {
          const float choices[] = {fmax, -fmax, denorm, -denorm, 1.0f, -0.0f, fmax / 3, 1e-40f};
          v[i] = choices[pos(rng) % 8];
        }
      } else {  // infinities with moderate finite values
        for (int i = 0; i < 32; ++i) v[i] = static_cast<float>(normal(rng) * 1e30);
        v[pos(rng)] = pos(rng) % 2 ? inf : -inf;
      }
    }
  }
  return x;
}

}  // namespace

TEST_CASE("MXFP4 quantize: e2m1::encode rounds to nearest, ties to even",
          "[mxfp4][e2m1][quantize]") {
  // Every midpoint between neighbours goes to the code with mantissa bit 0.
  const std::pair<float, float> ties[] = {{0.25f, 0.0f}, {0.75f, 1.0f}, {1.25f, 1.0f},
                                          {1.75f, 2.0f}, {2.5f, 2.0f},  {3.5f, 4.0f},
                                          {5.0f, 4.0f}};
  for (auto [x, want] : ties) {
    INFO("x = " << x);
    CHECK(e2m1::decode(e2m1::encode(x)) == want);
    CHECK(e2m1::decode(e2m1::encode(-x)) == -want);
    CHECK((e2m1::encode(-x) & 0x8) != 0);
    // Just off the midpoint, the nearer neighbour wins.
    const float below = std::nextafter(x, 0.0f), above = std::nextafter(x, 8.0f);
    CHECK(e2m1::decode(e2m1::encode(below)) == static_cast<float>(ref_round_e2m1(below)));
    CHECK(e2m1::decode(e2m1::encode(above)) == static_cast<float>(ref_round_e2m1(above)));
    CHECK(e2m1::decode(e2m1::encode(below)) != e2m1::decode(e2m1::encode(above)));
  }
  static_assert(e2m1::encode(0.25f) == 0 && e2m1::encode(0.75f) == 2 && e2m1::encode(1.25f) == 2 &&
                e2m1::encode(1.75f) == 4 && e2m1::encode(2.5f) == 4 && e2m1::encode(3.5f) == 6 &&
                e2m1::encode(5.0f) == 6);

  // Every code is a fixed point.
  for (std::uint8_t c = 0; c < 16; ++c) {
    INFO("code " << int(c));
    CHECK(e2m1::encode(e2m1::decode(c)) == c);
  }

  // A dense sweep of [-8, 8] (every multiple of 2^-8 and its float
  // neighbours) agrees with the float64 reference, sign of zero included.
  for (int k = -2048; k <= 2048; ++k) {
    const float x = std::ldexp(static_cast<float>(k), -8);
    for (float y : {x, std::nextafter(x, -9.0f), std::nextafter(x, 9.0f)}) {
      const float got = e2m1::decode(e2m1::encode(y));
      const double want = ref_round_e2m1(y);
      if (got != want || std::signbit(got) != std::signbit(want)) {
        FAIL_CHECK("encode(" << y << ") decodes to " << got << ", expected " << want);
      }
    }
  }
}

TEST_CASE("MXFP4 quantize: e2m1::encode saturates and keeps the sign of zero",
          "[mxfp4][e2m1][quantize]") {
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {6.0f, 6.5f, 7.0f, 7.999f, 8.0f, 1e30f, std::numeric_limits<float>::max(), inf}) {
    INFO("x = " << x);
    CHECK(e2m1::encode(x) == 0x7);
    CHECK(e2m1::encode(-x) == 0xf);
    CHECK(e2m1::decode(e2m1::encode(-x)) == -6.0f);
  }
  CHECK(e2m1::encode(0.0f) == 0x0);
  CHECK(e2m1::encode(-0.0f) == 0x8);
  CHECK(std::signbit(e2m1::decode(e2m1::encode(-0.0f))));
  CHECK(e2m1::encode(-1e-30f) == 0x8);  // rounds to zero, keeps its sign
  CHECK(e2m1::encode(-std::numeric_limits<float>::denorm_min()) == 0x8);
  CHECK(e2m1::encode(1e-30f) == 0x0);
}

TEMPLATE_TEST_CASE("MXFP4 quantize: every E2M1 value at every scale round-trips exactly",
                   "[mxfp4][quantize]", MXFP4Checkpoint, MXFP4SplitHalf) {
  // Row r, block g uses scale exponent s = -127 + (4r + g) mod 253, so each
  // block position sees every s in [-127, 125] (6 * 2^126 would overflow float).
  // Block 0 holds all 16 codes twice; block 1 random codes; block 2 codes of
  // magnitude <= 1.5 (a smaller amax, hence a smaller scale); block 3 one
  // value of a random code among zeros of both signs.
  constexpr index_t kRows = 253, kCols = 128;
  std::mt19937_64 rng(12345);
  std::uniform_int_distribution<int> code_dist(0, 15), small_code(0, 3), pos(0, 31);
  Tensor<float, 2> x({kRows, kCols});
  std::vector<int> max_code_value_exp(kRows * 4);  // floor(log2(max |code value|)) or a marker
  for (index_t r = 0; r < kRows; ++r) {
    for (index_t g = 0; g < 4; ++g) {
      const int s = -127 + static_cast<int>((4 * r + g) % 253);
      std::array<std::uint8_t, 32> codes{};
      if (g == 0) {
        for (int i = 0; i < 32; ++i) codes[i] = static_cast<std::uint8_t>(i % 16);
        std::shuffle(codes.begin(), codes.end(), rng);
      } else if (g == 1) {
        for (auto& c : codes) c = static_cast<std::uint8_t>(code_dist(rng));
      } else if (g == 2) {
        for (auto& c : codes) c = static_cast<std::uint8_t>(small_code(rng) | (code_dist(rng) & 8));
      } else {
        for (int i = 0; i < 32; ++i) codes[i] = i % 3 ? 0x0 : 0x8;
        codes[pos(rng)] = static_cast<std::uint8_t>(code_dist(rng));
      }
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) {
        const float v = std::ldexp(e2m1::decode(codes[i]), s);
        REQUIRE(std::isfinite(v));
        x(r, g * 32 + i) = v;
        amax = std::max(amax, std::fabs(v));
      }
      max_code_value_exp[r * 4 + g] = amax == 0.0f ? 1000 : std::ilogb(amax) - s;
    }
  }

  const FP4Tensor<TestType> q = quantize<TestType>(x);
  const Tensor<float, 2> d = dequantize(q.view());
  for (index_t r = 0; r < kRows; ++r) {
    for (index_t c = 0; c < kCols; ++c) {
      if (bits(d(r, c)) != bits(x(r, c))) {
        FAIL_CHECK("element (" << r << ", " << c << "): " << x(r, c) << " came back as "
                               << d(r, c));
      }
    }
    for (index_t g = 0; g < 4; ++g) {
      const int s = -127 + static_cast<int>((4 * r + g) % 253);
      const int m = max_code_value_exp[r * 4 + g];
      // Scale exponent = floor(log2(amax)) - 2 = s + floor(log2(max code)) - 2, clamped.
      const int want = m == 1000 ? -127 : std::clamp(s + m - 2, -127, 127);
      const std::uint8_t byte = q.scales()[static_cast<std::size_t>(r * 4 + g)];
      if (e8m0::exponent(byte) != want) {
        FAIL_CHECK("block (" << r << ", " << g << "), s = " << s << ": scale exponent "
                             << e8m0::exponent(byte) << ", expected " << want);
      }
    }
  }
}

TEST_CASE("MXFP4 quantize: the scale exponent is floor(log2(amax)) - 2 within E8M0",
          "[mxfp4][quantize]") {
  using Q = FP4Tensor<MXFP4Checkpoint>;
  const float inf = std::numeric_limits<float>::infinity();
  // (amax, expected scale byte = clamp(floor(log2 amax) - 2, -127, 127) + 127)
  const std::pair<float, int> cases[] = {
      {1.0f, 125},
      {6.0f, 127},
      {7.99f, 127},
      {8.0f, 128},
      {0.75f, 124},
      {std::nextafter(4.0f, 0.0f), 126},
      {4.0f, 127},
      {std::numeric_limits<float>::max(), 252},
      {std::ldexp(1.0f, -124), 1},
      {std::ldexp(1.0f, -125), 0},
      {std::ldexp(1.0f, -126), 0},
      {std::numeric_limits<float>::denorm_min(), 0},
      {0.0f, 0},
      {inf, 254},
  };
  for (auto [amax, want] : cases) {
    INFO("amax = " << amax);
    CHECK(int(Q::scale_for(amax)) == want);
  }
  CHECK(e8m0::from_exponent(-1000) == 0);
  CHECK(e8m0::from_exponent(1000) == 254);
  CHECK(e8m0::from_exponent(0) == 127);

  // Random amax over the whole float range against the float64 formula.
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint32_t> any_bits(0, 0x7f7fffffu);  // finite, >= 0
  for (int i = 0; i < 20000; ++i) {
    const float amax = std::bit_cast<float>(any_bits(rng));
    const int want = ref_scale_exponent(amax) + 127;
    if (int(Q::scale_for(amax)) != want) {
      FAIL_CHECK("amax " << amax << ": byte " << int(Q::scale_for(amax)) << ", expected " << want);
    }
  }

  // Through quantize: amax is a magnitude (here from a negative element), and
  // an all-zero block gets byte 0 and keeps the sign of each zero.
  Tensor<float, 2> x({1, 64});
  x(0, 3) = 0.75f;
  x(0, 17) = -1.0f;
  for (int i = 32; i < 64; ++i) x(0, i) = i % 2 ? -0.0f : 0.0f;
  const auto q = quantize<MXFP4Checkpoint>(x);
  CHECK(int(q.scales()[0]) == 125);
  CHECK(int(q.scales()[1]) == 0);
  for (int j = 16; j < 32; ++j) CHECK(int(q.blocks()[static_cast<std::size_t>(j)]) == 0x80);
  const Tensor<float, 2> d = dequantize(q.view());
  for (int i = 32; i < 64; ++i) CHECK(std::signbit(d(0, i)) == (i % 2 == 1));
  CHECK(d(0, 3) == 0.75f);
  CHECK(d(0, 17) == -1.0f);
}

TEMPLATE_TEST_CASE("MXFP4 quantize: a NaN input is a RangeError naming the element",
                   "[mxfp4][quantize][bad-input]", MXFP4Checkpoint, MXFP4SplitHalf) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor<float, 2> x({3, 64});
  for (index_t i = 0; i < x.size(); ++i) x.storage()[static_cast<std::size_t>(i)] = 0.5f;
  SECTION("quiet NaN in the middle") {
    x(2, 37) = nan;
    REQUIRE_THROWS_MATCHES(quantize<TestType>(x), RangeError, mentions({"NaN", "(2, 37)"}));
  }
  SECTION("negative NaN in the first element") {
    x(0, 0) = -nan;
    REQUIRE_THROWS_MATCHES(quantize<TestType>(x), RangeError, mentions({"NaN", "(0, 0)"}));
  }
  SECTION("signalling NaN at the last element") {
    x(2, 63) = std::numeric_limits<float>::signaling_NaN();
    REQUIRE_THROWS_MATCHES(quantize<TestType>(x), RangeError, mentions({"NaN", "(2, 63)"}));
  }
}

TEMPLATE_TEST_CASE("MXFP4 quantize: random matrices match a float64 OCP reference",
                   "[mxfp4][quantize]", MXFP4Checkpoint, MXFP4SplitHalf) {
  std::mt19937_64 rng(2024);
  constexpr index_t kRows = 48, kCols = 512;
  const Tensor<float, 2> x = random_matrix(rng, kRows, kCols);
  const FP4Tensor<TestType> q = quantize<TestType>(x);
  const Tensor<float, 2> d = dequantize(q.view());
  int mismatches = 0, bound_violations = 0;
  double worst_ratio = 0.0;
  for (index_t r = 0; r < kRows; ++r) {
    for (index_t g = 0; g < kCols / 32; ++g) {
      const RefBlock ref = ref_quantize_block(&x(r, g * 32));
      const std::uint8_t byte = q.scales()[static_cast<std::size_t>(r * (kCols / 32) + g)];
      CHECK(byte != 0xff);  // never the NaN / overflow scale
      if (e8m0::exponent(byte) != ref.scale_exponent) {
        FAIL_CHECK("block (" << r << ", " << g << "): scale exponent " << e8m0::exponent(byte)
                             << ", reference " << ref.scale_exponent);
      }
      for (int i = 0; i < 32; ++i) {
        const index_t c = g * 32 + i;
        const double xv = x(r, c), qv = d(r, c);
        const double want = static_cast<float>(ref.value[i]);
        if (std::isnan(qv)) FAIL_CHECK("NaN at (" << r << ", " << c << ")");
        if (qv != want || std::signbit(qv) != std::signbit(want)) {
          if (++mismatches <= 10) {
            FAIL_CHECK("(" << r << ", " << c << "): x = " << xv << " -> " << qv << ", reference "
                           << want);
          }
        }
        if (ref.scale_exponent == 127) continue;  // infinite amax: checked above
        const double err = std::fabs(xv - qv);
        const double bound = half_step_bound(xv, ref.scale_exponent);
        if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
        if (!(err <= bound) && ++bound_violations <= 10) {
          FAIL_CHECK("(" << r << ", " << c << "): |" << xv << " - " << qv << "| = " << err
                         << " exceeds half a grid step " << bound);
        }
      }
    }
  }
  CHECK(mismatches == 0);
  CHECK(bound_violations == 0);
  // The midpoint blocks reach the bound exactly: it is tight, not loose.
  CHECK(worst_ratio == 1.0);
}

TEST_CASE("MXFP4 quantize: both nibble orders decode the same values from different bytes",
          "[mxfp4][quantize]") {
  std::mt19937_64 rng(99);
  const Tensor<float, 2> x = random_matrix(rng, 8, 128);
  const auto a = quantize<MXFP4Checkpoint>(x);
  const auto b = quantize<MXFP4SplitHalf>(x);
  CHECK(a.scales() == b.scales());
  CHECK(a.blocks() != b.blocks());
  const Tensor<float, 2> da = dequantize(a.view()), db = dequantize(b.view());
  REQUIRE(da.size() == db.size());
  for (std::size_t i = 0; i < da.storage().size(); ++i) {
    if (bits(da.storage()[i]) != bits(db.storage()[i])) {
      FAIL_CHECK("element " << i << ": " << da.storage()[i] << " vs " << db.storage()[i]);
    }
  }

  // Where each element's code sits: checkpoint order puts element 2j in the
  // low nibble of byte j and 2j+1 in the high one; ggml's order puts element j
  // low and j+16 high.
  std::array<std::uint8_t, 32> codes{};
  for (int i = 0; i < 32; ++i) codes[i] = static_cast<std::uint8_t>((i * 7 + 3) % 16);
  std::array<std::uint8_t, 16> inter{}, split{};
  MXFP4Checkpoint::pack(codes.data(), inter.data());
  MXFP4SplitHalf::pack(codes.data(), split.data());
  for (int j = 0; j < 16; ++j) {
    CHECK(int(inter[j]) == (codes[2 * j] | (codes[2 * j + 1] << 4)));
    CHECK(int(split[j]) == (codes[j] | (codes[j + 16] << 4)));
  }
  std::array<std::uint8_t, 32> back{};
  MXFP4Checkpoint::unpack(inter.data(), back.data());
  CHECK(back == codes);
  MXFP4SplitHalf::unpack(split.data(), back.data());
  CHECK(back == codes);
  // Every byte value unpacks and repacks to itself in both orders.
  std::array<std::uint8_t, 16> all{}, again{};
  for (int v = 0; v < 256; v += 16) {
    for (int j = 0; j < 16; ++j) all[j] = static_cast<std::uint8_t>(v + j);
    MXFP4Checkpoint::unpack(all.data(), back.data());
    MXFP4Checkpoint::pack(back.data(), again.data());
    CHECK(again == all);
    MXFP4SplitHalf::unpack(all.data(), back.data());
    MXFP4SplitHalf::pack(back.data(), again.data());
    CHECK(again == all);
  }
}

TEST_CASE("MXFP4 quantize: FP4TensorView and FP4Tensor reject bad shapes", "[mxfp4][bad-input]") {
  const std::vector<std::uint8_t> bytes(4 * 4 * 4 * 16, 0);
  using V = FP4TensorView<MXFP4Checkpoint>;
  auto u8 = [&](auto shape) {
    return TensorView<const std::uint8_t, std::tuple_size_v<decltype(shape)>>(bytes.data(), shape);
  };
  SECTION("blocks and scales disagree on the number of groups") {
    REQUIRE_THROWS_MATCHES(
        V::from_blocks(u8(std::array<index_t, 3>{2, 3, 16}), u8(std::array<index_t, 2>{2, 4})),
        ShapeError, mentions({"(2, 3, 16)", "(2, 4)"}));
  }
  SECTION("blocks and scales disagree on a leading dimension") {
    REQUIRE_THROWS_MATCHES(V::from_blocks(u8(std::array<index_t, 4>{2, 3, 4, 16}),
                                          u8(std::array<index_t, 3>{3, 3, 4})),
                           ShapeError, mentions({"(2, 3, 4, 16)", "(3, 3, 4)"}));
  }
  SECTION("blocks whose last dimension is not 16 bytes") {
    REQUIRE_THROWS_MATCHES(
        V::from_blocks(u8(std::array<index_t, 3>{2, 3, 15}), u8(std::array<index_t, 2>{2, 3})),
        ShapeError, mentions({"(2, 3, 15)", "16"}));
    REQUIRE_THROWS_MATCHES(
        V::from_blocks(u8(std::array<index_t, 2>{3, 32}), u8(std::array<index_t, 1>{3})),
        ShapeError, mentions({"(3, 32)", "(3)"}));
  }
  SECTION("cols not divisible by 32") {
    REQUIRE_THROWS_MATCHES(V(bytes.data(), bytes.data(), 4, 48), ShapeError,
                           mentions({"(4, 48)", "32"}));
    REQUIRE_THROWS_MATCHES(V(bytes.data(), bytes.data(), 1, 31), ShapeError,
                           mentions({"(1, 31)", "32"}));
    REQUIRE_THROWS_MATCHES(V(bytes.data(), bytes.data(), -1, 32), ShapeError,
                           mentions({"(-1, 32)"}));
    REQUIRE_THROWS_MATCHES(FP4Tensor<MXFP4SplitHalf>(2, 33), ShapeError,
                           mentions({"(2, 33)", "32"}));
    const Tensor<float, 2> x({2, 48});
    REQUIRE_THROWS_MATCHES(quantize<MXFP4Checkpoint>(x), ShapeError, mentions({"(2, 48)", "32"}));
  }
  SECTION("consistent shapes are accepted and flattened to rows") {
    const auto v = V::from_blocks(u8(std::array<index_t, 4>{2, 3, 4, 16}),
                                  u8(std::array<index_t, 3>{2, 3, 4}));
    CHECK(v.rows() == 6);
    CHECK(v.cols() == 128);
    CHECK(v.nbytes() == 6 * 4 * 17);
  }
}

TEST_CASE("MXFP4 quantize: row_range views decode the right rows", "[mxfp4][quantize]") {
  std::mt19937_64 rng(5);
  constexpr index_t kRows = 9, kCols = 96;
  const Tensor<float, 2> x = random_matrix(rng, kRows, kCols);
  const auto q = quantize<MXFP4SplitHalf>(x);
  const Tensor<float, 2> full = dequantize(q.view());
  const auto mid = q.view().row_range(3, 7);
  REQUIRE(mid.rows() == 4);
  REQUIRE(mid.cols() == kCols);
  const Tensor<float, 2> part = dequantize(mid);
  std::vector<float> row(kCols);
  for (index_t r = 0; r < 4; ++r) {
    mid.decode_row(r, row);
    for (index_t c = 0; c < kCols; ++c) {
      INFO("(" << r << ", " << c << ")");
      REQUIRE(bits(part(r, c)) == bits(full(r + 3, c)));
      REQUIRE(bits(row[static_cast<std::size_t>(c)]) == bits(full(r + 3, c)));
      REQUIRE(bits(mid.at(r, c)) == bits(full(r + 3, c)));
    }
  }
  // Checkpoint-shaped arrays (experts, rows, groups, 16): a row range picks one expert.
  const auto q2 = quantize<MXFP4Checkpoint>(random_matrix(rng, 6, 64));
  const TensorView<const std::uint8_t, 4> blocks(q2.blocks().data(), {2, 3, 2, 16});
  const TensorView<const std::uint8_t, 3> scales(q2.scales().data(), {2, 3, 2});
  const auto w = FP4TensorView<MXFP4Checkpoint>::from_blocks(blocks, scales);
  const Tensor<float, 2> all = dequantize(q2.view());
  const auto expert1 = w.row_range(3, 6);
  for (index_t r = 0; r < 3; ++r) {
    for (index_t c = 0; c < 64; ++c) REQUIRE(bits(expert1.at(r, c)) == bits(all(r + 3, c)));
  }
}

TEST_CASE("MXFP4 quantize: scale byte 0 decodes to subnormals equal to std::ldexp",
          "[mxfp4][e8m0]") {
  // One row, two blocks: all 16 codes twice, at scale bytes 0 and 1.
  std::array<std::uint8_t, 32> codes{};
  for (int i = 0; i < 32; ++i) codes[i] = static_cast<std::uint8_t>(i % 16);
  for (std::uint8_t s0 : {std::uint8_t{0}, std::uint8_t{1}, std::uint8_t{2}, std::uint8_t{254}}) {
    std::array<std::uint8_t, 16> block{};
    MXFP4Checkpoint::pack(codes.data(), block.data());
    const std::uint8_t scale = s0;
    const FP4TensorView<MXFP4Checkpoint> v(block.data(), &scale, 1, 32);
    for (int i = 0; i < 32; ++i) {
      const float code_value = e2m1::decode(codes[i]);
      const float want = std::ldexp(code_value, static_cast<int>(s0) - 127);
      INFO("scale byte " << int(s0) << ", code " << int(codes[i]));
      CHECK(bits(v.at(0, i)) == bits(want));
      CHECK(bits(e8m0::apply(code_value, s0)) == bits(want));
      if (s0 == 0 && code_value != 0.0f && std::fabs(code_value) < 2.0f) {
        CHECK(std::fpclassify(v.at(0, i)) == FP_SUBNORMAL);
        CHECK(std::fabs(v.at(0, i)) == std::fabs(code_value) * 0x1p-127f);
      }
    }
  }
  // 0.5 * 2^-127 = 2^-128 is the smallest magnitude MXFP4 encodes.
  CHECK(e8m0::apply(0.5f, 0) == std::ldexp(1.0f, -128));
  CHECK(e8m0::apply(0.5f, 0) > 0.0f);
  // Byte 255 overflows: +-inf for non-zero values, zero stays zero.
  CHECK(std::isinf(e8m0::apply(6.0f, 255)));
  CHECK(e8m0::apply(0.0f, 255) == 0.0f);
}

TEST_CASE("MXFP4 quantize: never produces NaN, even from infinities and extremes",
          "[mxfp4][quantize]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float fmax = std::numeric_limits<float>::max();
  Tensor<float, 2> x({4, 32});
  for (index_t c = 0; c < 32; ++c) {
    x(0, c) = c % 2 ? inf : -inf;    // all infinite
    x(1, c) = c == 5 ? inf : 1.0f;   // one infinity among ones
    x(2, c) = c % 3 ? fmax : -fmax;  // largest finite
    x(3, c) = std::numeric_limits<float>::denorm_min() * static_cast<float>(c);  // subnormals
  }
  const auto q = quantize<MXFP4Checkpoint>(x);
  const Tensor<float, 2> d = dequantize(q.view());
  for (float v : d.storage()) CHECK_FALSE(std::isnan(v));
  for (std::uint8_t s : q.scales()) CHECK(s != 0xff);
  // An infinite amax takes the largest scale 2^127 and infinities saturate
  // to +-6 * 2^127, which is beyond FLT_MAX: infinity in, infinity out.
  CHECK(int(q.scales()[0]) == 254);
  CHECK(d(0, 1) == inf);
  CHECK(d(0, 0) == -inf);
  CHECK(d(1, 5) == inf);
  CHECK(d(1, 0) == 0.0f);                   // 1 / 2^127 rounds to zero
  CHECK(d(2, 1) == std::ldexp(6.0f, 125));  // fmax / 2^125 is just under 8: clips to 6
  CHECK(d(2, 0) == -std::ldexp(6.0f, 125));
  CHECK(int(q.scales()[3]) == 0);  // subnormal amax clamps to the smallest scale
  CHECK(d(3, 31) == 0.0f);
}

TEST_CASE("int8 blocks: each weight within half a step of its block's scale, exact where representable",
          "[int8][quantize]") {
  std::mt19937_64 rng(77);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (const index_t cols : {index_t{1}, index_t{31}, index_t{32}, index_t{33}, index_t{100}, index_t{2880}}) {
    INFO("cols " << cols);
    const index_t rows = 5;
    Tensor<bf16, 2> w({rows, cols});
    for (index_t r = 0; r < rows; ++r) {
      for (index_t c = 0; c < cols; ++c) w(r, c) = bf16::from_float(r == 3 ? 0.0f : u(rng));
    }
    const Int8Matrix q = quantize_int8(w.view(), "w");
    const Int8MatrixView v = q.view();
    REQUIRE(v.rows() == rows);
    REQUIRE(v.cols() == cols);
    REQUIRE(v.row_stride() % 32 == 0);
    for (index_t r = 0; r < rows; ++r) {
      for (index_t b = 0; b < v.blocks_per_row(); ++b) {
        // The scale is the block's largest magnitude over 127 (float64 check).
        double max_abs = 0.0;
        for (index_t c = 32 * b; c < std::min(cols, 32 * b + 32); ++c) {
          max_abs = std::max(max_abs, std::fabs(static_cast<double>(w(r, c).to_float())));
        }
        const double scale = v.scales()[r * v.blocks_per_row() + b];
        CHECK(scale == Approx(max_abs / 127.0).epsilon(1e-6));
        for (index_t c = 32 * b; c < 32 * b + 32; ++c) {
          if (c >= cols) {
            CHECK(v.values()[r * v.row_stride() + c] == 0);  // padding
            continue;
          }
          const double want = w(r, c).to_float();
          CHECK(std::fabs(v.at(r, c) - want) <= 0.5 * scale + 1e-6 * std::fabs(want) + 1e-30);  // + fp32 rounding
        }
      }
    }
    std::vector<float> decoded(static_cast<std::size_t>(cols));
    v.decode_row(3, decoded);  // the all-zero row stays zero
    CHECK(std::all_of(decoded.begin(), decoded.end(), [](float x) { return x == 0.0f; }));
  }
  SECTION("integer multiples of the scale come back exactly, signs and 127 included") {
    Tensor<bf16, 2> w({1, 32});
    for (index_t c = 0; c < 32; ++c) w(0, c) = bf16::from_float(static_cast<float>((c % 2 ? -1 : 1) * (4 * c)));
    w(0, 5) = bf16::from_float(-127.0f);
    w(0, 6) = bf16::from_float(127.0f);
    const Int8Matrix q = quantize_int8(w.view(), "w");
    CHECK(q.view().scales()[0] == 1.0f);
    for (index_t c = 0; c < 32; ++c) CHECK(q.view().at(0, c) == w(0, c).to_float());
  }
}

TEST_CASE("int8 blocks: tiny weights, normal or subnormal, keep their signs and sizes", "[int8][quantize]") {
  // 127 / max |w| overflows float below about 3.7e-37.
  for (const float top : {1e-37f, 3e-39f, 1e-30f, 1e-20f}) {
    INFO("largest weight " << top);
    Tensor<bf16, 2> w({1, 40});
    w(0, 0) = bf16::from_float(top);
    w(0, 1) = bf16::from_float(-0.5f * top);
    w(0, 2) = bf16::from_float(0.25f * top);
    w(0, 33) = bf16::from_float(-top);  // the second block
    const Int8Matrix q = quantize_int8(w.view(), "w");
    const Int8MatrixView v = q.view();
    for (index_t c = 0; c < 40; ++c) {
      const double want = w(0, c).to_float();
      const double scale = v.scales()[c / 32];
      INFO("column " << c);
      if (want == 0.0) {
        CHECK(v.values()[c] == 0);
      } else {
        CHECK((v.values()[c] > 0) == (want > 0));
        CHECK(std::fabs(v.at(0, c) - want) <= 0.5 * scale + 1e-2 * std::fabs(want));  // subnormal scales round
      }
    }
    CHECK(std::abs(int{v.values()[0]}) == 127);
    CHECK(std::abs(int{v.values()[33]}) == 127);
  }
}

TEST_CASE("int8 blocks: a non-finite weight is a RangeError naming the tensor and element",
          "[int8][quantize][bad-input]") {
  Tensor<bf16, 2> w({2, 40});
  w(1, 37) = bf16::from_float(std::numeric_limits<float>::quiet_NaN());
  REQUIRE_THROWS_MATCHES(quantize_int8(w.view(), "block.0.attn.qkv.weight"), RangeError,
                         MentionsAll({"block.0.attn.qkv.weight", "(1, 37)", "non-finite"}));
  w(1, 37) = bf16::from_float(-std::numeric_limits<float>::infinity());
  REQUIRE_THROWS_AS(quantize_int8(w.view(), "w"), RangeError);
}
