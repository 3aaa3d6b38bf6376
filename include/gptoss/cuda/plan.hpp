// Host-side planning for the CUDA model, in plain C++ (no CUDA needed, so
// the CPU unit tests cover it): the host views of every weight the device
// model uploads, gathered from a CPU Transformer, their shape checks, the
// choice between matrix-vector and tensor-core paths, and the sizes of the
// per-step device scratch buffers.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/cuda/kernels.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"
#include "gptoss/model/transformer.hpp"

namespace gptoss::cuda {

/// How the device model multiplies.
struct ModelOptions {
  /// Use tensor cores (bf16 inputs, fp32 accumulation) for steps with many
  /// tokens; false keeps every product on fp32 CUDA cores.
  bool tensor_cores = true;
  /// Dense projections use the tensor-core GEMM from this many tokens.
  int gemm_min_tokens = 16;
  /// Experts run as a grouped GEMM (tokens sorted by expert on the device)
  /// from this many tokens; fewer tokens use one matrix-vector product per
  /// routed entry.
  int moe_gemm_min_tokens = 8;
};

/// True when a dense projection of `tokens` rows runs on tensor cores.
constexpr bool use_tensor_cores(int tokens, const ModelOptions& o) noexcept {
  return o.tensor_cores && tokens >= o.gemm_min_tokens;
}
/// True when the experts of a `tokens`-row step run as the grouped GEMM.
constexpr bool use_grouped_experts(int tokens, const ModelOptions& o) noexcept {
  return o.tensor_cores && tokens >= o.moe_gemm_min_tokens;
}

using HostExperts = FP4TensorView<MXFP4Checkpoint>;

/// One decoder layer's host weights, as the CPU model holds them.
struct HostLayer {
  bool sliding = false;
  AttentionWeights attn;
  MoEWeights<HostExperts> mlp;
};

/// Host views of a whole gpt-oss model (checkpoint names in comments).
struct HostModel {
  ModelDims dims;
  MatrixView<const bf16> embedding;    // embedding.weight   (V, H)
  std::vector<HostLayer> layers;       // block.{l}.*
  VectorView<const bf16> norm;         // norm.scale         (H)
  MatrixView<const bf16> unembedding;  // unembedding.weight (V, H)
};

/// The host views of a CPU Transformer whose blocks are sink attention +
/// MXFP4 MoE (any pattern of sliding / full layers).
template <class Cfg, class Backend, class... Blocks>
HostModel host_model(const Transformer<Cfg, Backend, BlockPattern<Blocks...>>& model) {
  constexpr std::size_t period = sizeof...(Blocks);
  const auto& w = model.weights();
  HostModel h;
  h.dims = model.dims();
  h.embedding = w.embedding.table;
  h.norm = w.norm.scale;
  h.unembedding = w.unembedding.weight;
  h.layers.resize(static_cast<std::size_t>(model.num_layers()));
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (
        [&] {
          using Block = std::tuple_element_t<I, std::tuple<Blocks...>>;
          using Attention = typename Block::attention_type;
          using FeedForward = typename Block::feed_forward_type;
          static_assert(std::is_same_v<typename Attention::Weights, AttentionWeights>,
                        "the CUDA model runs gpt-oss sink attention blocks");
          static_assert(std::is_same_v<typename FeedForward::Weights, MoEWeights<HostExperts>>,
                        "the CUDA model runs MoE blocks with MXFP4 (gpt-oss order) experts");
          const auto& slot = std::get<I>(w.blocks);
          for (std::size_t i = 0; i < slot.size(); ++i) {
            HostLayer& layer = h.layers.at(i * period + I);
            layer.sliding = Attention::kSpan == AttentionSpan::sliding;
            layer.attn = slot[i].attn;
            layer.mlp = slot[i].mlp;
          }
        }(),
        ...);
  }(std::index_sequence_for<Blocks...>{});
  return h;
}

