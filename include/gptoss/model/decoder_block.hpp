// DecoderBlock: one transformer layer, an attention block followed by a
// feed-forward block, each with its own pre-norm and residual. The two parts
// are template parameters, so a block of another kind (a dense MLP, another
// attention policy) composes without touching this header.
#pragma once

#include <string>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"
#include "gptoss/model/kv_cache.hpp"

namespace gptoss {

/// Where in a block an observer is called.
enum class BlockStage {
  attention_out,  // residual stream after x + attn(x)
  mlp_out,        // residual stream after x + mlp(x): the next block's input
};

/// The default observer: does nothing and costs nothing.
struct NoObserver {
  constexpr void operator()(int /*layer*/, BlockStage, MatrixView<const float>) const noexcept {}
};

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

  /// x (T, H) in place: x = x + attn(x), then x = x + mlp(x).
  template <class Observer>
  void forward(const Weights& w, MatrixView<float> x, LayerKVCache& cache, index_t first_position,
               int layer, Observer&& observe) const {
    attn_.forward(w.attn, x, x, cache, first_position);
    observe(layer, BlockStage::attention_out, MatrixView<const float>(x));
    mlp_.forward(w.mlp, x, x);
    observe(layer, BlockStage::mlp_out, MatrixView<const float>(x));
  }

 private:
  Attention attn_;
  FeedForward mlp_;
};

}  // namespace gptoss
