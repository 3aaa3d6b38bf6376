// FP4 post-training quantization: the E4M3 scale type (all 256 codes against
// a float64 formula written here), MXFP4 with both scale rules (exact recovery
// of MXFP4-representable matrices, the golden checkpoint's experts included;
// the search rule against a float64 brute force over the candidate scales),
// and NVFP4 (the standard recipe recomputed in float64, decoding through
// decode_row and the MoE block).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/core/weight_matrix.hpp"
#include "gptoss/formats/e4m3.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/io/safetensors.hpp"
#include "gptoss/layers/moe_block.hpp"

#include "support/matchers.hpp"
#include "support/random.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using test::Rng;

namespace {

/// E4M3 (e4m3fn) value of a code from the format's definition, in float64.
double e4m3_formula(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double a = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -a : a;
}

/// The finite E4M3 code nearest to x (float64 brute force), ties to the even
/// code; beyond +-448 the largest finite code.
int e4m3_nearest(double x) {
  if (std::fabs(x) >= 448.0) return std::signbit(x) ? 0xfe : 0x7e;
  int best = -1;
  double best_d = 0.0;
  for (int c = 0; c < 256; ++c) {
    const double v = e4m3_formula(c);
    if (std::isnan(v) || std::signbit(v) != std::signbit(x)) continue;
    const double d = std::fabs(v - x);
    if (best < 0 || d < best_d || (d == best_d && c % 2 == 0 && best % 2 == 1)) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

constexpr std::array<double, 8> kE2M1 = {0, 0.5, 1, 1.5, 2, 3, 4, 6};

/// |E2M1 value| nearest to |x| in float64, ties to the even code; saturating.
double e2m1_nearest(double x) {
  const double a = std::fabs(x);
  int best = 0;
  for (int c = 1; c < 8; ++c) {
    const double d = std::fabs(kE2M1[c] - a), bd = std::fabs(kE2M1[best] - a);
    if (d < bd || (d == bd && c % 2 == 0)) best = c;
  }
  return std::copysign(kE2M1[best], x);
}

/// Standard normal from raw mt19937 bits (Box-Muller).
float gaussian(Rng& rng) {
  const double u1 = (static_cast<double>(rng() >> 8) + 1.0) * 0x1p-24, u2 = static_cast<double>(rng() >> 8) * 0x1p-24;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

Tensor<float, 2> gaussian_matrix(Rng& rng, index_t rows, index_t cols, float sigma) {
  Tensor<float, 2> x({rows, cols});
  for (float& v : x.storage()) v = sigma * gaussian(rng);
  return x;
}

/// Random MXFP4 bytes: uniform codes, scale bytes in [lo, hi], some all-zero blocks.
FP4Tensor<MXFP4Checkpoint> random_mxfp4(Rng& rng, index_t rows, index_t cols, int lo, int hi) {
  FP4Tensor<MXFP4Checkpoint> t(rows, cols);
  for (auto& b : t.blocks()) b = static_cast<std::uint8_t>(rng());
  for (auto& s : t.scales()) s = static_cast<std::uint8_t>(test::uniform_int(rng, lo, hi));
  for (std::size_t b = 0; b < t.scales().size(); b += 7) std::fill_n(t.blocks().begin() + static_cast<std::ptrdiff_t>(16 * b), 16, 0);
  return t;
}

}  // namespace

TEST_CASE("E4M3: every code decodes to the format's float64 value", "[e4m3]") {
  for (int c = 0; c < 256; ++c) {
    const double want = e4m3_formula(c);
    const float got = e4m3::decode(static_cast<std::uint8_t>(c));
    INFO("code " << c);
    if (std::isnan(want)) {
      CHECK(std::isnan(got));
    } else {
      CHECK(static_cast<double>(got) == want);
      CHECK(std::signbit(got) == ((c & 0x80) != 0));
    }
  }
  CHECK(e4m3::decode(e4m3::kMaxCode) == 448.0f);
  CHECK(e4m3::decode(1) == std::ldexp(1.0f, -9));
}

TEST_CASE("E4M3: encode is the nearest code, ties to even, saturating at 448", "[e4m3]") {
  // Every finite value, the midpoints between neighbours, and just either side.
  std::vector<double> probes;
  for (int c = 0; c < 127; ++c) {
    const double v = e4m3_formula(c);
    probes.push_back(v);
    if (c + 1 < 127) {
      const double mid = (v + e4m3_formula(c + 1)) / 2;
      probes.push_back(mid);
      probes.push_back(std::nextafter(static_cast<float>(mid), 0.0f));
      probes.push_back(std::nextafter(static_cast<float>(mid), 1e9f));
    }
  }
  for (double p : {448.0, 463.99, 464.0, 480.0, 1e6, 1e30}) probes.push_back(p);
  Rng rng(7);
  for (int i = 0; i < 20000; ++i) probes.push_back(std::ldexp(test::uniform(rng, 1.0f, 2.0f), test::uniform_int(rng, -12, 9)));
  for (double p : probes) {
    for (double x : {p, -p}) {
      const float xf = static_cast<float>(x);
      INFO("x = " << xf);
      CHECK(static_cast<int>(e4m3::encode(xf)) == e4m3_nearest(xf));
    }
  }
  CHECK(e4m3::encode(std::numeric_limits<float>::infinity()) == 0x7e);
  CHECK(e4m3::encode(-std::numeric_limits<float>::infinity()) == 0xfe);
  CHECK(e4m3::encode(-0.0f) == 0x80);
}

TEMPLATE_TEST_CASE_SIG("MXFP4 PTQ: a float copy of MXFP4 weights quantizes back to the same values",
                       "[mxfp4][ptq]", ((ScaleRule R), R), ScaleRule::ocp, ScaleRule::search) {
  std::vector<FP4Tensor<MXFP4Checkpoint>> inputs;
  Rng rng(11 + static_cast<int>(R));
  inputs.push_back(random_mxfp4(rng, 24, 256, 100, 150));
  inputs.push_back(random_mxfp4(rng, 8, 64, 0, 10));      // tiny scales, float subnormals
  inputs.push_back(random_mxfp4(rng, 8, 64, 244, 252));   // near the top of the float range
  std::vector<FP4TensorView<MXFP4Checkpoint>> views;
  for (const auto& t : inputs) views.push_back(t.view());
  // The golden checkpoint's experts (bf16 holds every MXFP4 value, so its float copy is that copy).
  const io::SafetensorsFile golden(test::golden_dir() / "tiny" / "model.safetensors");
  for (const char* name : {"block.0.mlp.mlp1_weight", "block.3.mlp.mlp2_weight"}) {
    const auto blocks = golden.view<std::uint8_t, 4>(std::string(name) + ".blocks");
    const auto scales = golden.view<std::uint8_t, 3>(std::string(name) + ".scales");
    for (index_t e = 0; e < blocks.extent(0); ++e) views.push_back(FP4TensorView<MXFP4Checkpoint>::from_blocks(blocks[e], scales[e]));
  }
  std::size_t changed_codes = 0;
  for (const auto& w : views) {
    const Tensor<float, 2> x = dequantize(w);
    CHECK(std::all_of(x.storage().begin(), x.storage().end(), [](float v) { return bf16::from_float(v).to_float() == v; }));
    const auto q = FP4Tensor<MXFP4Checkpoint>::quantize(x.view(), R);
    const Tensor<float, 2> y = dequantize(q.view());
    for (index_t i = 0; i < x.size(); ++i) {
      if (y.storage()[i] != x.storage()[i] || std::signbit(y.storage()[i]) != std::signbit(x.storage()[i])) {
        FAIL("element " << i << ": " << x.storage()[i] << " came back as " << y.storage()[i]);
      }
    }
    changed_codes += !std::equal(q.scales().begin(), q.scales().end(), w.scales());
  }
  // Codes may differ only where another scale gives the same values (e.g. zero blocks).
  CHECK(changed_codes > 0);
}

TEST_CASE("MXFP4 PTQ: the search rule keeps the best of the OCP scale and its neighbours", "[mxfp4][ptq]") {
  Rng rng(5);
  Tensor<float, 2> x = gaussian_matrix(rng, 32, 512, 0.02f);
  for (index_t c = 0; c < 512; c += 97) x(3, c) = 0.0f;
  // A block where the smaller scale wins: 4 clips to 6 at 2^(e0-1), but 31
  // elements of 0.25 (a tie that rounds to 0 at 2^e0) become exact.
  for (index_t c = 0; c < 32; ++c) x(5, c) = c == 0 ? 4.0f / 64 : 0.25f / 64;
  const auto ocp = FP4Tensor<MXFP4Checkpoint>::quantize(x.view(), ScaleRule::ocp);
  const auto search = FP4Tensor<MXFP4Checkpoint>::quantize(x.view(), ScaleRule::search);
  const Tensor<float, 2> yo = dequantize(ocp.view()), ys = dequantize(search.view());
  double sse_ocp = 0.0, sse_search = 0.0;
  int moved = 0;
  for (index_t r = 0; r < 32; ++r) {
    for (index_t g = 0; g < 16; ++g) {
      // Float64 brute force over the exponents floor(log2 amax) - 2 + {0, 1, -1}.
      double amax = 0.0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x(r, g * 32 + i))));
      const int e0 = static_cast<int>(std::floor(std::log2(amax))) - 2;
      double best = INFINITY;
      int best_e = e0;
      for (int e : {e0, e0 + 1, e0 - 1}) {
        double sse = 0.0;
        for (int i = 0; i < 32; ++i) {
          const double v = x(r, g * 32 + i);
          const double d = v - e2m1_nearest(std::ldexp(v, -e)) * std::ldexp(1.0, e);
          sse += d * d;
        }
        if (sse < best) best = sse, best_e = e;
      }
      double got = 0.0, got_ocp = 0.0;
      for (int i = 0; i < 32; ++i) {
        const double v = x(r, g * 32 + i);
        got += (v - ys(r, g * 32 + i)) * (v - ys(r, g * 32 + i));
        got_ocp += (v - yo(r, g * 32 + i)) * (v - yo(r, g * 32 + i));
      }
      INFO("block (" << r << ", " << g << ")");
      CHECK(e8m0::exponent(search.scales()[static_cast<std::size_t>(r * 16 + g)]) == best_e);
      CHECK(got == Approx(best).epsilon(1e-12).margin(1e-30));
      CHECK(e8m0::exponent(ocp.scales()[static_cast<std::size_t>(r * 16 + g)]) == e0);
      moved += best_e != e0;
      sse_ocp += got_ocp;
      sse_search += got;
    }
  }
  CHECK(moved > 0);
  CHECK(e8m0::exponent(search.scales()[5 * 16]) == -7);  // 2^(e0 - 1), e0 = log2(4/64) - 2
  CHECK(sse_search < sse_ocp);
}