/// Checks every view's shape against the dims; ShapeError names the tensor.
inline void check_host_model(const HostModel& h) {
  const ModelDims& d = h.dims;
  validate(d);
  const index_t v = d.vocab, hid = d.hidden, e = d.num_experts, inter = d.intermediate;
  const index_t q = static_cast<index_t>(d.head_dim) * d.num_heads;
  const index_t kv = static_cast<index_t>(d.head_dim) * d.num_kv_heads;
  require_shape(h.embedding, {v, hid}, "embedding.weight");
  require_shape(h.norm, {hid}, "norm.scale");
  require_shape(h.unembedding, {v, hid}, "unembedding.weight");
  if (h.layers.size() != static_cast<std::size_t>(d.num_layers)) {
    throw ShapeError("CUDA model: " + std::to_string(h.layers.size()) + " layers for a config of " +
                     std::to_string(d.num_layers));
  }
  for (std::size_t l = 0; l < h.layers.size(); ++l) {
    const std::string p = "block." + std::to_string(l) + ".";
    const AttentionWeights& a = h.layers[l].attn;
    require_shape(a.norm.scale, {hid}, p + "attn.norm.scale");
    require_shape(a.q_weight, {q, hid}, p + "attn.qkv.weight (q rows)");
    require_shape(a.k_weight, {kv, hid}, p + "attn.qkv.weight (k rows)");
    require_shape(a.v_weight, {kv, hid}, p + "attn.qkv.weight (v rows)");
    require_shape(a.q_bias, {q}, p + "attn.qkv.bias (q)");
    require_shape(a.k_bias, {kv}, p + "attn.qkv.bias (k)");
    require_shape(a.v_bias, {kv}, p + "attn.qkv.bias (v)");
    require_shape(a.sinks, {static_cast<index_t>(d.num_heads)}, p + "attn.sinks");
    require_shape(a.out_weight, {hid, q}, p + "attn.out.weight");
    require_shape(a.out_bias, {hid}, p + "attn.out.bias");
    const MoEWeights<HostExperts>& m = h.layers[l].mlp;
    require_shape(m.norm.scale, {hid}, p + "mlp.norm.scale");
    require_shape(m.gate_weight, {e, hid}, p + "mlp.gate.weight");
    require_shape(m.gate_bias, {e}, p + "mlp.gate.bias");
    require_shape(m.mlp1_bias, {e, 2 * inter}, p + "mlp.mlp1_bias");
    require_shape(m.mlp2_bias, {e, hid}, p + "mlp.mlp2_bias");
    const auto check_experts = [&](const std::vector<HostExperts>& x, index_t rows, index_t cols,
                                   const char* name) {
      if (static_cast<index_t>(x.size()) != e) {
        throw ShapeError(p + "mlp." + name + ": " + std::to_string(x.size()) + " experts, expected " +
                         std::to_string(e));
      }
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (x[i].rows() != rows || x[i].cols() != cols || x[i].blocks() == nullptr || x[i].scales() == nullptr) {
          throw ShapeError(p + "mlp." + name + "[" + std::to_string(i) + "]: shape " +
                           shape_string(std::array{x[i].rows(), x[i].cols()}) + ", expected " +
                           shape_string(std::array{rows, cols}));
        }
      }
    };
    check_experts(m.mlp1_weight, 2 * inter, hid, "mlp1_weight");
    check_experts(m.mlp2_weight, hid, inter, "mlp2_weight");
  }
}

/// Elements of each device scratch buffer for a step of `tokens` tokens.
struct ScratchSizes {
  std::size_t hidden = 0;     // x and normed, each (T, H)
  std::size_t qkv = 0;        // (T, D (nq + 2 nkv))
  std::size_t heads = 0;      // q and attention output, each (T, nq D)
  std::size_t router = 0;     // router logits (T, E)
  std::size_t entries = 0;    // routed entries T k: indices, weights, grouping
  std::size_t up = 0;         // (T k, 2I)
  std::size_t act = 0;        // (T k, I)
  std::size_t down = 0;       // (T k, H)
  std::size_t tiles = 0;      // expert tile table
  std::size_t logits = 0;     // (T, V)

  static ScratchSizes of(const ModelDims& d, std::size_t tokens) {
    const std::size_t t = tokens, k = static_cast<std::size_t>(d.experts_per_token);
    ScratchSizes s;
    s.hidden = t * static_cast<std::size_t>(d.hidden);
    s.qkv = t * static_cast<std::size_t>(d.qkv_dim());
    s.heads = t * static_cast<std::size_t>(d.num_heads) * static_cast<std::size_t>(d.head_dim);
    s.router = t * static_cast<std::size_t>(d.num_experts);
    s.entries = t * k;
    s.up = t * k * 2 * static_cast<std::size_t>(d.intermediate);
    s.act = t * k * static_cast<std::size_t>(d.intermediate);
    s.down = t * k * static_cast<std::size_t>(d.hidden);
    s.tiles = static_cast<std::size_t>(expert_tile_bound(static_cast<int>(s.entries), d.num_experts));
    s.logits = t * static_cast<std::size_t>(d.vocab);
    return s;
  }
};

}  // namespace gptoss::cuda
