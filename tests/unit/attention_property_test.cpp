// Sink attention (kernels::sink_attention and the SlidingSinkAttention layer)
// against an independent float64 recomputation of the whole block on random
// weights and inputs: RMSNorm, merged QKV with bias, YaRN on q and k, causal
// and windowed GQA softmax with a per-head sink, output projection and
// residual. Plus the properties: wide windows equal full attention, a -inf
// sink is plain softmax, a huge sink silences the head, causality, the GQA
// head mapping and position offsets.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "support/compare.hpp"
#include "support/matchers.hpp"
#include "support/random.hpp"

using namespace gptoss;
using gptoss::test::compare_elementwise;
using gptoss::test::compare_to_max;

namespace {

/// A (T, heads, D) tensor in float64.
struct Heads {
  index_t t_count = 0, heads = 0, d = 0;
  std::vector<double> data;

  Heads(index_t t, index_t n, index_t dim)
      : t_count(t), heads(n), d(dim), data(static_cast<std::size_t>(t * n * dim)) {}
  double& operator()(index_t t, index_t h, index_t i) {
    return data[static_cast<std::size_t>((t * heads + h) * d + i)];
  }
  double operator()(index_t t, index_t h, index_t i) const {
    return data[static_cast<std::size_t>((t * heads + h) * d + i)];
  }
};

Heads to_heads(const Tensor<float, 3>& x) {
  Heads h(x.extent(0), x.extent(1), x.extent(2));
  h.data = test::to_double(x);
  return h;
}

/// out (T, nq D) in float64: query t (at q_pos[t]) and head h attend to the
/// keys j with q_pos - window < k_pos[j] <= q_pos (window 0: no lower bound)
/// of KV head h / (nq / nkv). With sinks, sinks[h] joins the softmax
/// denominator and its probability is dropped; without, plain softmax.
std::vector<double> reference_attention(const Heads& q, const std::vector<index_t>& q_pos,
                                        const Heads& k, const Heads& v,
                                        const std::vector<index_t>& k_pos,
                                        const std::vector<double>* sinks, double scale,
                                        index_t window) {
  const index_t nq = q.heads, d = q.d, group = q.heads / k.heads;
  std::vector<double> out(static_cast<std::size_t>(q.t_count * nq * d));
  for (index_t t = 0; t < q.t_count; ++t) {
    const index_t p = q_pos[static_cast<std::size_t>(t)];
    for (index_t h = 0; h < nq; ++h) {
      const index_t kv = h / group;
      std::vector<double> scores;
      std::vector<index_t> keys;
      for (index_t j = 0; j < k.t_count; ++j) {
        const index_t pk = k_pos[static_cast<std::size_t>(j)];
        if (pk > p || (window > 0 && pk <= p - window)) continue;
        double dot = 0.0;
        for (index_t i = 0; i < d; ++i) dot += q(t, h, i) * k(j, kv, i);
        scores.push_back(dot * scale);
        keys.push_back(j);
      }
      double m = -INFINITY;
      for (double s : scores) m = std::max(m, s);
      if (sinks != nullptr) m = std::max(m, (*sinks)[static_cast<std::size_t>(h)]);
      double denom = sinks != nullptr ? std::exp((*sinks)[static_cast<std::size_t>(h)] - m) : 0.0;
      for (double& s : scores) {
        s = std::exp(s - m);
        denom += s;
      }
      for (std::size_t n = 0; n < keys.size(); ++n) {
        for (index_t i = 0; i < d; ++i) {
          out[static_cast<std::size_t>((t * nq + h) * d + i)] += scores[n] / denom * v(keys[n], kv, i);
        }
      }
    }
  }
  return out;
}

/// YaRN inverse frequencies and concentration from the formulas (unrounded bounds).
std::vector<double> reference_inv_freq(const RopeParams& p, double& concentration) {
  const double d = p.head_dim, two_pi = 2.0 * std::numbers::pi;
  const double low = d / 2.0 * std::log(p.initial_context / (p.ntk_beta * two_pi)) / std::log(p.theta);
  const double high = d / 2.0 * std::log(p.initial_context / (p.ntk_alpha * two_pi)) / std::log(p.theta);
  concentration = p.scaling_factor > 1.0 ? 0.1 * std::log(p.scaling_factor) + 1.0 : 1.0;
  std::vector<double> inv;
  for (int i = 0; i < p.head_dim / 2; ++i) {
    const double freq = std::pow(p.theta, 2.0 * i / d);
    if (p.scaling_factor > 1.0) {
      const double mask = 1.0 - std::clamp((i - low) / (high - low), 0.0, 1.0);
      inv.push_back(1.0 / (p.scaling_factor * freq) * (1.0 - mask) + 1.0 / freq * mask);
    } else {
      inv.push_back(1.0 / freq);
    }
  }
  return inv;
}

/// Half-split rotation of every head of x at positions, in place.
void reference_rope(Heads& x, const std::vector<index_t>& positions, const RopeParams& p) {
  double concentration = 1.0;
  const std::vector<double> inv = reference_inv_freq(p, concentration);
  const index_t half = x.d / 2;
  for (index_t t = 0; t < x.t_count; ++t) {
    for (index_t h = 0; h < x.heads; ++h) {
      for (index_t i = 0; i < half; ++i) {
        const double angle =
            static_cast<double>(positions[static_cast<std::size_t>(t)]) * inv[static_cast<std::size_t>(i)];
        const double c = std::cos(angle) * concentration, s = std::sin(angle) * concentration;
        const double x1 = x(t, h, i), x2 = x(t, h, i + half);
        x(t, h, i) = x1 * c - x2 * s;
        x(t, h, i + half) = x2 * c + x1 * s;
      }
    }
  }
}

/// The whole block in float64.
struct ReferenceBlock {
  Heads q, k, v;            // rotated q (T, nq, D), k (T, nkv, D); v (T, nkv, D)
  std::vector<double> out;  // (T, H)
};

ReferenceBlock reference_block(const test::RandomAttentionWeights& rw, const Tensor<float, 2>& x,
                               index_t first_position, index_t window) {
  const AttentionParams& p = rw.params;
  const index_t t_count = x.extent(0), hidden = p.hidden, d = p.head_dim;
  const index_t nq = p.num_heads, nkv = p.num_kv_heads;
  const auto norm_scale = test::to_double(rw.norm_scale);  // (H)
  const auto w_qkv = test::to_double(rw.qkv_weight);       // (D (nq + 2 nkv), H)
  const auto b_qkv = test::to_double(rw.qkv_bias);         // (D (nq + 2 nkv))
  const auto sinks = test::to_double(rw.sinks);            // (nq)
  const auto w_out = test::to_double(rw.out_weight);       // (H, D nq)
  const auto b_out = test::to_double(rw.out_bias);         // (H)

  ReferenceBlock r{Heads(t_count, nq, d), Heads(t_count, nkv, d), Heads(t_count, nkv, d), {}};
  std::vector<index_t> positions;
  for (index_t t = 0; t < t_count; ++t) {
    positions.push_back(first_position + t);
    double ms = 0.0;
    for (index_t i = 0; i < hidden; ++i) ms += static_cast<double>(x(t, i)) * x(t, i);
    const double inv_rms = 1.0 / std::sqrt(ms / static_cast<double>(hidden) + p.rms_eps);
    std::vector<double> normed(static_cast<std::size_t>(hidden));  // (H)
    for (index_t i = 0; i < hidden; ++i) {
      normed[static_cast<std::size_t>(i)] = x(t, i) * inv_rms * norm_scale[static_cast<std::size_t>(i)];
    }
    for (index_t o = 0; o < p.qkv_dim(); ++o) {
      double acc = b_qkv[static_cast<std::size_t>(o)];
      for (index_t i = 0; i < hidden; ++i) {
        acc += w_qkv[static_cast<std::size_t>(o * hidden + i)] * normed[static_cast<std::size_t>(i)];
      }
      if (o < nq * d) {
        r.q(t, o / d, o % d) = acc;
      } else if (o < (nq + nkv) * d) {
        r.k(t, (o - nq * d) / d, o % d) = acc;
      } else {
        r.v(t, (o - (nq + nkv) * d) / d, o % d) = acc;
      }
    }
  }
  reference_rope(r.q, positions, p.rope);
  reference_rope(r.k, positions, p.rope);
  const auto attn = reference_attention(r.q, positions, r.k, r.v, positions, &sinks,
                                        1.0 / std::sqrt(static_cast<double>(d)), window);  // (T, D nq)
  for (index_t t = 0; t < t_count; ++t) {
    for (index_t o = 0; o < hidden; ++o) {
      double acc = b_out[static_cast<std::size_t>(o)];
      for (index_t j = 0; j < nq * d; ++j) {
        acc += w_out[static_cast<std::size_t>(o * nq * d + j)] * attn[static_cast<std::size_t>(t * nq * d + j)];
      }
      r.out.push_back(x(t, o) + acc);
    }
  }
  return r;
}

struct AttnShape {
  index_t nq, nkv, d, hidden;
};

AttentionParams make_params(const AttnShape& s, index_t window) {
  AttentionParams p;
  p.hidden = s.hidden;
  p.head_dim = s.d;
  p.num_heads = s.nq;
  p.num_kv_heads = s.nkv;
  p.sliding_window = window;
  p.rope = RopeParams{static_cast<int>(s.d), 150000.0, 32.0, 4096.0, 1.0, 32.0};
  return p;
}

const AttnShape kShapes[] = {{4, 2, 16, 64}, {6, 3, 32, 96}, {8, 1, 16, 64}};

/// out - x, element-wise: the attention branch alone.
std::vector<double> minus(const std::vector<double>& a, const std::vector<float>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size(); ++i) r.push_back(a[i] - b[i]);
  return r;
}
std::vector<double> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size(); ++i) r.push_back(static_cast<double>(a[i]) - b[i]);
  return r;
}

