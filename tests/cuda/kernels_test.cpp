// Every CUDA kernel against the CPU reference path (gptoss/kernels/reference)
// on fresh random inputs, outputs poisoned before each run and every element
// compared. fp32 kernels: 1e-5 of the output's magnitude; the tensor-core
// path rounds activations to bf16 (8 significant bits): 1e-2.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/cuda/kernels.hpp"
#include "gptoss/kernels/reference/attention.hpp"
#include "gptoss/kernels/reference/linear.hpp"
#include "gptoss/kernels/reference/rms_norm.hpp"
#include "gptoss/kernels/reference/rope.hpp"
#include "gptoss/kernels/reference/routing.hpp"
#include "gptoss/kernels/reference/swiglu.hpp"
#include "gptoss/layers/yarn_rope.hpp"
#include "cuda/device_test_support.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_to_max;
using gptoss::test::poisoned;
using gptoss::test::to_device;
using gptoss::test::to_host;

namespace {

constexpr double kFp32Tol = 1e-5;
constexpr double kBf16Tol = 1e-2;

std::vector<float> random_floats(test::Rng& rng, std::size_t n, float amplitude = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = test::uniform(rng, -amplitude, amplitude);
  return v;
}

std::vector<bf16> random_bf16s(test::Rng& rng, std::size_t n, float lo, float hi) {
  std::vector<bf16> v(n);
  for (bf16& x : v) x = bf16::from_float(test::uniform(rng, lo, hi));
  return v;
}

/// Reference y (T, N) = residual + x W^T + bias through kernels::linear(cpu_reference).
template <class W>
std::vector<float> reference_linear(const W& w, const std::vector<bf16>& bias, const std::vector<float>& x,
                                    int tokens, const std::vector<float>& residual) {
  const index_t n = rows(w), k = cols(w);
  Tensor<float, 2> y({tokens, n});
  kernels::linear(cpu_reference{}, w, VectorView<const bf16>(bias.data(), {n}),
                  MatrixView<const float>(x.data(), {tokens, k}), y.view());
  std::vector<float> out = y.storage();
  for (std::size_t i = 0; i < out.size(); ++i) out[i] += residual[i];
  return out;
}

}  // namespace

TEST_CASE("MXFP4 linear matches the reference on both paths", "[cuda][linear]") {
  test::skip_without_device();
  test::Rng rng(101);
  // rows not a multiple of the 8-row / 64-row tiles; K = 96 is not a multiple of the 64-wide K step
  for (const auto& [n, k] : {std::pair{77, 96}, std::pair{200, 2880}}) {
    const test::RandomMatrixStack<FP4TensorView<MXFP4Checkpoint>> w(rng, 1, n, k, 4.0f);
    const auto d_blocks = to_device(w.blocks());
    const auto d_scales = to_device(w.scales());
    const cuda::DeviceMXFP4 dw{d_blocks.data(), d_scales.data(), n, k, 1};
    const std::vector<bf16> bias = random_bf16s(rng, static_cast<std::size_t>(n), -1.0f, 1.0f);
    const auto d_bias = to_device(bias);
    for (int tokens : {1, 3, 5, 70}) {
      for (auto path : {cuda::LinearPath::vector, cuda::LinearPath::tensor_core}) {
        INFO("N " << n << ", K " << k << ", T " << tokens << ", tensor cores " << (path == cuda::LinearPath::tensor_core));
        const auto x = random_floats(rng, static_cast<std::size_t>(tokens) * k);
        const auto residual = random_floats(rng, static_cast<std::size_t>(tokens) * n);
        const auto expected = reference_linear(w.view(0), bias, x, tokens, residual);
        const auto d_x = to_device(x);
        auto d_y = to_device(residual);  // y aliases the residual
        cuda::linear(dw, d_bias.data(), d_x.data(), tokens, d_y.data(), d_y.data(), path);
        const double tol = path == cuda::LinearPath::vector ? kFp32Tol : kBf16Tol;
        GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_y), expected, 0.0, tol));
        // without residual and bias: every element written
        auto d_plain = poisoned<float>(static_cast<std::size_t>(tokens) * n);
        cuda::linear(dw, nullptr, d_x.data(), tokens, nullptr, d_plain.data(), path);
        const std::vector<bf16> no_bias(static_cast<std::size_t>(n), bf16::from_float(0.0f));
        const std::vector<float> zeros(static_cast<std::size_t>(tokens) * n, 0.0f);
        GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_plain), reference_linear(w.view(0), no_bias, x, tokens, zeros), 0.0, tol));
      }
    }
  }
}