TEMPLATE_TEST_CASE_SIG("NVFP4: quantize follows the standard recipe, recomputed in float64", "[nvfp4][ptq]",
                       ((ScaleRule R), R), ScaleRule::ocp, ScaleRule::search) {
  Rng rng(21);
  for (float sigma : {1e-3f, 0.7f, 300.0f}) {
    Tensor<float, 2> x = gaussian_matrix(rng, 12, 96, sigma);
    x(4, 17) = 9.0f * sigma;  // one outlier sets the tensor amax
    for (index_t c = 32; c < 48; ++c) x(2, c) = 0.0f;  // an all-zero block
    const auto q = FP4Tensor<NVFP4>::quantize(x.view(), R);
    double amax = 0.0;
    for (float v : x.storage()) amax = std::max(amax, std::fabs(static_cast<double>(v)));
    const float g = static_cast<float>(amax) / 2688.0f;
    INFO("sigma " << sigma);
    REQUIRE(q.global_scale() == g);
    const Tensor<float, 2> y = dequantize(q.view());
    for (index_t r = 0; r < 12; ++r) {
      for (index_t b = 0; b < 6; ++b) {
        double bmax = 0.0;
        for (int i = 0; i < 16; ++i) bmax = std::max(bmax, std::fabs(static_cast<double>(x(r, b * 16 + i))));
        const int s0 = e4m3_nearest(bmax / (6.0 * static_cast<double>(g)));
        const int s = q.scales()[static_cast<std::size_t>(r * 6 + b)];
        // The float64 block error at scale code c: each element to its nearest E2M1 value.
        const auto sse_at = [&](int c) {
          const double d = e4m3_formula(c) * static_cast<double>(g);
          double sse = 0.0;
          for (int i = 0; i < 16; ++i) {
            const double v = x(r, b * 16 + i);
            const double err = v - (d > 0 ? e2m1_nearest(v / d) * d : 0.0);
            sse += err * err;
          }
          return sse;
        };
        INFO("block (" << r << ", " << b << ")");
        if (R == ScaleRule::ocp) {
          CHECK(s == s0);
        } else {
          CHECK(std::abs(s - s0) <= 1);
          for (int c : {s0 - 1, s0, s0 + 1}) {
            if (c >= 0 && c <= 0x7e) CHECK(sse_at(s) <= sse_at(c) * (1 + 1e-9) + 1e-300);
          }
        }
        // Each element decodes to (nearest E2M1 of v / (e4m3(s) g)) * e4m3(s) * g.
        const double d = e4m3_formula(s) * static_cast<double>(g);
        for (int i = 0; i < 16; ++i) {
          const double v = x(r, b * 16 + i);
          const double want = d > 0 ? e2m1_nearest(v / d) * d : 0.0;
          CHECK(y(r, b * 16 + i) == Approx(want).epsilon(1e-6).margin(1e-30));
        }
      }
    }
  }
}

