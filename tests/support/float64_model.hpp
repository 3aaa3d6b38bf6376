// An independent float64 model for whole-model tests: written from the
// formulas (gpt-oss reference), reading a model's weight views but none of
// the library's kernels. Per layer: attention with learned sink logits, GQA,
// an optional window and optional StreamingLLM sink tokens; then an MoE or a
// dense clipped-SwiGLU MLP.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <numeric>
#include <utility>
#include <vector>

#include "gptoss/gptoss.hpp"

namespace gptoss::test::f64 {

using Mat = std::vector<std::vector<double>>;   // row-major (rows, cols)
using Rows = std::vector<std::vector<double>>;  // one row per token

inline double bf(bf16 v) { return v.to_float(); }
inline double bf(float v) { return v; }

template <class T>
Mat to_double(const MatrixView<const T>& w) {
  Mat m(static_cast<std::size_t>(w.extent(0)), std::vector<double>(static_cast<std::size_t>(w.extent(1))));
  for (index_t r = 0; r < w.extent(0); ++r)
    for (index_t c = 0; c < w.extent(1); ++c) m[r][c] = bf(w(r, c));
  return m;
}

/// MXFP4 decode from the raw bytes, written from the format's definition.
inline Mat to_double(const FP4TensorView<MXFP4Checkpoint>& w) {
  static const double lut[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};
  Mat m(static_cast<std::size_t>(w.rows()), std::vector<double>(static_cast<std::size_t>(w.cols())));
  const index_t groups = w.cols() / 32;
  for (index_t r = 0; r < w.rows(); ++r) {
    for (index_t g = 0; g < groups; ++g) {
      const std::uint8_t* block = w.blocks() + (r * groups + g) * 16;
      const double scale = std::ldexp(1.0, static_cast<int>(w.scales()[r * groups + g]) - 127);
      for (int j = 0; j < 16; ++j) {
        m[r][g * 32 + 2 * j] = lut[block[j] & 15] * scale;
        m[r][g * 32 + 2 * j + 1] = lut[block[j] >> 4] * scale;
      }
    }
  }
  return m;
}

inline std::vector<double> vec(const VectorView<const bf16>& v) {
  std::vector<double> out;
  for (index_t i = 0; i < v.extent(0); ++i) out.push_back(bf(v[i]));
  return out;
}

inline std::vector<double> matvec(const Mat& w, const std::vector<double>& x, const std::vector<double>* b) {
  std::vector<double> y(w.size());
  for (std::size_t r = 0; r < w.size(); ++r) {
    double acc = b ? (*b)[r] : 0.0;
    for (std::size_t c = 0; c < x.size(); ++c) acc += w[r][c] * x[c];
    y[r] = acc;
  }
  return y;
}

inline std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& scale, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * scale[i];
  return y;
}

/// YaRN inverse frequencies and concentration (gpt-oss reference formulas).
inline std::pair<std::vector<double>, double> yarn(const ModelDims& d) {
  const int half = d.head_dim / 2;
  std::vector<double> inv(half);
  double conc = 1.0;
  const double lo = half * std::log(d.initial_context / (d.rope_ntk_beta * 2 * std::numbers::pi)) / std::log(d.rope_theta);
  const double hi = half * std::log(d.initial_context / (d.rope_ntk_alpha * 2 * std::numbers::pi)) / std::log(d.rope_theta);
  for (int i = 0; i < half; ++i) {
    const double freq = std::pow(d.rope_theta, 2.0 * i / d.head_dim);
    if (d.rope_scaling_factor > 1) {
      const double mask = 1 - std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
      inv[i] = 1 / (d.rope_scaling_factor * freq) * (1 - mask) + 1 / freq * mask;
      conc = 0.1 * std::log(d.rope_scaling_factor) + 1;
    } else {
      inv[i] = 1 / freq;
    }
  }
  return {inv, conc};
}

inline void rotate(double* x, int dim, double pos, const std::vector<double>& inv, double conc) {
  const int half = dim / 2;
  for (int i = 0; i < half; ++i) {
    const double c = std::cos(pos * inv[i]) * conc, s = std::sin(pos * inv[i]) * conc;
    const double x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c - x2 * s;
    x[i + half] = x2 * c + x1 * s;
  }
}

