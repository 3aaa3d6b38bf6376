// Opt-in 8-bit attention projections and unembedding for a loaded model:
// quantize_dense_int8(model) makes an 8-bit copy (int8_matrix.hpp) of every
// attention block's q, k, v and out matrices and of the unembedding, once,
// on all threads, and points the layers at them; the bf16 weights stay bound
// (checkpoint writing and the CUDA path use them). A decode step then reads
// 1.125 instead of 2 bytes per weight of these matrices (gpt-oss-20b:
// 1.06 GB less per token). The products run in fp32 on the decoded 8-bit
// weights, so the only error is the quantization's (see docs/performance.md
// for what it costs end to end). Embedding rows stay bf16 (one row per token).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gptoss/core/thread_pool.hpp"
#include "gptoss/formats/int8_matrix.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"

namespace gptoss {

/// What quantize_dense_int8 did.
struct DenseInt8Report {
  std::size_t matrices = 0;
  std::size_t int8_bytes = 0;   // values and scales made
  std::size_t bf16_bytes = 0;   // of the bf16 matrices they replace in products
  std::size_t unembedding_int8_bytes = 0;  // of the two totals, the unembedding's
  std::size_t unembedding_bf16_bytes = 0;
};

namespace detail {
/// Quantizes `source` into a new matrix owned by `store`, rows split over the pool.
inline Int8MatrixView quantize_into(std::vector<std::unique_ptr<Int8Matrix>>& store, MatrixView<const bf16> source,
                                    const std::string& what, DenseInt8Report& report) {
  auto& m = store.emplace_back(std::make_unique<Int8Matrix>(source.extent(0), source.extent(1)));
  thread_pool().parallel_for(0, source.extent(0), 64, [&](std::int64_t r0, std::int64_t r1) {
    quantize_int8_rows(source, *m, r0, r1, what);
  });
  ++report.matrices;
  report.int8_bytes += m->bytes();
  report.bf16_bytes += static_cast<std::size_t>(source.size()) * sizeof(bf16);
  return m->view();
}
}  // namespace detail

/// Binds 8-bit copies of the attention projections and the unembedding of
/// `model` (any Transformer whose blocks carry AttentionWeights as `attn`);
/// the copies live as long as the model. Calling it again re-quantizes from
/// the bf16 weights. A non-finite weight is a RangeError naming the tensor.
template <class Model>
DenseInt8Report quantize_dense_int8(Model& model) {
  auto store = std::make_shared<std::vector<std::unique_ptr<Int8Matrix>>>();
  DenseInt8Report report;
  auto& w = model.mutable_weights();
  // Layer l of block type I is entry l / P of get<I>(w.blocks); names follow
  // the checkpoint (block.{l}.attn.qkv.weight holds q, k and v).
  constexpr std::size_t period = std::tuple_size_v<std::remove_cvref_t<decltype(w.blocks)>>;
  auto each_type = [&]<std::size_t I>(std::integral_constant<std::size_t, I>) {
    auto& layers = std::get<I>(w.blocks);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      auto& bw = layers[i];
      if constexpr (requires { bw.attn.int8; }) {
        const std::string prefix = "block." + std::to_string(i * period + I) + ".attn.";
        auto& a = bw.attn;
        a.int8.q = detail::quantize_into(*store, a.q_weight, prefix + "qkv.weight (q rows)", report);
        a.int8.k = detail::quantize_into(*store, a.k_weight, prefix + "qkv.weight (k rows)", report);
        a.int8.v = detail::quantize_into(*store, a.v_weight, prefix + "qkv.weight (v rows)", report);
        a.int8.out = detail::quantize_into(*store, a.out_weight, prefix + "out.weight", report);
      }
    }
  };
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (each_type(std::integral_constant<std::size_t, I>{}), ...);
  }(std::make_index_sequence<period>{});
  const DenseInt8Report attention_part = report;
  w.unembedding.int8 = detail::quantize_into(*store, w.unembedding.weight, "unembedding.weight", report);
  report.unembedding_int8_bytes = report.int8_bytes - attention_part.int8_bytes;
  report.unembedding_bf16_bytes = report.bf16_bytes - attention_part.bf16_bytes;
  model.keep_alive(store);
  return report;
}

/// Unbinds the 8-bit copies: the layers multiply by the bf16 weights again.
template <class Model>
void clear_dense_int8(Model& model) {
  auto& w = model.mutable_weights();
  std::apply([](auto&... layers) {
    auto clear = [](auto& v) {
      for (auto& bw : v) {
        if constexpr (requires { bw.attn.int8; }) bw.attn.int8 = {};
      }
    };
    (clear(layers), ...);
  }, w.blocks);
  w.unembedding.int8 = {};
}

}  // namespace gptoss