TEST_CASE("bf16 linear matches the reference on both paths", "[cuda][linear]") {
  test::skip_without_device();
  test::Rng rng(202);
  // K = 36 takes the scalar matrix-vector kernel (and no tensor cores)
  for (const auto& [n, k] : {std::pair{131, 256}, std::pair{45, 36}, std::pair{300, 2880}}) {
    const std::vector<bf16> w = random_bf16s(rng, static_cast<std::size_t>(n) * k, -0.5f, 0.5f);
    const std::vector<bf16> bias = random_bf16s(rng, static_cast<std::size_t>(n), -1.0f, 1.0f);
    const auto d_w = to_device(w);
    const auto d_bias = to_device(bias);
    const MatrixView<const bf16> wv(w.data(), {n, k});
    for (int tokens : {1, 4, 67}) {
      for (auto path : {cuda::LinearPath::vector, cuda::LinearPath::tensor_core}) {
        INFO("N " << n << ", K " << k << ", T " << tokens);
        const auto x = random_floats(rng, static_cast<std::size_t>(tokens) * k);
        const std::vector<float> zeros(static_cast<std::size_t>(tokens) * n, 0.0f);
        const auto d_x = to_device(x);
        auto d_y = poisoned<float>(static_cast<std::size_t>(tokens) * n);
        cuda::linear(cuda::DeviceBF16{d_w.data(), n, k}, d_bias.data(), d_x.data(), tokens, nullptr, d_y.data(), path);
        const bool tc = path == cuda::LinearPath::tensor_core && k % 32 == 0;
        GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_y), reference_linear(wv, bias, x, tokens, zeros), 0.0,
                                            tc ? kBf16Tol : kFp32Tol));
      }
    }
  }
}

