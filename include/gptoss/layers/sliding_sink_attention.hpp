// SlidingSinkAttention: the gpt-oss attention block.
//
//   t = RMSNorm(x)                                   (T, H)
//   qkv = t Wqkv^T + bqkv                            (T, D (nq + 2 nkv)), merged q | k | v
//   q, k = YaRN(q, k) at the tokens' positions
//   a = softmax-with-sink(q k^T / sqrt(D), causal, window) v   (GQA: head h reads KV head h / (nq/nkv))
//   out = x + a Wout^T + bout                        (T, H)
//
// The window is part of the type: AttentionSpan::sliding layers see keys j
// with q - W < j <= q, AttentionSpan::full layers every j <= q. Each query
// head has a learned sink logit that joins the softmax denominator and whose
// probability is dropped. The Sinks policy (layers/sink_policy.hpp) can add
// StreamingLLM sink tokens: the first S tokens stay visible for ever.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/int8_matrix.hpp"
#include "gptoss/kernels/fast/attention.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/layers/dense_projection.hpp"
#include "gptoss/layers/rms_norm.hpp"
#include "gptoss/layers/sink_policy.hpp"
#include "gptoss/layers/yarn_rope.hpp"
#include "gptoss/model/checkpoint_layout.hpp"
#include "gptoss/model/kv_cache.hpp"

namespace gptoss {

enum class AttentionSpan { full, sliding };

/// Shape of an attention block.
struct AttentionParams {
  index_t hidden = 2880;
  index_t head_dim = 64;
  index_t num_heads = 64;
  index_t num_kv_heads = 8;
  index_t sliding_window = 128;  // used by AttentionSpan::sliding layers
  RopeParams rope{};
  float rms_eps = 1e-5f;

  static AttentionParams from(const ModelDims& d) {
    return {d.hidden, d.head_dim, d.num_heads, d.num_kv_heads, d.sliding_window, d.rope(), d.rms_eps};
  }
  index_t q_dim() const noexcept { return head_dim * num_heads; }
  index_t kv_dim() const noexcept { return head_dim * num_kv_heads; }
  index_t qkv_dim() const noexcept { return q_dim() + 2 * kv_dim(); }
};

/// Optional 8-bit copies of an attention block's projections (made from the
/// bf16 weights by quantize_dense_int8, never read from a checkpoint). When
/// one is set the layer multiplies by it instead of the bf16 matrix.
struct AttentionInt8Weights {
  Int8MatrixView q, k, v;  // (D nq, H), (D nkv, H), (D nkv, H)
  Int8MatrixView out;      // (H, D nq)
};

/// Weights of an attention block, named as in the gpt-oss checkpoint
/// (`block.{i}.attn.` + name). The merged QKV projection is three views: in
/// the original checkpoint they are consecutive rows of qkv.weight / qkv.bias
/// (q, then k, then v); other layouts store them apart.
struct AttentionWeights {
  RMSNormWeights norm;               // norm.scale (H)
  MatrixView<const bf16> q_weight;   // qkv.weight rows [0, D nq)            (D nq, H)
  MatrixView<const bf16> k_weight;   // qkv.weight rows [D nq, D (nq + nkv)) (D nkv, H)
  MatrixView<const bf16> v_weight;   // qkv.weight rows [D (nq + nkv), ...)  (D nkv, H)
  VectorView<const bf16> q_bias;     // qkv.bias, same split                 (D nq)
  VectorView<const bf16> k_bias;     //                                      (D nkv)
  VectorView<const bf16> v_bias;     //                                      (D nkv)
  VectorView<const bf16> sinks;      // sinks      (nq)
  MatrixView<const bf16> out_weight; // out.weight (H, D nq)
  VectorView<const bf16> out_bias;   // out.bias   (H)
  AttentionInt8Weights int8{};       // optional 8-bit copies (empty: bf16 is used)
};

template <AttentionSpan Span, class Backend = cpu_reference, SinkPolicy Sinks = LearnedSinkLogit>
class SlidingSinkAttention {
  static_assert(Sinks::kSinkTokens == 0 || Span == AttentionSpan::sliding,
                "sink tokens keep a window's cache bounded: they need AttentionSpan::sliding");

