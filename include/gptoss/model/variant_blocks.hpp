// Block patterns of gpt-oss variants built from the library's parts:
//
// - GptOssDenseBlocks: gpt-oss's alternating sliding / full attention with a
//   dense SwiGLU MLP (DenseFFN) in place of the mixture of experts
//   (configs: GptOss20bDense, TinyDense in config/dense_configs.hpp).
// - StreamingGptOssBlocks: gpt-oss with StreamingLLM sink tokens on every
//   layer: the sliding layers keep the config's window, the full layers
//   become windows of FullWindow tokens; each keeps its first S tokens. Every
//   cache is bounded, so a sequence runs past max_context in constant memory.
//   The weights are gpt-oss's (the learned sink logits are kept).
#pragma once

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/layers/dense_ffn.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/sink_policy.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"
#include "gptoss/model/decoder_block.hpp"
#include "gptoss/model/transformer.hpp"

namespace gptoss {

/// gpt-oss's attention pattern with one dense MLP per layer.
template <class Backend = default_backend, WeightMatrix Matrix = MatrixView<const bf16>>
using GptOssDenseBlocks =
    BlockPattern<DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, Backend>, DenseFFN<Matrix, Backend>>,
                 DecoderBlock<SlidingSinkAttention<AttentionSpan::full, Backend>, DenseFFN<Matrix, Backend>>>;

/// gpt-oss with S sink tokens on every layer and the full layers windowed.
template <index_t S = 4, index_t FullWindow = 4096, class Backend = default_backend,
          class ExpertMatrix = FP4TensorView<MXFP4Checkpoint>>
using StreamingGptOssBlocks =
    BlockPattern<DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, Backend, SinkTokens<S>>,
                              MoEBlock<ExpertMatrix, Backend>>,
                 DecoderBlock<SlidingSinkAttention<AttentionSpan::sliding, Backend, SinkTokens<S, FullWindow>>,
                              MoEBlock<ExpertMatrix, Backend>>>;

}  // namespace gptoss