TEST_CASE("Experts grouped by expert on the device match per-entry reference products", "[cuda][moe]") {
  test::skip_without_device();
  test::Rng rng(303);
  const int e_count = 5, k = 2, hidden = 64, rows_out = 96;
  const test::RandomMatrixStack<FP4TensorView<MXFP4Checkpoint>> w(rng, e_count, rows_out, hidden, 2.0f);
  const auto d_blocks = to_device(w.blocks());
  const auto d_scales = to_device(w.scales());
  const cuda::DeviceMXFP4 dw{d_blocks.data(), d_scales.data(), rows_out, hidden, e_count};
  const std::vector<bf16> bias = random_bf16s(rng, static_cast<std::size_t>(e_count) * rows_out, -1.0f, 1.0f);
  const auto d_bias = to_device(bias);
  for (int tokens : {1, 37, 150}) {
    INFO("T " << tokens);
    const int entries = tokens * k;
    std::vector<std::int32_t> experts(static_cast<std::size_t>(entries));
    for (int t = 0; t < tokens; ++t) {
      const int a = static_cast<int>(test::uniform_int(rng, 0, e_count - 1));
      experts[static_cast<std::size_t>(t * k)] = a;
      experts[static_cast<std::size_t>(t * k + 1)] = (a + 1 + static_cast<int>(test::uniform_int(rng, 0, e_count - 2))) % e_count;
    }
    const auto x = random_floats(rng, static_cast<std::size_t>(tokens) * hidden);
    // reference: entry i = expert experts[i] applied to token i / k
    std::vector<float> expected(static_cast<std::size_t>(entries) * rows_out);
    for (int i = 0; i < entries; ++i) {
      const int e = experts[static_cast<std::size_t>(i)];
      const std::vector<float> xi(x.begin() + (i / k) * hidden, x.begin() + (i / k + 1) * hidden);
      const std::vector<bf16> be(bias.begin() + e * rows_out, bias.begin() + (e + 1) * rows_out);
      const auto yi = reference_linear(w.view(e), be, xi, 1, std::vector<float>(rows_out, 0.0f));
      std::copy(yi.begin(), yi.end(), expected.begin() + static_cast<std::ptrdiff_t>(i) * rows_out);
    }
    const auto d_x = to_device(x);
    const auto d_experts = to_device(experts);

    auto d_y = poisoned<float>(expected.size());
    cuda::expert_linear_vector(dw, d_bias.data(), d_experts.data(), entries, d_x.data(), k, d_y.data());
    GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_y), expected, 0.0, kFp32Tol));

    const int tiles = cuda::expert_tile_bound(entries, e_count);
    auto sorted = poisoned<std::int32_t>(static_cast<std::size_t>(entries));
    auto position = poisoned<std::int32_t>(static_cast<std::size_t>(entries));
    auto tile_expert = poisoned<std::int32_t>(static_cast<std::size_t>(tiles));
    auto tile_begin = poisoned<std::int32_t>(static_cast<std::size_t>(tiles));
    auto tile_end = poisoned<std::int32_t>(static_cast<std::size_t>(tiles));
    const cuda::ExpertGrouping g{sorted.data(), position.data(), tile_expert.data(), tile_begin.data(),
                                 tile_end.data(), tiles};
    cuda::group_by_expert(d_experts.data(), entries, e_count, g);
    // the grouping: a permutation sorted by expert, tiles covering each expert's run
    const auto h_sorted = to_host(sorted), h_position = to_host(position);
    const auto h_te = to_host(tile_expert), h_tb = to_host(tile_begin), h_tend = to_host(tile_end);
    std::vector<int> covered(static_cast<std::size_t>(entries), 0);
    for (int i = 0; i < entries; ++i) {
      REQUIRE(h_position[static_cast<std::size_t>(i)] >= 0);
      REQUIRE(h_position[static_cast<std::size_t>(i)] < entries);
      REQUIRE(h_sorted[static_cast<std::size_t>(h_position[static_cast<std::size_t>(i)])] == i);
    }
    for (int i = 1; i < entries; ++i) {
      REQUIRE(experts[static_cast<std::size_t>(h_sorted[static_cast<std::size_t>(i - 1)])] <=
              experts[static_cast<std::size_t>(h_sorted[static_cast<std::size_t>(i)])]);
    }
    for (int t = 0; t < tiles; ++t) {
      if (h_te[static_cast<std::size_t>(t)] < 0) continue;
      REQUIRE(h_tend[static_cast<std::size_t>(t)] - h_tb[static_cast<std::size_t>(t)] <= cuda::kGemmTileRows);
      for (int r = h_tb[static_cast<std::size_t>(t)]; r < h_tend[static_cast<std::size_t>(t)]; ++r) {
        REQUIRE(experts[static_cast<std::size_t>(h_sorted[static_cast<std::size_t>(r)])] == h_te[static_cast<std::size_t>(t)]);
        ++covered[static_cast<std::size_t>(r)];
      }
    }
    REQUIRE(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));

    auto d_grouped = poisoned<float>(expected.size());
    cuda::expert_linear_grouped(dw, d_bias.data(), g, entries, d_x.data(), true, k, d_grouped.data());
    const auto grouped = to_host(d_grouped);
    std::vector<float> unsorted(expected.size());
    for (int i = 0; i < entries; ++i) {
      const auto src = grouped.begin() + static_cast<std::ptrdiff_t>(h_position[static_cast<std::size_t>(i)]) * rows_out;
      std::copy(src, src + rows_out, unsorted.begin() + static_cast<std::ptrdiff_t>(i) * rows_out);
    }
    GPTOSS_REQUIRE_CLOSE(compare_to_max(unsorted, expected, 0.0, kBf16Tol));

    // combine: out = x + sum_j w_j y[pos(t, j)] over the sorted rows (as width rows_out)
    const auto weights = random_floats(rng, static_cast<std::size_t>(entries));
    const auto base = random_floats(rng, static_cast<std::size_t>(tokens) * rows_out);
    std::vector<float> combined(base.size());
    for (int t = 0; t < tokens; ++t) {
      for (int c = 0; c < rows_out; ++c) {
        double acc = base[static_cast<std::size_t>(t * rows_out + c)];
        for (int j = 0; j < k; ++j) {
          acc += static_cast<double>(weights[static_cast<std::size_t>(t * k + j)]) * unsorted[static_cast<std::size_t>((t * k + j) * rows_out + c)];
        }
        combined[static_cast<std::size_t>(t * rows_out + c)] = static_cast<float>(acc);
      }
    }
    const auto d_weights = to_device(weights);
    auto d_out = to_device(base);  // in place
    cuda::moe_combine(d_out.data(), d_grouped.data(), position.data(), d_weights.data(), tokens, k, rows_out, d_out.data());
    GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_out), combined, 0.0, kFp32Tol));
  }
}