/// Runs a layer of either span; out (T, H).
template <AttentionSpan Span>
Tensor<float, 2> run_layer(const AttentionParams& p, const test::RandomAttentionWeights& rw,
                           const Tensor<float, 2>& x, index_t first_position,
                           index_t table_positions = 4096) {
  const SlidingSinkAttention<Span> layer(p, table_positions);
  Tensor<float, 2> out(x.shape());
  layer.forward(rw.weights(), x.view(), out.view(), first_position);
  return out;
}

/// Random q (T, nq, D), k and v (S, nkv, D) for kernel tests.
struct KernelInputs {
  Tensor<float, 3> q, k, v;
  std::vector<index_t> q_pos, k_pos;
};

KernelInputs random_kernel_inputs(test::Rng& rng, index_t t_count, index_t s_count, index_t nq,
                                  index_t nkv, index_t d) {
  KernelInputs in{test::random_tensor<3>(rng, {t_count, nq, d}),
                  test::random_tensor<3>(rng, {s_count, nkv, d}),
                  test::random_tensor<3>(rng, {s_count, nkv, d}), {}, {}};
  for (index_t j = 0; j < s_count; ++j) in.k_pos.push_back(j);
  for (index_t t = 0; t < t_count; ++t) in.q_pos.push_back(s_count - t_count + t);  // the last T keys
  return in;
}

