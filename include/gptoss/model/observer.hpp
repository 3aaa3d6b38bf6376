// Observers: how a caller looks inside a forward pass. An observer is any
// object passed to Transformer::forward (or DecoderBlock::forward); the
// block calls only the hooks it provides, each behind `if constexpr`, so a
// hook that is absent costs nothing, and the default NoObserver compiles to
// the plain forward pass. The hooks:
//
//   o.residual(layer, stage, x)         residual stream x (T, H) at the block's
//                                       input, after attention, after the MLP
//                                       (a plain callable o(layer, stage, x) works too)
//   o.routing(layer, routing)           router logits (T, E), chosen experts and
//                                       their weights (T, k), for MoE blocks
//   o.attention_heads(layer) -> heads   query heads whose attention maps to
//                                       compute for this layer (empty: none)
//   o.attention(layer, probabilities)   those maps (AttentionProbabilities)
//
// Attention maps are recomputed in a separate float64 pass from the layer's
// q and k (layers/attention_probabilities.hpp), only for the layers and heads
// asked for; residuals and routing are what the pass computes anyway.
#pragma once

#include <concepts>
#include <vector>

#include "gptoss/core/tensor_view.hpp"
#include "gptoss/layers/attention_probabilities.hpp"
#include "gptoss/layers/moe_block.hpp"

namespace gptoss {

/// Where in a block the residual stream is observed.
enum class BlockStage {
  input,          // the block's input (the previous block's mlp_out, or the embeddings)
  attention_out,  // after x + attn(x)
  mlp_out,        // after x + mlp(x): the next block's input
};

/// "input", "attn_out", "mlp_out": the stage's suffix in dump tensor names.
constexpr const char* stage_name(BlockStage s) noexcept {
  switch (s) {
    case BlockStage::input: return "input";
    case BlockStage::attention_out: return "attn_out";
    case BlockStage::mlp_out: return "mlp_out";
  }
  return "?";
}

/// The default observer: asks for nothing, so nothing extra runs.
struct NoObserver {};

template <class O>
concept ObservesResidual =
    requires(O& o, int layer, BlockStage s, MatrixView<const float> x) { o.residual(layer, s, x); } ||
    std::invocable<O&, int, BlockStage, MatrixView<const float>>;

template <class O>
concept ObservesRouting = requires(O& o, int layer, const MoERouting& r) { o.routing(layer, r); };

template <class O>
concept ObservesAttention = requires(O& o, int layer, const AttentionProbabilities& a) {
  { o.attention_heads(layer) } -> std::convertible_to<std::vector<index_t>>;
  o.attention(layer, a);
};

/// Calls o's residual hook (member or call operator).
template <ObservesResidual O>
void notify_residual(O& o, int layer, BlockStage stage, MatrixView<const float> x) {
  if constexpr (requires { o.residual(layer, stage, x); }) {
    o.residual(layer, stage, x);
  } else {
    o(layer, stage, x);
  }
}

}  // namespace gptoss