TEST_CASE("RMSNorm, SwiGLU and embedding match the reference", "[cuda][layers]") {
  test::skip_without_device();
  test::Rng rng(404);
  const int tokens = 7, dim = 2880;
  const auto x = random_floats(rng, static_cast<std::size_t>(tokens) * dim, 3.0f);
  const auto scale = random_bf16s(rng, static_cast<std::size_t>(dim), 0.5f, 1.5f);
  Tensor<float, 2> expected({tokens, dim});
  kernels::rms_norm(cpu_reference{}, MatrixView<const float>(x.data(), {tokens, dim}),
                    VectorView<const bf16>(scale.data(), {dim}), 1e-5f, expected.view());
  const auto d_x = to_device(x);
  const auto d_scale = to_device(scale);
  auto d_out = poisoned<float>(x.size());
  cuda::rms_norm(d_x.data(), tokens, dim, d_scale.data(), 1e-5f, d_out.data());
  GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_out), expected.storage(), 0.0, kFp32Tol));

  const int inter = 100;  // values beyond the limit 7 exercise both clamps
  const auto u = random_floats(rng, static_cast<std::size_t>(tokens) * 2 * inter, 10.0f);
  Tensor<float, 2> act({tokens, inter});
  kernels::swiglu(cpu_reference{}, MatrixView<const float>(u.data(), {tokens, 2 * inter}), kernels::kSwigluAlpha,
                  7.0f, act.view());
  const auto d_u = to_device(u);
  auto d_act = poisoned<float>(act.storage().size());
  cuda::swiglu(d_u.data(), tokens, inter, kernels::kSwigluAlpha, 7.0f, d_act.data());
  GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_act), act.storage(), 0.0, kFp32Tol));

  const int vocab = 50, hidden = 72;
  const auto table = random_bf16s(rng, static_cast<std::size_t>(vocab) * hidden, -2.0f, 2.0f);
  const std::vector<std::int32_t> ids = {3, 0, 49, 3, 17};
  std::vector<float> rows;
  for (auto id : ids)
    for (int i = 0; i < hidden; ++i) rows.push_back(table[static_cast<std::size_t>(id * hidden + i)].to_float());
  const auto d_table = to_device(table);
  const auto d_ids = to_device(ids);
  auto d_rows = poisoned<float>(rows.size());
  cuda::embed(d_ids.data(), static_cast<int>(ids.size()), d_table.data(), hidden, d_rows.data());
  REQUIRE(to_host(d_rows) == rows);  // exact widening
}