Tensor<float, 2> run_kernel(const KernelInputs& in, const std::vector<float>& sinks, float scale,
                            index_t window) {
  const index_t t_count = in.q.extent(0), nq = in.q.extent(1), d = in.q.extent(2);
  Tensor<float, 2> out({t_count, nq * d});
  kernels::sink_attention(cpu_reference{}, in.q.view(),
                          VectorView<const index_t>(in.q_pos.data(), {t_count}), in.k.view(),
                          in.v.view(),
                          VectorView<const index_t>(in.k_pos.data(), {in.k.extent(0)}),
                          VectorView<const float>(sinks.data(), {nq}), scale, window, out.view());
  return out;
}

}  // namespace

TEST_CASE("Attention property: the layer matches a float64 recomputation of the block",
          "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    for (const index_t first_position : {index_t{0}, index_t{37}}) {
      DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv << ", D " << s.d << ", H " << s.hidden
                            << ", first position " << first_position) {
        test::Rng rng(static_cast<std::uint32_t>(100 * s.nq + s.d + first_position));
        const index_t t_count = 11, window = 4;
        const AttentionParams p = make_params(s, window);
        const auto rw = test::random_attention_weights(rng, p);
        const Tensor<float, 2> x = test::random_matrix(rng, t_count, s.hidden);  // (T, H)

        const Tensor<float, 2> full = run_layer<AttentionSpan::full>(p, rw, x, first_position);
        const auto full_ref = reference_block(rw, x, first_position, 0).out;  // (T, H)
        GPTOSS_REQUIRE_CLOSE(compare_to_max(full.storage(), full_ref, 0.0, 1e-5));
        GPTOSS_REQUIRE_CLOSE(
            compare_to_max(minus(full.storage(), x.storage()), minus(full_ref, x.storage()), 1e-6, 1e-5));

        // A small rope table: positions past it are computed on the fly.
        const Tensor<float, 2> sliding =
            run_layer<AttentionSpan::sliding>(p, rw, x, first_position, 8);
        const auto sliding_ref = reference_block(rw, x, first_position, window).out;  // (T, H)
        GPTOSS_REQUIRE_CLOSE(compare_to_max(sliding.storage(), sliding_ref, 0.0, 1e-5));
        GPTOSS_REQUIRE_CLOSE(compare_to_max(minus(sliding.storage(), x.storage()),
                                            minus(sliding_ref, x.storage()), 1e-6, 1e-5));
        // The window matters for these inputs.
        CHECK_FALSE(compare_to_max(sliding.storage(), full_ref, 0.0, 1e-3).ok());
      }
    }
  }
}

