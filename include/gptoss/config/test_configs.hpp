// Small configs for tests and examples. They keep the gpt-oss structure
// (GQA, sinks, alternating windows, YaRN, top-k MoE) at sizes a unit test can
// recompute in float64.
#pragma once

#include "gptoss/config/model_dims.hpp"

namespace gptoss {

/// The bundled reference checkpoints `tiny` / `tiny_long` (window 8 / 16).
struct GoldenTiny {
  static constexpr ModelDims value{.num_layers = 4, .num_experts = 8, .experts_per_token = 4,
                                   .vocab = 1024, .hidden = 256, .intermediate = 256,
                                   .head_dim = 64, .num_heads = 8, .num_kv_heads = 2,
                                   .sliding_window = 8};
};

/// 2 layers, 4 experts (top-2), hidden 64, 4 query / 2 KV heads of 16, window 4, vocab 64.
struct TinyMoE {
  static constexpr ModelDims value{.num_layers = 2, .num_experts = 4, .experts_per_token = 2,
                                   .vocab = 64, .hidden = 64, .intermediate = 64,
                                   .head_dim = 16, .num_heads = 4, .num_kv_heads = 2,
                                   .sliding_window = 4};
};

/// TinyMoE with a single expert and top-1: the MoE reduces to a dense SwiGLU MLP.
struct TinyTop1 {
  static constexpr ModelDims value{.num_layers = 2, .num_experts = 1, .experts_per_token = 1,
                                   .vocab = 64, .hidden = 64, .intermediate = 64,
                                   .head_dim = 16, .num_heads = 4, .num_kv_heads = 2,
                                   .sliding_window = 4};
};

static_assert(FixedModelConfig<GoldenTiny> && FixedModelConfig<TinyMoE> &&
              FixedModelConfig<TinyTop1>);

}  // namespace gptoss
