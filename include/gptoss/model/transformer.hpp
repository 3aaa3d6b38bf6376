// Transformer: a whole gpt-oss model composed at compile time from layer
// types.
//
//   logits = Unembedding(RMSNorm(block_{L-1}( ... block_0(Embedding(tokens)))))
//
// The layer pattern is a type, BlockPattern<B0, B1, ...>: layer l is a block
// of type B_{l mod P}. gpt-oss alternates a sliding-window block (even layers)
// and a full-attention block (odd layers): GptOssBlocks. Repeated blocks are
// stored as data, one std::vector per block type, so the type never nests
// per layer. Dimensions come from the config type Cfg: fixed configs
// (GptOss20b, ...) are checked at compile time, DynamicConfig takes them at
// run time (from config.json).
//
// A loaded model is immutable and safe to share between threads; each
// independent sequence owns a Sequence (its KV caches and position).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/backend.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/layers/embedding.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/rms_norm.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"
#include "gptoss/model/decoder_block.hpp"
#include "gptoss/model/kv_cache.hpp"

namespace gptoss {

/// Layer l of a model is a block of type Blocks[l mod sizeof...(Blocks)].
template <class... Blocks>
struct BlockPattern {
  static_assert(sizeof...(Blocks) >= 1, "a pattern has at least one block type");
  static constexpr std::size_t kPeriod = sizeof...(Blocks);
};

/// gpt-oss: even layers slide, odd layers attend to the full context; every
/// block's feed-forward part is a top-k MoE over ExpertMatrix weights.
template <class Backend = default_backend, class ExpertMatrix = FP4TensorView<MXFP4Checkpoint>>
using GptOssBlocks =
    BlockPattern<DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, Backend>,
                              MoEBlock<ExpertMatrix, Backend>>,
                 DecoderBlock<SlidingSinkAttention<AttentionSpan::full, Backend>,
                              MoEBlock<ExpertMatrix, Backend>>>;

/// The default context limit of a sequence (gpt-oss: 131072 tokens).
inline constexpr index_t kDefaultMaxContext = 131072;

/// One sequence's decoding state: a KV cache per layer and its length.
class Sequence {
 public:
  Sequence(std::vector<LayerKVCache> caches, index_t max_context)
      : caches_(std::move(caches)), max_context_(max_context) {}

  /// Tokens processed so far: the position of the next token.
  index_t length() const noexcept { return length_; }
  index_t max_context() const noexcept { return max_context_; }
  const LayerKVCache& cache(std::size_t layer) const { return caches_.at(layer); }
  LayerKVCache& cache(std::size_t layer) { return caches_.at(layer); }
  std::size_t num_layers() const noexcept { return caches_.size(); }
  /// True when every layer's cache is a bounded window (sliding layers, with
  /// or without sink tokens): memory is then constant and the sequence can
  /// run past max_context.
  bool bounded() const noexcept {
    for (const auto& c : caches_) {
      if (!c.sliding()) return false;
    }
    return true;
  }
  /// Bytes held by all layers' caches.
  std::size_t cache_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& c : caches_) n += c.bytes();
    return n;
  }
  void advance(index_t tokens) noexcept { length_ += tokens; }
  void clear() noexcept {
    for (auto& c : caches_) c.clear();
    length_ = 0;
  }

 private:
  std::vector<LayerKVCache> caches_;
  index_t max_context_;
  index_t length_ = 0;
};

template <ModelConfig Cfg = DynamicConfig, class Backend = default_backend,
          class Pattern = GptOssBlocks<Backend>>
class Transformer;

template <ModelConfig Cfg, class Backend, class... Blocks>
class Transformer<Cfg, Backend, BlockPattern<Blocks...>> {
 public:
  using pattern_type = BlockPattern<Blocks...>;
  static constexpr std::size_t kPeriod = sizeof...(Blocks);
  static constexpr bool kFixedDims = FixedModelConfig<Cfg>;

  struct Weights {
    typename Embedding<Backend>::Weights embedding;            // embedding.weight (V, H)
    std::tuple<std::vector<typename Blocks::Weights>...> blocks; // layer l: get<l % P>[l / P]
    RMSNormWeights norm;                                        // norm.scale (H)
    typename Unembedding<Backend>::Weights unembedding;         // unembedding.weight (V, H)
  };

  /// Builds the layers for `dims`; weights are bound afterwards (set_weights
  /// or a loader). For a fixed Cfg, dims must equal Cfg::value.
  explicit Transformer(const ModelDims& dims)
      : dims_(checked(dims)), embedding_(dims.vocab, dims.hidden), norm_(dims.hidden, dims.rms_eps),
        unembedding_(dims.vocab, dims.hidden) {
    build_blocks(std::index_sequence_for<Blocks...>{});
    resize_weights(weights_);
  }