TEST_CASE("Attention property: project() rotates q and k at first_position onwards",
          "[property][attention]") {
  for (const index_t first_position : {index_t{0}, index_t{3}, index_t{5000}}) {
    DYNAMIC_SECTION("first position " << first_position) {
      test::Rng rng(31);
      const AttnShape s{4, 2, 16, 64};
      const index_t t_count = 6;
      const AttentionParams p = make_params(s, 4);
      const auto rw = test::random_attention_weights(rng, p);
      const Tensor<float, 2> x = test::random_matrix(rng, t_count, s.hidden);  // (T, H)
      const SlidingSinkAttention<AttentionSpan::full> layer(p, 16);
      Tensor<float, 3> q({t_count, s.nq, s.d});                             // (T, nq, D)
      Tensor<float, 3> k({t_count, s.nkv, s.d}), v({t_count, s.nkv, s.d});  // (T, nkv, D)
      layer.project(rw.weights(), x.view(), first_position, q.view(), k.view(), v.view());
      const ReferenceBlock ref = reference_block(rw, x, first_position, 0);
      GPTOSS_REQUIRE_CLOSE(compare_to_max(q.storage(), ref.q.data, 0.0, 1e-5));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(k.storage(), ref.k.data, 0.0, 1e-5));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(v.storage(), ref.v.data, 0.0, 1e-5));
      if (first_position != 0) {
        // The offset is visible: rotation at 0.. gives other q and k.
        const ReferenceBlock at_zero = reference_block(rw, x, 0, 0);
        CHECK_FALSE(compare_to_max(q.storage(), at_zero.q.data, 0.0, 1e-3).ok());
        CHECK_FALSE(compare_to_max(k.storage(), at_zero.k.data, 0.0, 1e-3).ok());
      }
    }
  }
}