 public:
  using Params = AttentionParams;
  using Weights = AttentionWeights;
  using sink_policy = Sinks;
  static constexpr AttentionSpan kSpan = Span;
  static constexpr index_t kSinkTokens = Sinks::kSinkTokens;

  explicit SlidingSinkAttention(const AttentionParams& p,
                                index_t rope_table_positions = YaRNRope<Backend>::kDefaultTablePositions)
      : p_(p), norm_(p.hidden, p.rms_eps), rope_(p.rope, rope_table_positions) {
    if (p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
      throw ConfigError("SlidingSinkAttention: " + std::to_string(p.num_heads) +
                        " query heads are not a multiple of " + std::to_string(p.num_kv_heads) +
                        " KV heads");
    }
    if (p.rope.head_dim != p.head_dim) {
      throw ConfigError("SlidingSinkAttention: rope head_dim " + std::to_string(p.rope.head_dim) +
                        " differs from head_dim " + std::to_string(p.head_dim));
    }
    if (Span == AttentionSpan::sliding && window() <= 0) {
      throw ConfigError("SlidingSinkAttention: a sliding layer needs a positive window, got " +
                        std::to_string(window()));
    }
  }

  const AttentionParams& params() const noexcept { return p_; }
  const YaRNRope<Backend>& rope() const noexcept { return rope_; }
  /// 0 for full layers, the window for sliding ones (the policy's, if it sets one).
  index_t window() const noexcept {
    if constexpr (Span == AttentionSpan::full) return 0;
    return Sinks::kWindow > 0 ? Sinks::kWindow : p_.sliding_window;
  }
  /// Tokens at the start of the sequence that stay visible for ever (0 for gpt-oss).
  static constexpr index_t sink_tokens() noexcept { return kSinkTokens; }
  float scale() const noexcept { return 1.0f / std::sqrt(static_cast<float>(p_.head_dim)); }

  /// Calls f(name, tensor, expected shape) for every weight, with the
  /// checkpoint's names; W is Weights or const Weights.
  template <class W, class F>
  void visit_weights(W& w, F&& f) const {
    const std::array rows{p_.q_dim(), p_.kv_dim(), p_.kv_dim()};
    const std::array<const char*, 3> parts{"q", "k", "v"};
    f("norm.scale", w.norm.scale, std::array{p_.hidden});
    f("qkv.weight", RowSplit<decltype(&w.q_weight), 3>{{&w.q_weight, &w.k_weight, &w.v_weight}, rows, parts},
      std::array{p_.qkv_dim(), p_.hidden});
    f("qkv.bias", RowSplit<decltype(&w.q_bias), 3>{{&w.q_bias, &w.k_bias, &w.v_bias}, rows, parts},
      std::array{p_.qkv_dim()});
    if constexpr (Sinks::kLearnedLogit) f("sinks", w.sinks, std::array{p_.num_heads});
    f("out.weight", w.out_weight, std::array{p_.hidden, p_.q_dim()});
    f("out.bias", w.out_bias, std::array{p_.hidden});
  }

  /// Points w's q/k/v views at the rows of a merged projection, as the
  /// original checkpoint stores it: qkv (D (nq + 2 nkv), H), bias (D (nq + 2 nkv)).
  void set_merged_qkv(Weights& w, MatrixView<const bf16> qkv, VectorView<const bf16> bias) const {
    require_shape(qkv, {p_.qkv_dim(), p_.hidden}, "attn qkv.weight");
    require_shape(bias, {p_.qkv_dim()}, "attn qkv.bias");
    const index_t q = p_.q_dim(), kv = p_.kv_dim();
    w.q_weight = qkv.slice(0, q);
    w.k_weight = qkv.slice(q, q + kv);
    w.v_weight = qkv.slice(q + kv, q + 2 * kv);
    w.q_bias = bias.slice(0, q);
    w.k_bias = bias.slice(q, q + kv);
    w.v_bias = bias.slice(q + kv, q + 2 * kv);
  }