  /// For fixed configs: Transformer<GptOss20b> model;
  Transformer()
    requires kFixedDims
      : Transformer(Cfg::value) {}

  const ModelDims& dims() const noexcept { return dims_; }
  int num_layers() const noexcept { return dims_.num_layers; }
  const Weights& weights() const noexcept { return weights_; }
  /// Mutable weights, for binding; `keep_alive` holds whatever memory they view.
  Weights& mutable_weights() noexcept { return weights_; }
  void keep_alive(std::shared_ptr<const void> owner) { owners_.push_back(std::move(owner)); }

  /// Calls f(name, tensor, expected shape) for every weight with the
  /// original checkpoint's names ("embedding.weight", "block.3.attn.qkv.weight", ...).
  template <class W, class F>
    requires std::same_as<std::remove_const_t<W>, Weights>
  void visit_weights(W& w, F&& f) const {
    embedding_.visit_weights(w.embedding, [&](const char* name, auto&& t, const auto& shape) {
      f(std::string("embedding.") + name, t, shape);
    });
    for (int l = 0; l < dims_.num_layers; ++l) {
      const std::string prefix = "block." + std::to_string(l) + ".";
      with_layer(w, l, [&](const auto& block, auto& bw) {
        block.visit_weights(bw, [&](const std::string& name, auto&& t, const auto& shape) {
          f(prefix + name, t, shape);
        });
      });
    }
    norm_.visit_weights(w.norm, [&](const char* name, auto&& t, const auto& shape) {
      f(std::string("norm.") + name, t, shape);
    });
    unembedding_.visit_weights(w.unembedding, [&](const char* name, auto&& t, const auto& shape) {
      f(std::string("unembedding.") + name, t, shape);
    });
  }
  template <class F>
  void visit_weights(F&& f) const { visit_weights(weights_, std::forward<F>(f)); }

  /// A fresh sequence with empty caches: sliding layers get a ring of the
  /// window, full layers grow up to max_context tokens.
  Sequence new_sequence(index_t max_context = kDefaultMaxContext) const {
    if (max_context <= 0) throw RangeError("max_context must be positive");
    std::vector<LayerKVCache> caches;
    for (int l = 0; l < dims_.num_layers; ++l) {
      index_t window = 0, sinks = 0;
      with_layer(weights_, l, [&](const auto& block, const auto&) {
        window = block.window();
        sinks = block.sink_tokens();
      });
      caches.emplace_back(dims_.num_kv_heads, dims_.head_dim, window, max_context, sinks);
    }
    return Sequence(std::move(caches), max_context);
  }

  /// Feeds `tokens` to `seq` (a prefill when seq is empty, a decode step for
  /// one token) and returns their logits (T, V). `observe` (model/observer.hpp)
  /// gets the residual streams, routing and attention maps it asks for; the
  /// default NoObserver asks for nothing and adds nothing.
  template <class Observer = NoObserver>
  Tensor<float, 2> forward(Sequence& seq, std::span<const std::int32_t> tokens,
                           Observer&& observe = {}) const {
    const index_t t_count = static_cast<index_t>(tokens.size());
    const Tensor<float, 2> x = final_hidden(seq, tokens, observe);  // (T, H)
    Tensor<float, 2> logits({t_count, dims_.vocab});                 // (T, V)
    unembedding_.forward(weights_.unembedding, x.view(), logits.view());
    return logits;
  }

  /// As forward(seq, tokens), but only the last token's logits (1, V): what
  /// generation needs, without the unembedding of every prompt token.
  template <class Observer = NoObserver>
  Tensor<float, 2> forward_last(Sequence& seq, std::span<const std::int32_t> tokens,
                                Observer&& observe = {}) const {
    const Tensor<float, 2> x = final_hidden(seq, tokens, observe);  // (T, H)
    const index_t t_count = x.extent(0);
    Tensor<float, 2> logits({1, dims_.vocab});  // (1, V)
    unembedding_.forward(weights_.unembedding, x.view().slice(t_count - 1, t_count), logits.view());
    return logits;
  }

  /// Logits (T, V) of a whole prompt with no earlier context.
  template <class Observer = NoObserver>
  Tensor<float, 2> forward(std::span<const std::int32_t> tokens, Observer&& observe = {}) const {
    Sequence seq = new_sequence(std::max<index_t>(1, static_cast<index_t>(tokens.size())));
    return forward(seq, tokens, std::forward<Observer>(observe));
  }