/// Clipped SwiGLU of interleaved (gate, linear) pairs: (2I) -> (I).
inline std::vector<double> swiglu(const std::vector<double>& u, double limit) {
  std::vector<double> act(u.size() / 2);
  for (std::size_t i = 0; i < act.size(); ++i) {
    const double glu = std::min(u[2 * i], limit);
    const double lin = std::clamp(u[2 * i + 1], -limit, limit);
    act[i] = glu / (1 + std::exp(-1.702 * glu)) * (lin + 1);
  }
  return act;
}

/// How one layer's attention sees the sequence.
struct AttentionSpec {
  index_t window = 0;        // 0: full attention
  index_t sink_tokens = 0;   // StreamingLLM: positions < sink_tokens stay visible
  bool learned_logit = true; // gpt-oss's per-head sink logit
};

/// x (rows at positions 0..T-1) + attention(RMSNorm(x)).
inline Rows attention(const ModelDims& d, const AttentionWeights& aw, const AttentionSpec& spec, const Rows& x) {
  const std::size_t T = x.size(), H = d.hidden, D = d.head_dim;
  const std::size_t nq = d.num_heads, nkv = d.num_kv_heads, group = nq / nkv;
  const auto [inv, conc] = yarn(d);
  Mat wqkv = to_double(aw.q_weight);
  for (const auto* part : {&aw.k_weight, &aw.v_weight}) {
    const Mat m = to_double(*part);
    wqkv.insert(wqkv.end(), m.begin(), m.end());
  }
  std::vector<double> bqkv = vec(aw.q_bias);
  for (const auto* part : {&aw.k_bias, &aw.v_bias}) {
    const auto b = vec(*part);
    bqkv.insert(bqkv.end(), b.begin(), b.end());
  }
  const Mat wout = to_double(aw.out_weight);
  const auto bout = vec(aw.out_bias), nscale = vec(aw.norm.scale);
  const std::vector<double> sinks = spec.learned_logit ? vec(aw.sinks) : std::vector<double>(nq, -INFINITY);
  Rows q(T), k(T), v(T);
  for (std::size_t t = 0; t < T; ++t) {
    const auto qkv = matvec(wqkv, rmsnorm(x[t], nscale, d.rms_eps), &bqkv);
    q[t].assign(qkv.begin(), qkv.begin() + nq * D);
    k[t].assign(qkv.begin() + nq * D, qkv.begin() + (nq + nkv) * D);
    v[t].assign(qkv.begin() + (nq + nkv) * D, qkv.end());
    for (std::size_t h = 0; h < nq; ++h) rotate(&q[t][h * D], d.head_dim, t, inv, conc);
    for (std::size_t h = 0; h < nkv; ++h) rotate(&k[t][h * D], d.head_dim, t, inv, conc);
  }
  Rows next(T);
  for (std::size_t t = 0; t < T; ++t) {
    std::vector<double> attn(nq * D, 0.0);
    for (std::size_t h = 0; h < nq; ++h) {
      const std::size_t kv = h / group;
      std::vector<double> s;
      std::vector<std::size_t> js;
      for (std::size_t j = 0; j <= t; ++j) {
        const bool in_window = spec.window == 0 || static_cast<index_t>(t - j) < spec.window;
        const bool sink_token = static_cast<index_t>(j) < spec.sink_tokens;
        if (!in_window && !sink_token) continue;
        double dot = 0;
        for (std::size_t i = 0; i < D; ++i) dot += q[t][h * D + i] * k[j][kv * D + i];
        s.push_back(dot / std::sqrt(static_cast<double>(D)));
        js.push_back(j);
      }
      double m = sinks[h];
      for (double e : s) m = std::max(m, e);
      double denom = std::exp(sinks[h] - m);
      for (double& e : s) denom += (e = std::exp(e - m));
      for (std::size_t n = 0; n < js.size(); ++n)
        for (std::size_t i = 0; i < D; ++i) attn[h * D + i] += s[n] / denom * v[js[n]][kv * D + i];
    }
    const auto o = matvec(wout, attn, &bout);
    for (std::size_t i = 0; i < H; ++i) next[t].push_back(x[t][i] + o[i]);
  }
  return next;
}