  /// Checks every weight's shape; throws ShapeError naming the tensor.
  void check(const Weights& w) const {
    check_projections(w);
    check_output(w);
  }
  /// The weights project() reads: the norm and the q, k and v projections.
  void check_projections(const Weights& w) const {
    require_shape(w.norm.scale, {p_.hidden}, "attn norm.scale");
    require_shape(w.q_weight, {p_.q_dim(), p_.hidden}, "attn q weight (qkv.weight rows)");
    require_shape(w.k_weight, {p_.kv_dim(), p_.hidden}, "attn k weight (qkv.weight rows)");
    require_shape(w.v_weight, {p_.kv_dim(), p_.hidden}, "attn v weight (qkv.weight rows)");
    require_shape(w.q_bias, {p_.q_dim()}, "attn q bias (qkv.bias)");
    require_shape(w.k_bias, {p_.kv_dim()}, "attn k bias (qkv.bias)");
    require_shape(w.v_bias, {p_.kv_dim()}, "attn v bias (qkv.bias)");
  }
  /// The weights attend_and_project() reads: the sink logits and the output projection.
  void check_output(const Weights& w) const {
    if constexpr (Sinks::kLearnedLogit) require_shape(w.sinks, {p_.num_heads}, "attn sinks");
    require_shape(w.out_weight, {p_.hidden, p_.q_dim()}, "attn out.weight");
    require_shape(w.out_bias, {p_.hidden}, "attn out.bias");
  }

  /// Projects x (T, H) at positions first_position.. to rotated q (T, nq, D)
  /// and k (T, nkv, D) and plain v (T, nkv, D).
  void project(const Weights& w, MatrixView<const float> x, index_t first_position,
               TensorView<float, 3> q, TensorView<float, 3> k, TensorView<float, 3> v) const {
    check_projections(w);
    const index_t t_count = x.extent(0);
    const std::array<index_t, 3> q_shape{t_count, p_.num_heads, p_.head_dim};
    const std::array<index_t, 3> kv_shape{t_count, p_.num_kv_heads, p_.head_dim};
    if (x.extent(1) != p_.hidden || q.shape() != q_shape || k.shape() != kv_shape || v.shape() != kv_shape) {
      throw ShapeError("SlidingSinkAttention::project: x " + shape_string(x.shape()) + ", q " + shape_string(q.shape()) +
                       ", k " + shape_string(k.shape()) + ", v " + shape_string(v.shape()) + " must be (T, " +
                       std::to_string(p_.hidden) + "), (T, " + std::to_string(p_.num_heads) + ", " +
                       std::to_string(p_.head_dim) + ") and twice (T, " + std::to_string(p_.num_kv_heads) + ", " +
                       std::to_string(p_.head_dim) + ")");
    }
    project_checked(w, x, first_position, q, k, v);
  }

  /// out (T, H) = x + attn(RMSNorm(x)) for x (T, H) whose tokens sit at
  /// positions first_position, first_position + 1, ... with no earlier
  /// context (a prefill). out may alias x.
  void forward(const Weights& w, MatrixView<const float> x, MatrixView<float> out,
               index_t first_position = 0) const {
    check(w);
    check_io(x, out);
    const index_t t_count = x.extent(0);
    Tensor<float, 3> q({t_count, p_.num_heads, p_.head_dim});
    Tensor<float, 3> k({t_count, p_.num_kv_heads, p_.head_dim});
    Tensor<float, 3> v({t_count, p_.num_kv_heads, p_.head_dim});
    project_checked(w, x, first_position, q.view(), k.view(), v.view());
    if constexpr (kSinkTokens > 0) {
      attend_streaming(w, x, q.view(), k.view(), v.view(), nullptr, first_position, out);
      return;
    }
    std::vector<index_t> positions(static_cast<std::size_t>(t_count));
    for (index_t t = 0; t < t_count; ++t) positions[static_cast<std::size_t>(t)] = first_position + t;
    const VectorView<const index_t> pos(positions.data(), {t_count});
    const kernels::KeyValuePart part{k.view(), v.view(), pos};
    attend_and_project_checked(w, x, q.view(), pos, std::span<const kernels::KeyValuePart>(&part, 1), out);
  }

