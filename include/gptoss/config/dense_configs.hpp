// Configs of dense-MLP variants: one SwiGLU MLP per layer (DenseFFN) in place
// of the mixture of experts. Their ModelDims have one expert used by every
// token, so `intermediate` is the dense MLP's width and parameter counts
// (count_parameters) treat the whole MLP as active.
#pragma once

#include "gptoss/config/gpt_oss.hpp"
#include "gptoss/config/model_dims.hpp"

namespace gptoss {

/// "gpt-oss-20b dense", as rumoured before the release: gpt-oss-20b's
/// attention, embedding and 24 layers with one dense MLP per layer of width
/// 92160 = 32 experts x 2880, i.e. exactly the expert parameters of
/// gpt-oss-20b in one MLP, so the total stays ~20.9B (the router's weights
/// go, 31 of the 32 mlp2 bias vectors go). Every parameter is active.
struct GptOss20bDense {
  static constexpr ModelDims value = [] {
    ModelDims d = GptOss20b::value;
    d.intermediate = GptOss20b::value.num_experts * GptOss20b::value.intermediate;
    d.num_experts = 1;
    d.experts_per_token = 1;
    return d;
  }();
};

/// A dense model small enough for a float64 recomputation: 2 layers,
/// hidden 64, 4 query / 2 KV heads of 16, window 4, vocab 64, MLP width 96.
struct TinyDense {
  static constexpr ModelDims value{.num_layers = 2, .num_experts = 1, .experts_per_token = 1,
                                   .vocab = 64, .hidden = 64, .intermediate = 96,
                                   .head_dim = 16, .num_heads = 4, .num_kv_heads = 2,
                                   .sliding_window = 4};
};

static_assert(FixedModelConfig<GptOss20bDense> && FixedModelConfig<TinyDense>);
static_assert(GptOss20bDense::value.intermediate == 92160);

}  // namespace gptoss