TEMPLATE_TEST_CASE("Attention property: q, k and v rows stored apart project as the merged matrix does",
                   "[property][attention]", cpu_reference, cpu_fast) {
  // Merged rows (one qkv matrix, as the original checkpoint stores it) take
  // one product; rows stored apart (as Hugging Face checkpoints do) take
  // three. Both must match the float64 block, for one token and for many.
  test::Rng rng(47);
  const AttnShape s{8, 2, 16, 96};
  const AttentionParams p = make_params(s, 4);
  const auto rw = test::random_attention_weights(rng, p);
  const index_t nq = p.q_dim(), nkv = p.kv_dim();
  const auto rows = [&](index_t first, index_t count) {  // a separate copy of qkv rows
    Tensor<bf16, 2> t({count, s.hidden});
    std::copy_n(&rw.qkv_weight(first, 0), count * s.hidden, t.data());
    return t;
  };
  const auto entries = [&](index_t first, index_t count) {
    Tensor<bf16, 1> t({count});
    std::copy_n(rw.qkv_bias.data() + first, count, t.data());
    return t;
  };
  const Tensor<bf16, 2> qw = rows(0, nq), kw = rows(nq, nkv), vw = rows(nq + nkv, nkv);
  const Tensor<bf16, 1> qb = entries(0, nq), kb = entries(nq, nkv), vb = entries(nq + nkv, nkv);
  AttentionWeights apart_rows = rw.weights();
  apart_rows.q_weight = qw.view(), apart_rows.k_weight = kw.view(), apart_rows.v_weight = vw.view();
  apart_rows.q_bias = qb.view(), apart_rows.k_bias = kb.view(), apart_rows.v_bias = vb.view();
  const AttentionWeights& apart = apart_rows;
  REQUIRE(apart.k_weight.data() != apart.q_weight.data() + apart.q_weight.size());

  const SlidingSinkAttention<AttentionSpan::full, TestType> layer(p, 64);
  for (const index_t t_count : {index_t{1}, index_t{20}}) {
    INFO(t_count << " tokens");
    const Tensor<float, 2> x = test::random_matrix(rng, t_count, s.hidden);  // (T, H)
    const ReferenceBlock ref = reference_block(rw, x, 7, 0);
    const AttentionWeights merged = rw.weights();
    for (const AttentionWeights* w : std::array{&apart, &merged}) {
      Tensor<float, 3> q({t_count, s.nq, s.d});                             // (T, nq, D)
      Tensor<float, 3> k({t_count, s.nkv, s.d}), v({t_count, s.nkv, s.d});  // (T, nkv, D)
      layer.project(*w, x.view(), 7, q.view(), k.view(), v.view());
      GPTOSS_REQUIRE_CLOSE(compare_to_max(q.storage(), ref.q.data, 0.0, 1e-5));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(k.storage(), ref.k.data, 0.0, 1e-5));
      GPTOSS_REQUIRE_CLOSE(compare_to_max(v.storage(), ref.v.data, 0.0, 1e-5));
    }
  }
}

TEST_CASE("Attention property: the kernel matches the float64 recomputation with separate "
          "query and key positions",
          "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    for (const index_t window : {index_t{0}, index_t{1}, index_t{5}}) {
      DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv << ", D " << s.d << ", window " << window) {
        test::Rng rng(static_cast<std::uint32_t>(7 * s.nq + window));
        // 4 queries at positions 16..19 over 20 keys (a cached decode step).
        KernelInputs in = random_kernel_inputs(rng, 4, 20, s.nq, s.nkv, s.d);
        std::vector<float> sinks;
        for (index_t h = 0; h < s.nq; ++h) sinks.push_back(test::uniform(rng, -1.0f, 3.0f));
        const float scale = 1.0f / std::sqrt(static_cast<float>(s.d));
        const Tensor<float, 2> out = run_kernel(in, sinks, scale, window);  // (T, nq D)
        const std::vector<double> sinks_d(sinks.begin(), sinks.end());
        const auto expected = reference_attention(to_heads(in.q), in.q_pos, to_heads(in.k),
                                                  to_heads(in.v), in.k_pos, &sinks_d, scale, window);
        GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), expected, 1e-6, 1e-5));
      }
    }
  }
}

TEST_CASE("Attention property: a window covering the sequence equals full attention",
          "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv << ", D " << s.d) {
      test::Rng rng(static_cast<std::uint32_t>(13 * s.nq));
      const index_t t_count = 9;
      const auto rw = test::random_attention_weights(rng, make_params(s, 4));
      const Tensor<float, 2> x = test::random_matrix(rng, t_count, s.hidden);  // (T, H)
      const Tensor<float, 2> full = run_layer<AttentionSpan::full>(make_params(s, 4), rw, x, 2);
      for (const index_t window : {t_count, t_count + 1, 1000 * t_count}) {
        const Tensor<float, 2> sliding =
            run_layer<AttentionSpan::sliding>(make_params(s, window), rw, x, 2);
        CHECK(sliding.storage() == full.storage());
      }
      // A window shorter than the sequence does change the output.
      const Tensor<float, 2> narrow = run_layer<AttentionSpan::sliding>(make_params(s, 2), rw, x, 2);
      CHECK_FALSE(compare_to_max(narrow.storage(), full.storage(), 0.0, 1e-3).ok());

      // The kernel alone: window >= S equals window 0.
      KernelInputs in = random_kernel_inputs(rng, 7, 7, s.nq, s.nkv, s.d);
      const std::vector<float> sinks(static_cast<std::size_t>(s.nq), 0.5f);
      CHECK(run_kernel(in, sinks, 0.3f, 7).storage() == run_kernel(in, sinks, 0.3f, 0).storage());
    }
  }
}