  /// As forward(), for tokens that continue the sequence held in `cache`:
  /// queries attend to the cached keys and to each other (causally), then the
  /// new keys and values join the cache. first_position must be the number of
  /// tokens the sequence held before.
  void forward(const Weights& w, MatrixView<const float> x, MatrixView<float> out,
               LayerKVCache& cache, index_t first_position) const {
    check(w);
    check_io(x, out);
    if (first_position != cache.next_position()) {
      throw RangeError("SlidingSinkAttention::forward: first_position " + std::to_string(first_position) +
                       ", but the cache continues at position " + std::to_string(cache.next_position()));
    }
    const index_t t_count = x.extent(0);
    const index_t nkv = p_.num_kv_heads, d = p_.head_dim;
    Tensor<float, 3> q({t_count, p_.num_heads, d});
    Tensor<float, 3> k({t_count, nkv, d}), v({t_count, nkv, d});
    project_checked(w, x, first_position, q.view(), k.view(), v.view());
    if constexpr (kSinkTokens > 0) {
      attend_streaming(w, x, q.view(), k.view(), v.view(), &cache, first_position, out);
      cache.append(k.view(), v.view(), first_position);
      return;
    }

    // Keys visible to this step: the cache's, read in place, then the new tokens'.
    std::vector<index_t> q_pos(static_cast<std::size_t>(t_count));
    for (index_t t = 0; t < t_count; ++t) q_pos[static_cast<std::size_t>(t)] = first_position + t;
    const VectorView<const index_t> new_pos(q_pos.data(), {t_count});
    const std::array parts{kernels::KeyValuePart{cache.keys(), cache.values(), cache.positions()},
                           kernels::KeyValuePart{k.view(), v.view(), new_pos}};
    attend_and_project_checked(w, x, q.view(), new_pos, parts, out);
    cache.append(k.view(), v.view(), first_position);
  }

  /// out (T, H) = x + Wout attention(q over k, v) + bout: the part after the
  /// projections, shared by prefill and cached decoding.
  void attend_and_project(const Weights& w, MatrixView<const float> x, TensorView<const float, 3> q,
                          VectorView<const index_t> q_pos, TensorView<const float, 3> k,
                          TensorView<const float, 3> v, VectorView<const index_t> k_pos,
                          MatrixView<float> out) const {
    const kernels::KeyValuePart part{k, v, k_pos};
    attend_and_project(w, x, q, q_pos, std::span<const kernels::KeyValuePart>(&part, 1), out);
  }

  /// As above, over keys held in several parts (e.g. a KV cache and the new
  /// tokens), each read where it is.
  void attend_and_project(const Weights& w, MatrixView<const float> x, TensorView<const float, 3> q,
                          VectorView<const index_t> q_pos, std::span<const kernels::KeyValuePart> parts,
                          MatrixView<float> out) const {
    check_output(w);
    check_io(x, out);
    const index_t t_count = x.extent(0);
    if (q.extent(0) != t_count || q.extent(1) != p_.num_heads || q.extent(2) != p_.head_dim) {
      throw ShapeError("SlidingSinkAttention::attend_and_project: q " + shape_string(q.shape()) + " must be (" +
                       std::to_string(t_count) + ", " + std::to_string(p_.num_heads) + ", " +
                       std::to_string(p_.head_dim) + ") for x " + shape_string(x.shape()));
    }
    attend_and_project_checked(w, x, q, q_pos, parts, out);
  }