TEST_CASE("NVFP4: the power-of-two global scale makes every decoded value exact in bf16", "[nvfp4][ptq]") {
  Rng rng(3);
  const Tensor<float, 2> x = gaussian_matrix(rng, 16, 64, 0.05f);
  const auto q = FP4Tensor<NVFP4>::quantize(x.view(), ScaleRule::ocp, GlobalScale::power_of_two);
  int e = 0;
  CHECK(std::frexp(q.global_scale(), &e) == 0.5f);
  double amax = 0.0;
  for (float v : x.storage()) amax = std::max(amax, std::fabs(static_cast<double>(v)));
  CHECK(q.global_scale() >= amax / 2688.0);
  CHECK(q.global_scale() < 2.0 * amax / 2688.0);
  const Tensor<float, 2> y = dequantize(q.view());
  CHECK(std::all_of(y.storage().begin(), y.storage().end(), [](float v) { return bf16::from_float(v).to_float() == v; }));
}

TEST_CASE("NVFP4: experts decode through decode_row in the linear and MoE reference paths", "[nvfp4][moe]") {
  Rng rng(9);
  const MoEParams p{64, 32, 4, 2, 7.0f, 1e-5f};
  auto dense = test::random_moe_weights<MatrixView<const float>>(rng, p, 2.0f);
  // NVFP4 experts and the float matrices they decode to.
  std::vector<FP4Tensor<NVFP4>> q1, q2;
  std::vector<Tensor<float, 2>> d1, d2;
  MoEWeights<FP4TensorView<NVFP4>> wq = {dense.weights().norm, dense.weights().gate_weight, dense.weights().gate_bias,
                                         {}, dense.weights().mlp1_bias, {}, dense.weights().mlp2_bias};
  MoEWeights<MatrixView<const float>> wd = dense.weights();
  wd.mlp1_weight.clear();
  wd.mlp2_weight.clear();
  for (index_t e = 0; e < p.num_experts; ++e) {
    q1.push_back(FP4Tensor<NVFP4>::quantize(dense.weights().mlp1_weight[static_cast<std::size_t>(e)]));
    q2.push_back(FP4Tensor<NVFP4>::quantize(dense.weights().mlp2_weight[static_cast<std::size_t>(e)]));
  }
  for (std::size_t e = 0; e < q1.size(); ++e) {
    d1.push_back(dequantize(q1[e].view()));
    d2.push_back(dequantize(q2[e].view()));
    wq.mlp1_weight.push_back(q1[e].view());
    wq.mlp2_weight.push_back(q2[e].view());
    wd.mlp1_weight.push_back(d1[e].view());
    wd.mlp2_weight.push_back(d2[e].view());
    // decode_row agrees with element access, row by row.
    std::vector<float> row(static_cast<std::size_t>(p.hidden));
    decode_row(q1[e].view(), 5, row);
    for (index_t c = 0; c < p.hidden; ++c) REQUIRE(row[static_cast<std::size_t>(c)] == q1[e].view().at(5, c));
  }
  const Tensor<float, 2> x = test::random_matrix(rng, 6, p.hidden);
  Tensor<float, 2> yq({6, p.hidden}), yd({6, p.hidden});
  MoEBlock<FP4TensorView<NVFP4>, cpu_reference>(p).forward(wq, x.view(), yq.view());
  MoEBlock<MatrixView<const float>, cpu_reference>(p).forward(wd, x.view(), yd.view());
  CHECK(yq.storage() == yd.storage());
  // The MoE output moved away from x: the experts did contribute.
  double moved = 0.0;
  for (index_t i = 0; i < yq.size(); ++i) moved += std::fabs(yq.storage()[i] - x.storage()[i]);
  CHECK(moved > 0.1);
}

TEST_CASE("NVFP4: bad input is a clear error", "[nvfp4][bad-input]") {
  Tensor<float, 2> x({2, 32});
  std::fill(x.storage().begin(), x.storage().end(), 1.0f);
  x(1, 20) = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_MATCHES(FP4Tensor<NVFP4>::quantize(x.view()), RangeError, test::MessageHas({"infinity", "(1, 20)"}));
  x(1, 20) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_MATCHES(FP4Tensor<NVFP4>::quantize(x.view()), RangeError, test::MessageHas({"NaN", "(1, 20)"}));
  const Tensor<float, 2> odd({2, 24});
  REQUIRE_THROWS_MATCHES(FP4Tensor<NVFP4>::quantize(odd.view()), ShapeError, test::MessageHas({"(2, 24)", "16"}));
}