TEST_CASE("Attention property: a -inf sink gives plain softmax attention", "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    for (const float sink : {-INFINITY, -1e30f}) {
      DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv << ", sink " << sink) {
        test::Rng rng(static_cast<std::uint32_t>(17 * s.nq));
        KernelInputs in = random_kernel_inputs(rng, 10, 10, s.nq, s.nkv, s.d);
        const float scale = 1.0f / std::sqrt(static_cast<float>(s.d));
        for (const index_t window : {index_t{0}, index_t{3}}) {
          const Tensor<float, 2> out =
              run_kernel(in, std::vector<float>(static_cast<std::size_t>(s.nq), sink), scale, window);
          const auto plain = reference_attention(to_heads(in.q), in.q_pos, to_heads(in.k),
                                                 to_heads(in.v), in.k_pos, nullptr, scale, window);
          GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), plain, 1e-6, 1e-5));
          // A finite sink is not plain softmax.
          const Tensor<float, 2> with_sink =
              run_kernel(in, std::vector<float>(static_cast<std::size_t>(s.nq), 0.0f), scale, window);
          CHECK_FALSE(compare_to_max(with_sink.storage(), plain, 0.0, 1e-3).ok());
        }
      }
    }
  }
}

TEST_CASE("Attention property: a huge sink drives the output to zero", "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv) {
      test::Rng rng(static_cast<std::uint32_t>(19 * s.nq));
      KernelInputs in = random_kernel_inputs(rng, 8, 8, s.nq, s.nkv, s.d);
      const float scale = 1.0f / std::sqrt(static_cast<float>(s.d));
      // |scores| <= D scale = sqrt(D) <= 6 for entries in [-1, 1].
      const Tensor<float, 2> out =
          run_kernel(in, std::vector<float>(static_cast<std::size_t>(s.nq), 30.0f), scale, 0);
      CHECK(test::max_abs(out.storage()) < 1e-8);
      // ... and still exactly the sink-weighted result, relative to its size.
      const std::vector<double> sinks(static_cast<std::size_t>(s.nq), 30.0);
      const auto expected = reference_attention(to_heads(in.q), in.q_pos, to_heads(in.k),
                                                to_heads(in.v), in.k_pos, &sinks, scale, 0);
      GPTOSS_REQUIRE_CLOSE(compare_elementwise(out.storage(), expected, 1e-30, 1e-5));
    }
  }
}

