// The gpt-oss forward pass as its layers called one by one (embedding; per
// layer, attention with its KV cache, then the MoE; final norm; unembedding),
// with no DecoderBlock, Transformer or observer in between: the baseline that
// the introspection test compares the model's logits with bit for bit and
// that bench_introspection times the model against.
#pragma once

#include <cstdint>
#include <span>
#include <tuple>

#include "gptoss/gptoss.hpp"

namespace gptoss::test {

/// Layers of a GptOssBlocks model with the given backend, built from its dims.
template <class Backend>
class PlainForward {
 public:
  explicit PlainForward(const ModelDims& d)
      : embedding_(d.vocab, d.hidden), slide_(AttentionParams::from(d)), full_(AttentionParams::from(d)),
        moe_(MoEParams::from(d)), norm_(d.hidden, d.rms_eps), unembedding_(d.vocab, d.hidden) {}

  /// Logits (T, V) of tokens (a prefill from position 0) with model's weights.
  template <class Model>
  Tensor<float, 2> operator()(const Model& model, std::span<const std::int32_t> tokens) const {
    const ModelDims& d = model.dims();
    const auto& w = model.weights();
    const index_t t_count = static_cast<index_t>(tokens.size());
    Sequence seq = model.new_sequence(t_count);
    Tensor<float, 2> x({t_count, d.hidden});  // (T, H)
    embedding_.forward(w.embedding, tokens, x.view());
    for (int l = 0; l < d.num_layers; ++l) {
      const auto i = static_cast<std::size_t>(l / 2);
      LayerKVCache& cache = seq.cache(static_cast<std::size_t>(l));
      if (l % 2 == 0) {
        slide_.forward(std::get<0>(w.blocks)[i].attn, x.view(), x.view(), cache, 0);
        moe_.forward(std::get<0>(w.blocks)[i].mlp, x.view(), x.view());
      } else {
        full_.forward(std::get<1>(w.blocks)[i].attn, x.view(), x.view(), cache, 0);
        moe_.forward(std::get<1>(w.blocks)[i].mlp, x.view(), x.view());
      }
    }
    norm_.forward(w.norm, x.view(), x.view());
    Tensor<float, 2> logits({t_count, d.vocab});  // (T, V)
    unembedding_.forward(w.unembedding, x.view(), logits.view());
    return logits;
  }

 private:
  Embedding<Backend> embedding_;
  SlidingSinkAttention<AttentionSpan::sliding, Backend> slide_;
  SlidingSinkAttention<AttentionSpan::full, Backend> full_;
  MoEBlock<FP4TensorView<MXFP4Checkpoint>, Backend> moe_;
  RMSNorm<Backend> norm_;
  Unembedding<Backend> unembedding_;
};

}  // namespace gptoss::test
