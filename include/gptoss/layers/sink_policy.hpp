// Sink policies of SlidingSinkAttention, chosen at compile time.
//
// - LearnedSinkLogit (gpt-oss, the default): each query head has a learned
//   sink logit (weight `sinks`) that joins the softmax denominator; its
//   probability is dropped. A sliding layer sees the last W tokens.
// - SinkTokens<S, Window, LearnedLogit> (StreamingLLM's attention sinks):
//   the first S tokens of the sequence stay visible to every later query, next
//   to the rolling window, and stay in the layer's KV cache for ever (S + W
//   slots, whatever the length). Key j at position k is visible to the query
//   at position p iff k <= p and (k < S or p - W < k). The learned logit is
//   kept by default (so gpt-oss weights run unchanged); LearnedLogit = false
//   drops it and the `sinks` weight. Window > 0 overrides the config's
//   sliding_window for this layer (e.g. 4096 on gpt-oss's full layers).
//
// Positions are absolute: keys are rotated (YaRN) at their true position
// when they enter the cache and are never re-rotated. A query at p scores a
// window key at distance < W as gpt-oss does, and a sink token at distance p.
//
// StreamingChunk maps the sink-token visibility rule onto the attention
// kernels' window mask, so every backend's kernel runs it unchanged: queries
// go in chunks of at most W consecutive positions [a, b]; a sink key that is
// before every query's window (k <= b - W, hence k < a) is handed to the
// kernel at position a, inside every window of the chunk. Kernels use key
// positions only for masking (RoPE is already applied), so this is exact.
#pragma once

#include <concepts>
#include <vector>

#include "gptoss/core/tensor_view.hpp"

namespace gptoss {

/// gpt-oss: one learned sink logit per query head, no sink tokens.
struct LearnedSinkLogit {
  static constexpr index_t kSinkTokens = 0;
  static constexpr index_t kWindow = 0;  // the config's sliding_window
  static constexpr bool kLearnedLogit = true;
};

/// StreamingLLM attention sinks: the first S tokens stay visible for ever.
template <index_t S, index_t Window = 0, bool LearnedLogit = true>
struct SinkTokens {
  static_assert(S >= 0 && Window >= 0, "sink token count and window are non-negative");
  static constexpr index_t kSinkTokens = S;
  static constexpr index_t kWindow = Window;  // 0: the config's sliding_window
  static constexpr bool kLearnedLogit = LearnedLogit;
};

template <class P>
concept SinkPolicy = requires {
  { P::kSinkTokens } -> std::convertible_to<index_t>;
  { P::kWindow } -> std::convertible_to<index_t>;
  { P::kLearnedLogit } -> std::convertible_to<bool>;
};

/// Gathers, for one chunk of queries, the keys and values they may see with
/// the positions the kernel masks by (see the header comment).
class StreamingChunk {
 public:
  /// Queries at positions [first, last] (last - first < window).
  StreamingChunk(index_t sink_tokens, index_t window, index_t first, index_t last, index_t kv_heads,
                 index_t head_dim, index_t max_keys)
      : sinks_(sink_tokens), window_(window), first_(first), last_(last), row_(kv_heads * head_dim),
        heads_(kv_heads), dim_(head_dim) {
    keys_.reserve(static_cast<std::size_t>(max_keys * row_));
    values_.reserve(static_cast<std::size_t>(max_keys * row_));
    mask_.reserve(static_cast<std::size_t>(max_keys));
  }

  /// Offers one key/value row (nkv * D floats each) at absolute position k.
  void offer(const float* key, const float* value, index_t k) {
    const bool sink = k < sinks_;
    if (k > last_ || (!sink && k <= first_ - window_)) return;  // seen by no query of the chunk
    keys_.insert(keys_.end(), key, key + row_);
    values_.insert(values_.end(), value, value + row_);
    mask_.push_back(sink && k <= last_ - window_ ? first_ : k);
  }

  index_t size() const noexcept { return static_cast<index_t>(mask_.size()); }
  TensorView<const float, 3> keys() const noexcept { return {keys_.data(), {size(), heads_, dim_}}; }
  TensorView<const float, 3> values() const noexcept { return {values_.data(), {size(), heads_, dim_}}; }
  VectorView<const index_t> mask_positions() const noexcept { return {mask_.data(), {size()}}; }

 private:
  index_t sinks_, window_, first_, last_, row_, heads_, dim_;
  std::vector<float> keys_, values_;
  std::vector<index_t> mask_;
};

}  // namespace gptoss