TEST_CASE("Router top-k with softmax matches the reference, ties included", "[cuda][moe]") {
  test::skip_without_device();
  test::Rng rng(505);
  for (const auto& [e_count, k] : {std::pair{32, 4}, std::pair{128, 4}, std::pair{5, 5}, std::pair{8, 1}}) {
    const int tokens = 33;
    std::vector<float> logits(static_cast<std::size_t>(tokens) * e_count);
    // a few distinct values, so ties are frequent
    for (float& v : logits) v = static_cast<float>(test::uniform_int(rng, -3, 3)) * 0.5f;
    Tensor<std::int32_t, 2> ref_idx({tokens, k});
    Tensor<float, 2> ref_w({tokens, k});
    kernels::route_top_k(cpu_reference{}, MatrixView<const float>(logits.data(), {tokens, e_count}),
                         ref_idx.view(), ref_w.view());
    const auto d_logits = to_device(logits);
    auto d_idx = poisoned<std::int32_t>(static_cast<std::size_t>(tokens) * k);
    auto d_w = poisoned<float>(static_cast<std::size_t>(tokens) * k);
    cuda::route_top_k(d_logits.data(), tokens, e_count, k, d_idx.data(), d_w.data());
    INFO("E " << e_count << ", k " << k);
    REQUIRE(to_host(d_idx) == ref_idx.storage());
    GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_w), ref_w.storage(), 0.0, kFp32Tol));
  }
}

TEST_CASE("YaRN rotation writes q and the KV cache as the reference rotates them", "[cuda][attention]") {
  test::skip_without_device();
  test::Rng rng(606);
  for (const bool truncate : {false, true}) {
    ModelDims dims;  // gpt-oss YaRN parameters
    dims.rope_truncate = truncate;
    const RopeParams params = dims.rope();
    const YaRNRope<cpu_reference> rope(params, 0);
    const int tokens = 6, nq = 8, nkv = 2, d = params.head_dim, first = 5000, capacity = first + tokens;
    const int width = d * (nq + 2 * nkv);
    const auto qkv = random_floats(rng, static_cast<std::size_t>(tokens) * width);
    Tensor<float, 3> q({tokens, nq, d}), k({tokens, nkv, d});
    std::vector<float> v;
    for (int t = 0; t < tokens; ++t) {
      const float* row = qkv.data() + static_cast<std::size_t>(t) * width;
      std::copy(row, row + nq * d, &q(t, 0, 0));
      std::copy(row + nq * d, row + (nq + nkv) * d, &k(t, 0, 0));
      v.insert(v.end(), row + (nq + nkv) * d, row + width);
    }
    rope.forward(q.view(), first);
    rope.forward(k.view(), first);
    const auto d_qkv = to_device(qkv);
    const std::vector<double> inv_freq = rope.inv_freq();
    const auto d_inv = to_device(inv_freq);
    const std::size_t row = static_cast<std::size_t>(nkv) * d;
    auto d_q = poisoned<float>(q.storage().size());
    auto d_k = poisoned<float>(static_cast<std::size_t>(capacity) * row);
    auto d_v = poisoned<float>(static_cast<std::size_t>(capacity) * row);
    cuda::rope_qkv(d_qkv.data(), tokens, nq, nkv, d, first, d_inv.data(), rope.concentration(), d_q.data(),
                   d_k.data(), d_v.data());
    INFO("truncate " << truncate);
    GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_q), q.storage(), 0.0, kFp32Tol));
    const auto h_k = to_host(d_k), h_v = to_host(d_v);
    // rows [first, first + T) hold the new keys and values; earlier rows are untouched
    const std::vector<float> k_rows(h_k.begin() + static_cast<std::ptrdiff_t>(first * row), h_k.end());
    const std::vector<float> v_rows(h_v.begin() + static_cast<std::ptrdiff_t>(first * row), h_v.end());
    GPTOSS_REQUIRE_CLOSE(compare_to_max(k_rows, k.storage(), 0.0, kFp32Tol));
    REQUIRE(v_rows == v);
    REQUIRE(std::isnan(h_k[0]));
  }
}