/// x += MoE(RMSNorm(x)): top-k by router logit (ties to the lower index).
template <class M>
void add_mlp(const ModelDims& d, const MoEWeights<M>& mw, Rows& x) {
  const Mat gate = to_double(mw.gate_weight);
  const auto gbias = vec(mw.gate_bias), mscale = vec(mw.norm.scale);
  for (auto& row : x) {
    const auto tn = rmsnorm(row, mscale, d.rms_eps);
    const auto logits = matvec(gate, tn, &gbias);
    std::vector<int> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    double denom = 0;
    for (int j = 0; j < d.experts_per_token; ++j) denom += std::exp(logits[order[j]] - logits[order[0]]);
    std::vector<double> out(row.size(), 0.0);
    for (int j = 0; j < d.experts_per_token; ++j) {
      const int e = order[j];
      const double g = std::exp(logits[e] - logits[order[0]]) / denom;
      std::vector<double> b1, b2;
      for (index_t i = 0; i < mw.mlp1_bias.extent(1); ++i) b1.push_back(bf(mw.mlp1_bias(e, i)));
      for (index_t i = 0; i < mw.mlp2_bias.extent(1); ++i) b2.push_back(bf(mw.mlp2_bias(e, i)));
      const auto act = swiglu(matvec(to_double(mw.mlp1_weight[e]), tn, &b1), d.swiglu_limit);
      const auto y = matvec(to_double(mw.mlp2_weight[e]), act, &b2);
      for (std::size_t i = 0; i < out.size(); ++i) out[i] += g * y[i];
    }
    for (std::size_t i = 0; i < out.size(); ++i) row[i] += out[i];
  }
}

/// x += W2 SwiGLU(W1 RMSNorm(x) + b1) + b2: the dense MLP.
template <class M>
void add_mlp(const ModelDims& d, const DenseFFNWeights<M>& w, Rows& x) {
  const Mat w1 = to_double(w.mlp1_weight), w2 = to_double(w.mlp2_weight);
  const auto b1 = vec(w.mlp1_bias), b2 = vec(w.mlp2_bias), scale = vec(w.norm.scale);
  for (auto& row : x) {
    const auto y = matvec(w2, swiglu(matvec(w1, rmsnorm(row, scale, d.rms_eps), &b1), d.swiglu_limit), &b2);
    for (std::size_t i = 0; i < row.size(); ++i) row[i] += y[i];
  }
}

/// Weights of one layer as the float64 model reads them.
template <class MlpWeights>
struct LayerRef {
  const AttentionWeights* attn;
  const MlpWeights* mlp;
  AttentionSpec spec;
};

/// The layers of a model with the gpt-oss pattern (even layers slide).
template <class Model>
auto gptoss_layers(const Model& model) {
  using BlockWeights = typename std::tuple_element_t<0, std::remove_cvref_t<decltype(model.weights().blocks)>>::value_type;
  std::vector<LayerRef<decltype(BlockWeights::mlp)>> layers;
  const auto& b = model.weights().blocks;
  for (int l = 0; l < model.dims().num_layers; ++l) {
    const auto& aw = l % 2 == 0 ? std::get<0>(b)[l / 2].attn : std::get<1>(b)[l / 2].attn;
    const auto& mw = l % 2 == 0 ? std::get<0>(b)[l / 2].mlp : std::get<1>(b)[l / 2].mlp;
    layers.push_back({&aw, &mw, {l % 2 == 0 ? model.dims().sliding_window : 0}});
  }
  return layers;
}

/// Logits (T, V) of the whole sequence in float64, reading the model's weights.
template <class Model, class MlpWeights>
std::vector<double> reference_logits(const Model& model, const std::vector<LayerRef<MlpWeights>>& layers,
                                     const std::vector<std::int32_t>& tokens) {
  const ModelDims& d = model.dims();
  const auto& w = model.weights();
  Rows x(tokens.size());
  for (std::size_t t = 0; t < tokens.size(); ++t)
    for (index_t i = 0; i < d.hidden; ++i) x[t].push_back(bf(w.embedding.table(tokens[t], i)));
  for (const auto& layer : layers) {
    x = attention(d, *layer.attn, layer.spec, x);
    add_mlp(d, *layer.mlp, x);
  }
  const auto fscale = vec(w.norm.scale);
  const Mat unemb = to_double(w.unembedding.weight);
  std::vector<double> logits;
  for (const auto& row : x) {
    const auto y = matvec(unemb, rmsnorm(row, fscale, d.rms_eps), nullptr);
    logits.insert(logits.end(), y.begin(), y.end());
  }
  return logits;
}

}  // namespace gptoss::test::f64