 private:
  /// Throws Error unless every layer's cache in `seq` has the shape
  /// new_sequence gives this model: a sequence made by a model with another
  /// window, sink count or KV shape would be read wrongly, not failed.
  void check_sequence(const Sequence& seq) const {
    if (seq.num_layers() != static_cast<std::size_t>(dims_.num_layers)) {
      throw Error("forward: the sequence was made for a model with " +
                  std::to_string(seq.num_layers()) + " layers, this one has " +
                  std::to_string(dims_.num_layers));
    }
    for (int l = 0; l < dims_.num_layers; ++l) {
      const LayerKVCache& cache = seq.cache(static_cast<std::size_t>(l));
      with_layer(weights_, l, [&](const auto& block, const auto&) {
        if (cache.window() != block.window() || cache.sink_tokens() != block.sink_tokens() ||
            cache.num_kv_heads() != dims_.num_kv_heads || cache.head_dim() != dims_.head_dim) {
          const auto shape = [](index_t window, index_t sinks, index_t heads, index_t dim) {
            return "window " + std::to_string(window) + ", " + std::to_string(sinks) + " sink tokens, " +
                   std::to_string(heads) + " KV heads of " + std::to_string(dim);
          };
          throw Error("forward: the sequence's layer " + std::to_string(l) + " cache has " +
                      shape(cache.window(), cache.sink_tokens(), cache.num_kv_heads(), cache.head_dim()) +
                      "; this model's layer " + std::to_string(l) + " needs " +
                      shape(block.window(), block.sink_tokens(), dims_.num_kv_heads, dims_.head_dim) +
                      " (make the sequence with this model's new_sequence)");
        }
      });
    }
  }

  /// Runs every block on `tokens` (continuing `seq`) and the final norm: (T, H).
  template <class Observer>
  Tensor<float, 2> final_hidden(Sequence& seq, std::span<const std::int32_t> tokens,
                                Observer& observe) const {
    const index_t t_count = static_cast<index_t>(tokens.size());
    if (t_count == 0) throw RangeError("forward: empty token list");
    check_sequence(seq);
    if (!seq.bounded() && seq.length() + t_count > seq.max_context()) {
      throw RangeError("context overflow: " + std::to_string(seq.length()) + " tokens held + " +
                       std::to_string(t_count) + " new exceed the context limit of " +
                       std::to_string(seq.max_context()));
    }
    check_token_ids(tokens, dims_.vocab);
    Tensor<float, 2> x({t_count, dims_.hidden});  // (T, H) residual stream
    embedding_.forward(weights_.embedding, tokens, x.view());
    const index_t first = seq.length();
    for (int l = 0; l < dims_.num_layers; ++l) {
      with_layer(weights_, l, [&](const auto& block, const auto& bw) {
        block.forward(bw, x.view(), seq.cache(static_cast<std::size_t>(l)), first, l, observe);
      });
    }
    seq.advance(t_count);
    norm_.forward(weights_.norm, x.view(), x.view());
    return x;
  }

  static ModelDims checked(const ModelDims& dims) {
    validate(dims);
    if constexpr (kFixedDims) {
      if (!(dims == Cfg::value)) {
        throw ConfigError("Transformer: the dims differ from the fixed config type's");
      }
    }
    return dims;
  }

  template <std::size_t... I>
  void build_blocks(std::index_sequence<I...>) {
    (build_slot<I>(), ...);
  }
  template <std::size_t I>
  void build_slot() {
    for (int l = static_cast<int>(I); l < dims_.num_layers; l += static_cast<int>(kPeriod)) {
      std::get<I>(blocks_).emplace_back(dims_);
    }
  }

  void resize_weights(Weights& w) const {
    resize_each(w, std::index_sequence_for<Blocks...>{});
  }
  template <std::size_t... I>
  void resize_each(Weights& w, std::index_sequence<I...>) const {
    ((std::get<I>(w.blocks).resize(std::get<I>(blocks_).size())), ...);
  }

  /// Calls f(block, block weights) for layer l.
  template <class W, class F>
  void with_layer(W& w, int l, F&& f) const {
    with_layer_impl(w, l, f, std::index_sequence_for<Blocks...>{});
  }
  template <class W, class F, std::size_t... I>
  void with_layer_impl(W& w, int l, F& f, std::index_sequence<I...>) const {
    const std::size_t slot = static_cast<std::size_t>(l) % kPeriod;
    const std::size_t index = static_cast<std::size_t>(l) / kPeriod;
    ((slot == I ? (f(std::get<I>(blocks_)[index], std::get<I>(w.blocks)[index]), 0) : 0), ...);
  }

  ModelDims dims_;
  Embedding<Backend> embedding_;
  std::tuple<std::vector<Blocks>...> blocks_;  // layer l: get<l % P>(blocks_)[l / P]
  RMSNorm<Backend> norm_;
  Unembedding<Backend> unembedding_;
  Weights weights_;
  std::vector<std::shared_ptr<const void>> owners_;
};

}  // namespace gptoss