TEST_CASE("Sink attention over the device cache matches the reference", "[cuda][attention]") {
  test::skip_without_device();
  test::Rng rng(707);
  struct Case { int nq, nkv, d, first, tokens, window; };
  // prefill, prefill continuing a cache, decode deep in a cache (keys split into chunks);
  // windows on and off;
  // a head size that is not a multiple of 32; one query head per KV head; 16+ heads per group
  for (const Case c : {Case{8, 2, 64, 0, 40, 0}, Case{8, 2, 64, 0, 40, 8}, Case{8, 2, 64, 23, 9, 0},
                       Case{8, 2, 64, 23, 9, 16}, Case{64, 8, 64, 300, 1, 0}, Case{64, 8, 64, 300, 1, 128},
                       Case{6, 3, 48, 10, 5, 3}, Case{4, 4, 128, 70, 2, 0}, Case{40, 2, 32, 5, 3, 0}}) {
    INFO("nq " << c.nq << ", nkv " << c.nkv << ", D " << c.d << ", first " << c.first << ", T " << c.tokens
               << ", window " << c.window);
    const int s_count = c.first + c.tokens;
    const auto q = random_floats(rng, static_cast<std::size_t>(c.tokens) * c.nq * c.d, 2.0f);
    const auto k = random_floats(rng, static_cast<std::size_t>(s_count) * c.nkv * c.d, 2.0f);
    const auto v = random_floats(rng, static_cast<std::size_t>(s_count) * c.nkv * c.d, 2.0f);
    const auto sinks = random_bf16s(rng, static_cast<std::size_t>(c.nq), -2.0f, 2.0f);
    std::vector<float> sinks_f;
    for (bf16 b : sinks) sinks_f.push_back(b.to_float());
    std::vector<index_t> q_pos, k_pos;
    for (int t = 0; t < c.tokens; ++t) q_pos.push_back(c.first + t);
    for (int j = 0; j < s_count; ++j) k_pos.push_back(j);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    Tensor<float, 2> expected({c.tokens, c.nq * c.d});
    kernels::sink_attention(cpu_reference{}, TensorView<const float, 3>(q.data(), {c.tokens, c.nq, c.d}),
                            VectorView<const index_t>(q_pos.data(), {c.tokens}),
                            TensorView<const float, 3>(k.data(), {s_count, c.nkv, c.d}),
                            TensorView<const float, 3>(v.data(), {s_count, c.nkv, c.d}),
                            VectorView<const index_t>(k_pos.data(), {s_count}),
                            VectorView<const float>(sinks_f.data(), {c.nq}), scale, c.window, expected.view());
    const auto d_q = to_device(q), d_k = to_device(k), d_v = to_device(v);
    const auto d_sinks = to_device(sinks);
    auto d_out = poisoned<float>(expected.storage().size());
    cuda::sink_attention(d_q.data(), d_k.data(), d_v.data(), c.first, c.tokens, c.nq, c.nkv, c.d, d_sinks.data(),
                         scale, c.window, d_out.data());
    GPTOSS_REQUIRE_CLOSE(compare_to_max(to_host(d_out), expected.storage(), 0.0, kFp32Tol));
  }
}

TEST_CASE("CUDA launchers reject impossible shapes with ShapeError", "[cuda][errors]") {
  const cuda::DeviceMXFP4 bad{nullptr, nullptr, 4, 48, 1};
  REQUIRE_THROWS_AS(cuda::linear(bad, nullptr, nullptr, 1, nullptr, nullptr, cuda::LinearPath::vector), ShapeError);
  REQUIRE_THROWS_WITH(cuda::sink_attention(nullptr, nullptr, nullptr, 0, 1, 8, 3, 64, nullptr, 1.0f, 0, nullptr),
                      Catch::Contains("8/3 heads"));
  REQUIRE_THROWS_AS(cuda::route_top_k(nullptr, 1, 4, 5, nullptr, nullptr), ShapeError);
}