 private:
  /// project() once its weights and buffers are known to fit (forward()
  /// checks them once per call, not again here).
  void project_checked(const Weights& w, MatrixView<const float> x, index_t first_position,
                       TensorView<float, 3> q, TensorView<float, 3> k, TensorView<float, 3> v) const {
    const index_t t_count = x.extent(0);
    Tensor<float, 2> normed({t_count, p_.hidden});
    norm_.forward(w.norm, x, normed.view());
    const MatrixView<const float> t_in = normed.view();
    if (const std::optional<MergedQkv> merged = merged_qkv(w)) {
      // One product for q, k and v: one pass of the thread pool instead of
      // three, two of which (k and v) are an eighth of q's rows each.
      Tensor<float, 2> qkv({t_count, p_.qkv_dim()});
      kernels::linear(Backend{}, merged->weight, merged->bias, t_in, qkv.view());
      const index_t nq = p_.q_dim(), nkv = p_.kv_dim();
      for (index_t t = 0; t < t_count; ++t) {
        const float* row = &qkv(t, 0);
        std::copy_n(row, nq, q.data() + t * nq);
        std::copy_n(row + nq, nkv, k.data() + t * nkv);
        std::copy_n(row + nq + nkv, nkv, v.data() + t * nkv);
      }
    } else {
      dense_projection<Backend>(w.int8.q, w.q_weight, w.q_bias, t_in,
                                MatrixView<float>(q.data(), {t_count, p_.q_dim()}), "attention q");
      dense_projection<Backend>(w.int8.k, w.k_weight, w.k_bias, t_in,
                                MatrixView<float>(k.data(), {t_count, p_.kv_dim()}), "attention k");
      dense_projection<Backend>(w.int8.v, w.v_weight, w.v_bias, t_in,
                                MatrixView<float>(v.data(), {t_count, p_.kv_dim()}), "attention v");
    }
    rope_.forward(q, first_position);
    rope_.forward(k, first_position);
  }

  /// attend_and_project() once its weights and buffers are known to fit.
  void attend_and_project_checked(const Weights& w, MatrixView<const float> x, TensorView<const float, 3> q,
                                  VectorView<const index_t> q_pos, std::span<const kernels::KeyValuePart> parts,
                                  MatrixView<float> out) const {
    const index_t t_count = x.extent(0);
    const std::vector<float> sinks = sink_logits(w);
    Tensor<float, 2> attn({t_count, p_.q_dim()});
    kernels::sink_attention(Backend{}, q, q_pos, parts,
                            VectorView<const float>(sinks.data(), {p_.num_heads}), scale(),
                            window(), attn.view());
    project_out(w, x, attn.view(), out);
  }

  /// The q, k and v projections as one (D (nq + 2 nkv), H) matrix and bias,
  /// when their rows follow each other in memory (the original checkpoint's
  /// qkv.weight, random weights) and no 8-bit copy is bound; else nullopt
  /// (e.g. Hugging Face checkpoints store q_proj, k_proj and v_proj apart).
  struct MergedQkv {
    MatrixView<const bf16> weight;  // (D (nq + 2 nkv), H)
    VectorView<const bf16> bias;    // (D (nq + 2 nkv))
  };
  std::optional<MergedQkv> merged_qkv(const Weights& w) const {
    if (!w.int8.q.empty() || !w.int8.k.empty() || !w.int8.v.empty()) return std::nullopt;
    const bool rows_follow = w.k_weight.data() == w.q_weight.data() + w.q_weight.size() &&
                             w.v_weight.data() == w.k_weight.data() + w.k_weight.size();
    const bool bias_follows = w.k_bias.data() == w.q_bias.data() + w.q_bias.size() &&
                              w.v_bias.data() == w.k_bias.data() + w.k_bias.size();
    if (!rows_follow || !bias_follows) return std::nullopt;
    return MergedQkv{MatrixView<const bf16>(w.q_weight.data(), {p_.qkv_dim(), p_.hidden}),
                     VectorView<const bf16>(w.q_bias.data(), {p_.qkv_dim()})};
  }

