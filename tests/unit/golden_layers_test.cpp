// Every layer against the per-layer outputs of OpenAI's reference
// implementation (tests/data/golden/layers), at the golden README's
// tolerances.
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/test_data.hpp"

using namespace gptoss;
using gptoss::test::compare_elementwise;
using gptoss::test::compare_to_max;

namespace {

/// True when every element has the same bits (so -0.0 and subnormals count).
bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) {
      UNSCOPED_INFO("element " << i << ": " << a[i] << " vs " << b[i]);
      return false;
    }
  }
  return true;
}

std::vector<float> decode_all(const FP4TensorView<MXFP4Checkpoint>& w) {
  const Tensor<float, 2> d = dequantize(w);
  return d.storage();
}

}  // namespace

TEST_CASE("MXFP4 decoding is bit-exact against the reference", "[golden][mxfp4]") {
  const auto f = test::golden_layer("mxfp4");
  const auto blocks = f.view<std::uint8_t, 3>("blocks");
  const auto scales = f.view<std::uint8_t, 2>("scales");
  const auto w = FP4TensorView<MXFP4Checkpoint>::from_blocks(blocks, scales);
  CHECK(w.rows() == 4);
  CHECK(w.cols() == 256);
  CHECK(bit_equal(decode_all(w), f.read<float>("dequant")));

  const auto w4 = FP4TensorView<MXFP4Checkpoint>::from_blocks(f.view<std::uint8_t, 4>("blocks_4d"),
                                                              f.view<std::uint8_t, 3>("scales_4d"));
  CHECK(w4.rows() == 6);
  CHECK(w4.cols() == 64);
  CHECK(bit_equal(decode_all(w4), f.read<float>("dequant_4d")));

  const auto values = f.read<float>("fp4_values");
  REQUIRE(values.size() == 16);
  for (std::uint8_t code = 0; code < 16; ++code) {
    CHECK(std::bit_cast<std::uint32_t>(e2m1::decode(code)) ==
          std::bit_cast<std::uint32_t>(values[code]));
  }
}

TEST_CASE("The split-half nibble order does not decode checkpoint bytes", "[golden][mxfp4]") {
  // The same bytes read with ggml's order give different values: the order
  // must come from the type, never be guessed.
  const auto f = test::golden_layer("mxfp4");
  const auto w = FP4TensorView<MXFP4SplitHalf>::from_blocks(f.view<std::uint8_t, 3>("blocks"),
                                                            f.view<std::uint8_t, 2>("scales"));
  const Tensor<float, 2> d = dequantize(w);
  CHECK_FALSE(bit_equal(d.storage(), f.read<float>("dequant")));
}

TEST_CASE("RMSNorm matches the reference", "[golden][rmsnorm]") {
  const auto f = test::golden_layer("rmsnorm");
  const auto x = f.view<float, 2>("x");
  const RMSNorm<> norm(x.extent(1));
  Tensor<float, 2> out(x.shape());
  norm.forward({f.view<bf16, 1>("scale")}, x, out.view());
  GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), f.read<float>("out"), 1e-5, 0.0));
  // The all-zero row must give exactly zero.
  for (index_t r = 0; r < x.extent(0); ++r) {
    bool zero_row = true;
    for (index_t c = 0; c < x.extent(1); ++c) zero_row = zero_row && x(r, c) == 0.0f;
    if (!zero_row) continue;
    for (index_t c = 0; c < x.extent(1); ++c) CHECK(out(r, c) == 0.0f);
  }
}

TEST_CASE("Clipped SwiGLU matches the reference", "[golden][swiglu]") {
  const auto f = test::golden_layer("swiglu");
  const auto x = f.view<float, 2>("x");
  Tensor<float, 2> out({x.extent(0), x.extent(1) / 2});
  kernels::swiglu(cpu_reference{}, x, kernels::kSwigluAlpha, 7.0f, out.view());
  GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), f.read<float>("out"), 1e-5, 1e-5));
  kernels::swiglu(cpu_reference{}, x, kernels::kSwigluAlpha, 5.0f, out.view());
  GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), f.read<float>("out_limit5"), 1e-5, 1e-5));
}