TEST_CASE("Attention property: later keys never change earlier outputs", "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv << ", D " << s.d) {
      test::Rng rng(static_cast<std::uint32_t>(23 * s.nq));
      const index_t t_count = 8;
      // The kernel: replace keys and values j > q0 with fresh random ones.
      KernelInputs in = random_kernel_inputs(rng, t_count, t_count, s.nq, s.nkv, s.d);
      const std::vector<float> sinks(static_cast<std::size_t>(s.nq), 0.25f);
      const Tensor<float, 2> base = run_kernel(in, sinks, 0.3f, 0);  // (T, nq D)
      const index_t row = s.nq * s.d;
      for (const index_t q0 : {index_t{0}, index_t{3}, index_t{6}}) {
        KernelInputs changed = in;
        for (index_t j = q0 + 1; j < t_count; ++j) {
          for (index_t g = 0; g < s.nkv; ++g) {
            for (index_t i = 0; i < s.d; ++i) {
              changed.k(j, g, i) = test::uniform(rng, -1.0f, 1.0f);
              changed.v(j, g, i) = test::uniform(rng, -1.0f, 1.0f);
            }
          }
        }
        const Tensor<float, 2> out = run_kernel(changed, sinks, 0.3f, 0);
        const std::vector<float> before(base.storage().begin(), base.storage().begin() + (q0 + 1) * row);
        const std::vector<float> after(out.storage().begin(), out.storage().begin() + (q0 + 1) * row);
        CHECK(before == after);
        CHECK(out.storage() != base.storage());
      }

      // The layer: changing token j changes rows j.. only (full span), and
      // with window W only rows j .. j + W - 1 (sliding span).
      const index_t window = 3;
      const AttentionParams p = make_params(s, window);
      const auto rw = test::random_attention_weights(rng, p);
      const Tensor<float, 2> x = test::random_matrix(rng, t_count, s.hidden);  // (T, H)
      const Tensor<float, 2> y_full = run_layer<AttentionSpan::full>(p, rw, x, 0);
      const Tensor<float, 2> y_sliding = run_layer<AttentionSpan::sliding>(p, rw, x, 0);
      for (const index_t j : {index_t{1}, index_t{4}}) {
        Tensor<float, 2> x2 = x;
        for (index_t i = 0; i < s.hidden; ++i) x2(j, i) = test::uniform(rng, -1.0f, 1.0f);
        const Tensor<float, 2> y2_full = run_layer<AttentionSpan::full>(p, rw, x2, 0);
        const Tensor<float, 2> y2_sliding = run_layer<AttentionSpan::sliding>(p, rw, x2, 0);
        for (index_t t = 0; t < t_count; ++t) {
          bool same_full = true, same_sliding = true;
          for (index_t i = 0; i < s.hidden; ++i) {
            same_full = same_full && y_full(t, i) == y2_full(t, i);
            same_sliding = same_sliding && y_sliding(t, i) == y2_sliding(t, i);
          }
          INFO("changed token " << j << ", output row " << t);
          CHECK(same_full == (t < j));
          CHECK(same_sliding == (t < j || t >= j + window));
        }
      }
    }
  }
}

TEST_CASE("Attention property: query head h reads KV head h / (nq / nkv)", "[property][attention]") {
  for (const AttnShape& s : kShapes) {
    if (s.nkv == 1) continue;
    DYNAMIC_SECTION("nq " << s.nq << ", nkv " << s.nkv) {
      test::Rng rng(static_cast<std::uint32_t>(29 * s.nq));
      const index_t group = s.nq / s.nkv;
      for (index_t kv = 0; kv < s.nkv; ++kv) {
        // Only KV head kv has non-zero values: exactly its query heads see them.
        KernelInputs in = random_kernel_inputs(rng, 5, 5, s.nq, s.nkv, s.d);
        for (index_t j = 0; j < 5; ++j) {
          for (index_t g = 0; g < s.nkv; ++g) {
            for (index_t i = 0; i < s.d; ++i) {
              if (g != kv) in.v(j, g, i) = 0.0f;
            }
          }
        }
        const Tensor<float, 2> out =
            run_kernel(in, std::vector<float>(static_cast<std::size_t>(s.nq), 0.0f), 0.25f, 0);
        for (index_t h = 0; h < s.nq; ++h) {
          double m = 0.0;
          for (index_t t = 0; t < 5; ++t) {
            for (index_t i = 0; i < s.d; ++i) m = std::max(m, std::fabs(static_cast<double>(out(t, h * s.d + i))));
          }
          INFO("KV head " << kv << ", query head " << h);
          CHECK((m > 0.0) == (h / group == kv));
        }
      }
    }
  }
}

