// DecoderBlock: one transformer layer, an attention block followed by a
// feed-forward block, each with its own pre-norm and residual. The two parts
// are template parameters, so a block of another kind (a dense MLP, another
// attention policy) composes without touching this header. An observer
// (model/observer.hpp) sees what it asks for; the default sees nothing and
// adds nothing.
#pragma once

#include <string>
#include <type_traits>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"
#include "gptoss/model/kv_cache.hpp"
#include "gptoss/model/observer.hpp"

namespace gptoss {

template <class Attention, class FeedForward>
class DecoderBlock {
 public:
  using attention_type = Attention;
  using feed_forward_type = FeedForward;

  struct Weights {
    typename Attention::Weights attn;  // block.{i}.attn.*
    typename FeedForward::Weights mlp; // block.{i}.mlp.*
  };

  /// Each part is built from its own Params, derived from the model's dims.
  explicit DecoderBlock(const ModelDims& d)
      : attn_(Attention::Params::from(d)), mlp_(FeedForward::Params::from(d)) {}

  const Attention& attention() const noexcept { return attn_; }
  const FeedForward& feed_forward() const noexcept { return mlp_; }
  /// The attention's window (0 for full attention): sizes this layer's cache.
  index_t window() const noexcept { return attn_.window(); }
  /// Tokens the attention keeps visible for ever (StreamingLLM sinks; 0 for gpt-oss).
  index_t sink_tokens() const noexcept {
    if constexpr (requires { attn_.sink_tokens(); }) return attn_.sink_tokens();
    return 0;
  }

  /// Calls f(name, tensor, shape) for every weight, names prefixed "attn." / "mlp.".
  template <class W, class F>
  void visit_weights(W& w, F&& f) const {
    attn_.visit_weights(w.attn, [&](const char* name, auto&& t, const auto& shape) {
      f(std::string("attn.") + name, t, shape);
    });
    mlp_.visit_weights(w.mlp, [&](const char* name, auto&& t, const auto& shape) {
      f(std::string("mlp.") + name, t, shape);
    });
  }

  /// Whether the feed-forward part reports MoE routing decisions.
  static constexpr bool kRoutes =
      requires(const FeedForward& f, const typename FeedForward::Weights& w, MatrixView<float> x,
               MoERouting* r) { f.forward(w, x, x, r); };

  /// x (T, H) in place: x = x + attn(x), then x = x + mlp(x). `observe` is
  /// given what it asks for (model/observer.hpp); with NoObserver this is
  /// exactly the two calls.
  template <class Observer>
  void forward(const Weights& w, MatrixView<float> x, LayerKVCache& cache, index_t first_position,
               int layer, Observer&& observe) const {
    using O = std::remove_cvref_t<Observer>;
    if constexpr (ObservesResidual<O>) notify_residual(observe, layer, BlockStage::input, x);
    if constexpr (ObservesAttention<O> && ProvidesAttentionMaps<Attention>) {
      // Before the step: the cache still holds exactly the earlier keys.
      const std::vector<index_t> heads = observe.attention_heads(layer);
      if (!heads.empty()) {
        observe.attention(layer, attention_probabilities(attn_, w.attn, MatrixView<const float>(x),
                                                         first_position, heads, &cache));
      }
    }
    attn_.forward(w.attn, x, x, cache, first_position);
    if constexpr (ObservesResidual<O>) notify_residual(observe, layer, BlockStage::attention_out, x);
    if constexpr (ObservesRouting<O> && kRoutes) {
      MoERouting routing;
      mlp_.forward(w.mlp, x, x, &routing);
      observe.routing(layer, routing);
    } else {
      mlp_.forward(w.mlp, x, x);
    }
    if constexpr (ObservesResidual<O>) notify_residual(observe, layer, BlockStage::mlp_out, x);
  }

 private:
  Attention attn_;
  FeedForward mlp_;
};

}  // namespace gptoss