namespace {

struct RopeCase {
  const char* name;
  RopeParams params;
};

// The three configurations of layers/meta.json.
const RopeCase kRopeCases[] = {
    {"gptoss", {64, 150000.0, 32.0, 4096.0, 1.0, 32.0}},
    {"small", {32, 10000.0, 8.0, 1024.0, 1.5, 24.0}},
    {"noscale", {16, 150000.0, 1.0, 4096.0, 1.0, 32.0}},
};

}  // namespace

TEST_CASE("YaRN RoPE matches the reference", "[golden][rope]") {
  const auto f = test::golden_layer("rope");
  for (const auto& c : kRopeCases) {
    SECTION(c.name) {
      const std::string p = std::string(c.name) + ".";
      const YaRNRope<> rope(c.params);
      const index_t half = c.params.head_dim / 2;

      const auto inv_freq = f.read<float>(p + "inv_freq");
      REQUIRE(static_cast<index_t>(inv_freq.size()) == half);
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(rope.inv_freq(), inv_freq, 0.0, 1e-6));
      CHECK(rope.concentration() == Approx(f.read<float>(p + "concentration")[0]).epsilon(1e-6));

      // Tables of cos/sin at positions 0..19.
      const auto positions = f.read<std::int32_t>(p + "positions");
      std::vector<float> cos(positions.size() * half), sin(positions.size() * half);
      for (std::size_t t = 0; t < positions.size(); ++t) {
        rope.cos_sin(positions[t], {&cos[t * half], static_cast<std::size_t>(half)},
                     {&sin[t * half], static_cast<std::size_t>(half)});
      }
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(cos, f.read<float>(p + "cos"), 1e-5, 0.0));
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(sin, f.read<float>(p + "sin"), 1e-5, 0.0));

      // q and k rotated at positions 0..19.
      for (const char* which : {"q", "k"}) {
        std::vector<float> x = f.read<float>(p + which);
        const auto info = f.info(p + which);
        TensorView<float, 3> view(x.data(), {info.shape[0], info.shape[1], info.shape[2]});
        rope.forward(view, 0);
        GPTOSS_REQUIRE_CLOSE(
            compare_elementwise(x, f.read<float>(p + which + "_out"), 1e-5, 0.0));
      }

      // Far positions up to 131071: angles in float64, compared with the
      // float64 recomputation under the README's position-scaled bound.
      const auto far_pos = f.read<std::int32_t>(p + "far_positions");
      std::vector<float> far_x = f.read<float>(p + "far_x");
      const std::vector<float> far_f64 = f.read_as_float(p + "far_x_out_f64");
      const std::vector<float> far_ref = f.read<float>(p + "far_x_out");
      const auto info = f.info(p + "far_x");
      const index_t rows = info.shape[0], row_size = info.shape[1] * info.shape[2];
      const std::vector<float> far_in = far_x;
      std::vector<index_t> pos(far_pos.begin(), far_pos.end());
      rope.forward(TensorView<float, 3>(far_x.data(), {rows, info.shape[1], info.shape[2]}),
                   VectorView<const index_t>(pos.data(), {rows}));
      for (index_t r = 0; r < rows; ++r) {
        double row_max = 0.0;
        for (index_t i = 0; i < row_size; ++i) {
          row_max = std::max(row_max, std::fabs(static_cast<double>(far_in[r * row_size + i])));
        }
        const double bound = 1e-5 + 1e-7 * static_cast<double>(pos[r]) * row_max;
        for (index_t i = 0; i < row_size; ++i) {
          const std::size_t k = static_cast<std::size_t>(r * row_size + i);
          INFO("position " << pos[r] << ", element " << i);
          REQUIRE(std::fabs(far_x[k] - far_f64[k]) <= bound);
          REQUIRE(std::fabs(far_x[k] - far_ref[k]) <= bound);
        }
      }
    }
  }
}

