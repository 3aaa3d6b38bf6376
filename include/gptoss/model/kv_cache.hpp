// Per-layer key/value cache for incremental decoding.
//
// A sliding-window layer keeps only its last `window` keys in a ring buffer:
// its memory is bounded by the window, whatever the context length. A full
// layer grows (doubling) as tokens arrive, up to the sequence's context
// limit (a sliding layer never grows, so the limit does not apply to it).
// Slots are not in position order; each slot records its position and
// the attention kernels mask by position.
//
// With S sink tokens (StreamingLLM, layers/sink_policy.hpp), a sliding
// layer also keeps the sequence's tokens at positions < S for ever in S
// slots before the ring: S + window slots in all.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss {

class LayerKVCache {
 public:
  /// window 0: a full-attention layer, bounded by max_context; otherwise a
  /// ring of `window` slots, after `sink_tokens` slots that keep the tokens
  /// at positions < sink_tokens.
  LayerKVCache(index_t num_kv_heads, index_t head_dim, index_t window, index_t max_context,
               index_t sink_tokens = 0)
      : row_(0), heads_(num_kv_heads), head_dim_(head_dim),
        window_(window), max_context_(max_context), sink_tokens_(sink_tokens) {
    const auto invalid = [&](const char* what) {
      throw ConfigError(std::string("LayerKVCache: ") + what + " (kv heads " + std::to_string(num_kv_heads) +
                        ", head_dim " + std::to_string(head_dim) + ", window " +
                        std::to_string(window) + ", max_context " + std::to_string(max_context) +
                        ", sink tokens " + std::to_string(sink_tokens) + ")");
    };
    if (num_kv_heads <= 0 || head_dim <= 0 || window < 0 || max_context <= 0 || sink_tokens < 0 ||
        (sink_tokens > 0 && window == 0)) {
      invalid("invalid shape");
    }
    // The most slots it can hold, times a row of keys, must be addressable.
    index_t slots = max_context, floats = 0;
    if ((window > 0 && __builtin_add_overflow(sink_tokens, window, &slots)) ||
        __builtin_mul_overflow(num_kv_heads, head_dim, &row_) || __builtin_mul_overflow(slots, row_, &floats) ||
        floats > std::numeric_limits<index_t>::max() / index_t{sizeof(float)}) {
      invalid("too large to address");
    }
    if (window_ > 0) reserve(sink_tokens_ + window_);  // never grows, so no context limit
  }

  index_t num_kv_heads() const noexcept { return heads_; }
  index_t head_dim() const noexcept { return head_dim_; }
  bool sliding() const noexcept { return window_ > 0; }
  index_t window() const noexcept { return window_; }
  /// Tokens at positions < sink_tokens() are kept for ever (sliding layers).
  index_t sink_tokens() const noexcept { return sink_tokens_; }
  /// Keys held now.
  index_t size() const noexcept { return size_; }
  /// The position the next appended token must have: how many tokens have
  /// been appended since construction or clear(), held or not.
  index_t next_position() const noexcept { return next_position_; }
  /// Slots allocated now.
  index_t capacity() const noexcept { return capacity_; }
  /// Bytes of key, value and position storage allocated.
  std::size_t bytes() const noexcept {
    return (keys_.capacity() + values_.capacity()) * sizeof(float) +
           positions_.capacity() * sizeof(index_t);
  }

  /// Held keys and values (size, nkv, D) and their positions (size), in slot order.
  TensorView<const float, 3> keys() const noexcept { return {keys_.data(), {size_, heads_, head_dim_}}; }
  TensorView<const float, 3> values() const noexcept { return {values_.data(), {size_, heads_, head_dim_}}; }
  VectorView<const index_t> positions() const noexcept { return {positions_.data(), {size_}}; }

  /// Stores k, v (T, nkv, D) of tokens at positions first_position + t;
  /// first_position must be next_position() (RangeError otherwise: a cache
  /// holds one sequence, in order).
  void append(TensorView<const float, 3> k, TensorView<const float, 3> v, index_t first_position) {
    const index_t t_count = k.extent(0);
    if (k.extent(1) != heads_ || k.extent(2) != head_dim_ || v.shape() != k.shape()) {
      throw ShapeError("LayerKVCache::append: keys " + shape_string(k.shape()) + " and values " +
                       shape_string(v.shape()) + " must be (T, " + std::to_string(heads_) + ", " +
                       std::to_string(head_dim_) + ")");
    }
    if (first_position != next_position_) {
      throw RangeError("LayerKVCache::append: tokens at positions from " + std::to_string(first_position) +
                       ", but the cache continues at position " + std::to_string(next_position_));
    }
    if (!sliding() && first_position + t_count > max_context_) {
      throw RangeError("context overflow: positions up to " +
                       std::to_string(first_position + t_count - 1) +
                       " exceed the context limit of " + std::to_string(max_context_) + " tokens");
    }
    // A sliding layer only ever needs the last `window` of these tokens.
    const index_t skip = sliding() ? std::max<index_t>(0, t_count - window_) : 0;
    if (!sliding() && size_ + t_count > capacity_) {
      reserve(std::min(max_context_, std::max(2 * capacity_, size_ + t_count)));
    }
    for (index_t t = 0; t < t_count; ++t) {
      const bool sink = first_position + t < sink_tokens_;
      if (t < skip && !sink) continue;
      index_t slot;
      if (!sliding()) {
        slot = size_++;
      } else if (sink) {  // sink slots fill in order, before any ring slot
        if (sinks_held_ == sink_tokens_ || size_ > sinks_held_) {
          throw RangeError("LayerKVCache::append: position " + std::to_string(first_position + t) +
                           " (a sink token) arrives after later positions");
        }
        slot = sinks_held_++;
        size_ = sinks_held_;
      } else {
        slot = sinks_held_ + next_;
        next_ = (next_ + 1) % window_;
        size_ = std::min(size_ + 1, sinks_held_ + window_);
      }
      std::memcpy(&keys_[static_cast<std::size_t>(slot * row_)], k.data() + t * row_,
                  static_cast<std::size_t>(row_) * sizeof(float));
      std::memcpy(&values_[static_cast<std::size_t>(slot * row_)], v.data() + t * row_,
                  static_cast<std::size_t>(row_) * sizeof(float));
      positions_[static_cast<std::size_t>(slot)] = first_position + t;
    }
    next_position_ += t_count;
  }

  void clear() noexcept {
    size_ = 0;
    next_position_ = 0;
    next_ = 0;
    sinks_held_ = 0;
  }

 private:
  void reserve(index_t slots) {
    keys_.resize(static_cast<std::size_t>(slots * row_));
    values_.resize(static_cast<std::size_t>(slots * row_));
    positions_.resize(static_cast<std::size_t>(slots));
    capacity_ = slots;
  }

  index_t row_, heads_, head_dim_, window_, max_context_, sink_tokens_;
  index_t size_ = 0, capacity_ = 0, next_ = 0, sinks_held_ = 0, next_position_ = 0;
  std::vector<float> keys_, values_;
  std::vector<index_t> positions_;
};

}  // namespace gptoss
