// Attention maps of an attention layer, for inspection: which keys each
// chosen query head attends to, and how much probability its learned sink
// absorbs. The layer's own projections (RMSNorm, QKV, YaRN at the tokens'
// positions) give q and k; the probabilities are a separate float64 pass
// (kernels/reference/attention_probabilities.hpp), so the attention kernels
// are untouched and nothing runs unless a map is asked for.
//
// For a prefill the keys are the tokens themselves; for a step that
// continues a sequence, they are the keys held in the layer's KV cache
// before the step, then the step's own. Keys are listed in position order.
// Layers with StreamingLLM sink tokens (layers/sink_policy.hpp) get the same
// visibility rule as their attention: the first S positions stay visible.
#pragma once

#include <algorithm>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/kernels/reference/attention_probabilities.hpp"
#include "gptoss/model/kv_cache.hpp"

namespace gptoss {

/// Attention probabilities of some query heads over one call's keys.
struct AttentionProbabilities {
  std::vector<index_t> heads;         // (H') query heads, as asked
  Tensor<index_t, 1> query_positions; // (T) the tokens' positions
  Tensor<index_t, 1> key_positions;   // (S) ascending
  Tensor<float, 3> probs;             // (H', T, S) 0 where a key is not visible
  Tensor<float, 2> sink;              // (H', T) the sink's share: probs rows + sink = 1
};

/// What an attention layer must offer for its maps to be computed: the
/// projection to rotated q (T, nq, D) and k (T, nkv, D), the score scale and
/// window, and its learned sinks. SlidingSinkAttention of either span has it.
template <class Attention>
concept ProvidesAttentionMaps =
    requires(const Attention& a, const typename Attention::Weights& w, MatrixView<const float> x,
             TensorView<float, 3> t) {
      a.project(w, x, index_t{0}, t, t, t);
      { a.scale() } -> std::convertible_to<float>;
      { a.window() } -> std::convertible_to<index_t>;
      { a.params().num_heads } -> std::convertible_to<index_t>;
      w.sinks[0].to_float();
    };

/// The maps of query heads `heads` (all heads when empty) of `layer` for x
/// (T, H) at positions first_position.., continuing the sequence held in
/// `cache` (its state before this step; nullptr or empty for a prefill).
template <ProvidesAttentionMaps Attention>
AttentionProbabilities attention_probabilities(const Attention& layer,
                                               const typename Attention::Weights& w,
                                               MatrixView<const float> x, index_t first_position,
                                               std::span<const index_t> heads,
                                               const LayerKVCache* cache = nullptr) {
  const auto& p = layer.params();
  const index_t t_count = x.extent(0), nq = p.num_heads, nkv = p.num_kv_heads, d = p.head_dim;
  const index_t held = cache != nullptr ? cache->size() : 0;
  if (cache != nullptr && held > 0 &&
      (cache->keys().extent(1) != nkv || cache->keys().extent(2) != d)) {
    throw ShapeError("attention_probabilities: cached keys " + shape_string(cache->keys().shape()) +
                     " do not fit the layer's (S, " + std::to_string(nkv) + ", " +
                     std::to_string(d) + ")");
  }
  AttentionProbabilities m;
  m.heads.assign(heads.begin(), heads.end());
  if (m.heads.empty()) {
    m.heads.resize(static_cast<std::size_t>(nq));
    std::iota(m.heads.begin(), m.heads.end(), index_t{0});
  }
  const index_t h_count = static_cast<index_t>(m.heads.size());

  Tensor<float, 3> q({t_count, nq, d}), k_new({t_count, nkv, d}), v_new({t_count, nkv, d});
  layer.project(w, x, first_position, q.view(), k_new.view(), v_new.view());

  // Keys in position order: the cache's (a ring for sliding layers), then the new ones.
  std::vector<index_t> order(static_cast<std::size_t>(held));
  std::iota(order.begin(), order.end(), index_t{0});
  if (held > 0) {
    const auto pos = cache->positions();
    std::sort(order.begin(), order.end(), [&](index_t a, index_t b) { return pos[a] < pos[b]; });
  }
  const index_t s_count = held + t_count, row = nkv * d;
  Tensor<float, 3> k({s_count, nkv, d});
  m.key_positions = Tensor<index_t, 1>({s_count});
  for (index_t j = 0; j < held; ++j) {
    const index_t slot = order[static_cast<std::size_t>(j)];
    std::copy_n(cache->keys().data() + slot * row, row, k.data() + j * row);
    m.key_positions(j) = cache->positions()[slot];
  }
  std::copy_n(k_new.data(), t_count * row, k.data() + held * row);
  m.query_positions = Tensor<index_t, 1>({t_count});
  for (index_t t = 0; t < t_count; ++t) {
    m.query_positions(t) = first_position + t;
    m.key_positions(held + t) = first_position + t;
  }

  // The layer's sink policy (layers/sink_policy.hpp): StreamingLLM sink tokens
  // stay visible past the window, and a policy without the learned logit
  // leaves the sink out of the denominator (-inf).
  index_t sink_tokens = 0;
  bool learned_logit = true;
  if constexpr (requires { Attention::sink_policy::kSinkTokens; }) {
    sink_tokens = Attention::sink_policy::kSinkTokens;
    learned_logit = Attention::sink_policy::kLearnedLogit;
  }
  std::vector<float> sinks(static_cast<std::size_t>(nq), -std::numeric_limits<float>::infinity());
  for (index_t h = 0; learned_logit && h < nq; ++h) sinks[static_cast<std::size_t>(h)] = w.sinks[h].to_float();
  m.probs = Tensor<float, 3>({h_count, t_count, s_count});
  m.sink = Tensor<float, 2>({h_count, t_count});
  kernels::sink_attention_probabilities(
      cpu_reference{}, q.view(), m.query_positions.view(), k.view(), m.key_positions.view(),
      VectorView<const float>(sinks.data(), {nq}), layer.scale(), layer.window(),
      VectorView<const index_t>(m.heads.data(), {h_count}), m.probs.view(), m.sink.view(), sink_tokens);
  return m;
}

}  // namespace gptoss