TEST_CASE("Sink attention matches the reference for every window", "[golden][attention]") {
  const auto f = test::golden_layer("sdpa_sinks");
  const auto q4 = f.view<float, 4>("Q");  // (T, nkv, qm, D)
  const index_t t_count = q4.extent(0), nkv = q4.extent(1), qm = q4.extent(2), d = q4.extent(3);
  const TensorView<const float, 3> q(q4.data(), {t_count, nkv * qm, d});
  const auto k = f.view<float, 3>("K");
  const auto v = f.view<float, 3>("V");
  const auto sinks = f.view<float, 1>("S");
  const float scale = f.read<float>("sm_scale")[0];
  std::vector<index_t> pos(static_cast<std::size_t>(t_count));
  for (index_t t = 0; t < t_count; ++t) pos[static_cast<std::size_t>(t)] = t;
  const VectorView<const index_t> positions(pos.data(), {t_count});

  for (int window : {0, 1, 4, 30}) {
    SECTION("window " + std::to_string(window)) {
      Tensor<float, 2> out({t_count, nkv * qm * d});
      kernels::sink_attention(cpu_reference{}, q, positions, k, v, positions, sinks, scale, window,
                              out.view());
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(
          out.storage(), f.read<float>("out.window" + std::to_string(window)), 1e-5, 0.0));
    }
  }
}

TEST_CASE("MoE block matches the reference", "[golden][moe]") {
  const auto f = test::golden_layer("moe");
  const auto x = f.view<float, 2>("x");
  const MoEParams params{.hidden = 128, .intermediate = 96, .num_experts = 6,
                         .experts_per_token = 3, .swiglu_limit = 7.0f};
  const auto mlp1_blocks = f.view<std::uint8_t, 4>("mlp1_weight.blocks");
  const auto mlp1_scales = f.view<std::uint8_t, 3>("mlp1_weight.scales");
  const auto mlp2_blocks = f.view<std::uint8_t, 4>("mlp2_weight.blocks");
  const auto mlp2_scales = f.view<std::uint8_t, 3>("mlp2_weight.scales");

  MoEWeights<FP4TensorView<MXFP4Checkpoint>> w;
  w.norm.scale = f.view<bf16, 1>("norm.scale");
  w.gate_weight = f.view<bf16, 2>("gate.weight");
  w.gate_bias = f.view<bf16, 1>("gate.bias");
  w.mlp1_bias = f.view<bf16, 2>("mlp1_bias");
  w.mlp2_bias = f.view<bf16, 2>("mlp2_bias");
  for (index_t e = 0; e < params.num_experts; ++e) {
    w.mlp1_weight.push_back(FP4TensorView<MXFP4Checkpoint>::from_blocks(mlp1_blocks[e], mlp1_scales[e]));
    w.mlp2_weight.push_back(FP4TensorView<MXFP4Checkpoint>::from_blocks(mlp2_blocks[e], mlp2_scales[e]));
  }

  SECTION("dequantized expert weights are bit-exact") {
    std::vector<float> mlp1, mlp2;
    for (index_t e = 0; e < params.num_experts; ++e) {
      const auto d1 = decode_all(w.mlp1_weight[static_cast<std::size_t>(e)]);
      const auto d2 = decode_all(w.mlp2_weight[static_cast<std::size_t>(e)]);
      mlp1.insert(mlp1.end(), d1.begin(), d1.end());
      mlp2.insert(mlp2.end(), d2.begin(), d2.end());
    }
    CHECK(bit_equal(mlp1, f.read<float>("mlp1_weight")));
    CHECK(bit_equal(mlp2, f.read<float>("mlp2_weight")));
  }

  SECTION("routing and output") {
    const MoEBlock<> block(params);
    Tensor<float, 2> out(x.shape());
    MoERouting routing;
    block.forward(w, x, out.view(), &routing);

    GPTOSS_REQUIRE_CLOSE(
        compare_to_max(routing.logits.storage(), f.read<float>("router_logits"), 0.0, 1e-4));
    const auto indices = f.read<std::int32_t>("expert_indices");
    CHECK(routing.indices.storage() == indices);
    GPTOSS_REQUIRE_CLOSE(
        compare_elementwise(routing.weights.storage(), f.read<float>("expert_weights"), 1e-5, 0.0));
    GPTOSS_REQUIRE_CLOSE(compare_to_max(out.storage(), f.read<float>("out"), 0.0, 1e-4));
  }
}