  /// The learned sink logit of each query head (nq), or -inf (no sink) when
  /// the policy has none.
  std::vector<float> sink_logits(const Weights& w) const {
    std::vector<float> sinks(static_cast<std::size_t>(p_.num_heads), -std::numeric_limits<float>::infinity());
    if constexpr (Sinks::kLearnedLogit) {
      for (index_t h = 0; h < p_.num_heads; ++h) sinks[static_cast<std::size_t>(h)] = w.sinks[h].to_float();
    }
    return sinks;
  }

  /// Sink-token attention of q (T, nq, D) at positions first_position.. over
  /// the cached keys (if any) and the new k, v (T, nkv, D), in chunks of at
  /// most W queries (layers/sink_policy.hpp); out (T, H) = x + projection.
  void attend_streaming(const Weights& w, MatrixView<const float> x, TensorView<const float, 3> q,
                        TensorView<const float, 3> k, TensorView<const float, 3> v,
                        const LayerKVCache* cache, index_t first_position, MatrixView<float> out) const {
    const index_t t_count = x.extent(0), nkv = p_.num_kv_heads, d = p_.head_dim, win = window();
    const index_t row = nkv * d, held = cache ? cache->size() : 0;
    const std::vector<float> sinks = sink_logits(w);
    const VectorView<const float> sink_view(sinks.data(), {p_.num_heads});
    Tensor<float, 2> attn({t_count, p_.q_dim()});  // (T, nq D)
    std::vector<index_t> q_pos(static_cast<std::size_t>(t_count));
    for (index_t t = 0; t < t_count; ++t) q_pos[static_cast<std::size_t>(t)] = first_position + t;
    for (index_t a = 0; a < t_count; a += win) {
      const index_t b = std::min(t_count, a + win);  // queries [a, b)
      StreamingChunk chunk(kSinkTokens, win, first_position + a, first_position + b - 1, nkv, d,
                           held + kSinkTokens + 2 * win);
      for (index_t j = 0; j < held; ++j) {
        chunk.offer(cache->keys().data() + j * row, cache->values().data() + j * row, cache->positions()[j]);
      }
      // New tokens: those at sink positions, then those some query of the chunk may see.
      const index_t sink_end = std::clamp<index_t>(kSinkTokens - first_position, 0, b);
      for (index_t t = 0; t < sink_end; ++t) chunk.offer(k.data() + t * row, v.data() + t * row, first_position + t);
      for (index_t t = std::max(sink_end, a - win + 1); t < b; ++t) {
        chunk.offer(k.data() + t * row, v.data() + t * row, first_position + t);
      }
      kernels::sink_attention(Backend{}, q.slice(a, b), VectorView<const index_t>(q_pos.data() + a, {b - a}),
                              chunk.keys(), chunk.values(), chunk.mask_positions(), sink_view, scale(), win,
                              attn.view().slice(a, b));
    }
    project_out(w, x, attn.view(), out);
  }

  /// out (T, H) = x + attn (T, nq D) Wout^T + bout.
  void project_out(const Weights& w, MatrixView<const float> x, MatrixView<const float> attn,
                   MatrixView<float> out) const {
    const index_t t_count = x.extent(0);
    Tensor<float, 2> projected({t_count, p_.hidden});
    dense_projection<Backend>(w.int8.out, w.out_weight, w.out_bias, attn, projected.view(), "attention out");
    for (index_t t = 0; t < t_count; ++t) {
      for (index_t i = 0; i < p_.hidden; ++i) out(t, i) = x(t, i) + projected(t, i);
    }
  }

  void check_io(MatrixView<const float> x, MatrixView<float> out) const {
    if (x.extent(1) != p_.hidden || out.shape() != x.shape()) {
      throw ShapeError("SlidingSinkAttention: input " + shape_string(x.shape()) + " and output " +
                       shape_string(out.shape()) + " must both be (T, " +
                       std::to_string(p_.hidden) + ")");
    }
  }

  AttentionParams p_;
  RMSNorm<Backend> norm_;
  YaRNRope<Backend> rope_;
};

}  // namespace gptoss