TEST_CASE("Attention property: bad shapes and configurations are rejected", "[property][attention]") {
  test::Rng rng(37);
  const AttnShape s{4, 2, 16, 64};
  const AttentionParams p = make_params(s, 4);
  auto rw = test::random_attention_weights(rng, p);
  const Tensor<float, 2> x = test::random_matrix(rng, 3, s.hidden);  // (T, H)
  Tensor<float, 2> out({3, s.hidden});
  const SlidingSinkAttention<AttentionSpan::sliding> layer(p, 8);
  CHECK_NOTHROW(layer.forward(rw.weights(), x.view(), out.view(), 0));

  AttentionWeights w = rw.weights();
  w.v_weight = MatrixView<const bf16>(w.v_weight.data(), {p.kv_dim() - s.d, s.hidden});
  CHECK_THROWS_AS(layer.forward(w, x.view(), out.view(), 0), ShapeError);
  CHECK_THROWS_WITH(layer.forward(w, x.view(), out.view(), 0), Catch::Contains("qkv.weight"));
  // Binding a merged projection of the wrong size names it too.
  CHECK_THROWS_WITH(layer.set_merged_qkv(w, MatrixView<const bf16>(rw.qkv_weight.data(), {p.qkv_dim() - 1, s.hidden}),
                                         rw.qkv_bias.view()),
                    Catch::Contains("qkv.weight"));
  w = rw.weights();
  w.sinks = VectorView<const bf16>(rw.sinks.data(), {s.nq - 1});
  CHECK_THROWS_WITH(layer.forward(w, x.view(), out.view(), 0), Catch::Contains("sinks"));
  Tensor<float, 2> short_out({2, s.hidden});
  CHECK_THROWS_AS(layer.forward(rw.weights(), x.view(), short_out.view(), 0), ShapeError);

  AttentionParams bad = p;
  bad.num_kv_heads = 3;  // 4 query heads are not a multiple of 3
  CHECK_THROWS_AS(SlidingSinkAttention<AttentionSpan::full>(bad, 8), ConfigError);
  bad = p;
  bad.sliding_window = 0;
  CHECK_THROWS_AS(SlidingSinkAttention<AttentionSpan::sliding>(bad, 8), ConfigError);
  CHECK_NOTHROW(SlidingSinkAttention<AttentionSpan::full>(bad, 8));

  // The parts called on their own check their buffers too.
  {
    Tensor<float, 3> q({3, s.nq, s.d}), k({3, s.nkv, s.d}), v({3, s.nkv, s.d}), short_q({3, 1, s.d});
    CHECK_NOTHROW(layer.project(rw.weights(), x.view(), 0, q.view(), k.view(), v.view()));
    CHECK_THROWS_MATCHES(layer.project(rw.weights(), x.view(), 0, short_q.view(), k.view(), v.view()), ShapeError,
                         test::MessageHas({"project", "(3, 1, 16)"}));
    CHECK_THROWS_AS(layer.project(rw.weights(), x.view(), 0, q.view(), v.view().slice(0, 2), v.view()), ShapeError);
    std::vector<index_t> pos{0, 1, 2};
    const VectorView<const index_t> positions(pos.data(), {3});
    CHECK_NOTHROW(layer.attend_and_project(rw.weights(), x.view(), q.view(), positions, k.view(), v.view(), positions,
                                           out.view()));
    Tensor<float, 2> narrow_x({3, 8}), narrow_out({3, 8});
    CHECK_THROWS_AS(layer.attend_and_project(rw.weights(), narrow_x.view(), q.view(), positions, k.view(), v.view(),
                                             positions, narrow_out.view()),
                    ShapeError);
    CHECK_THROWS_MATCHES(layer.attend_and_project(rw.weights(), x.view(), short_q.view(), positions, k.view(),
                                                  v.view(), positions, out.view()),
                         ShapeError, test::MessageHas({"attend_and_project", "(3, 1, 16)"}));
  }
  // A cache holds one sequence, in order: positions that do not continue it are refused.
  {
    const SlidingSinkAttention<AttentionSpan::full> full(p, 8);
    LayerKVCache cache(s.nkv, s.d, 0, 4);
    CHECK_NOTHROW(full.forward(rw.weights(), x.view(), out.view(), cache, 0));
    CHECK_THROWS_MATCHES(full.forward(rw.weights(), x.view(), out.view(), cache, 0), RangeError,
                         test::MessageHas({"first_position 0", "continues at position 3"}));
    CHECK(cache.size() == 3);
    CHECK_THROWS_MATCHES(full.forward(rw.weights(), x.view(), out.view(), cache, 3), RangeError,
                         test::MessageHas({"context overflow"}));
  }

  // The kernel: 4 query heads over 3 KV heads.
  KernelInputs in = random_kernel_inputs(rng, 3, 3, 4, 3, 16);
  CHECK_THROWS_AS(run_kernel(in, std::vector<float>(4, 0.0f), 0.25f, 0), ShapeError);
}
