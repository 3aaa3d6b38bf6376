// IntrospectionRecorder: a ready-made observer (model/observer.hpp) that
// keeps what it is asked for, for chosen layers and heads, over any number of
// forward calls of one sequence (a prefill, then decode steps), and writes it
// as safetensors. Tensor names (l = layer, T = tokens recorded, H' = heads):
//
//   residual.safetensors   block.{l}.input, block.{l}.attn_out, block.{l}.mlp_out   F32 (T, hidden)
//   router.safetensors     block.{l}.router_logits  F32 (T, E)
//                          block.{l}.expert_indices I32 (T, k), block.{l}.expert_weights F32 (T, k)
//   attention.safetensors  block.{l}.attn_probs F32 (H', T, P)   query token x key position
//                          block.{l}.attn_sink  F32 (H', T)      the sink's share of each softmax
//                          block.{l}.attn_heads I32 (H')         which query heads
//                          query_positions      I64 (T)
//
// The attention key axis covers positions 0 .. P-1 (P: one past the last
// query position), with 0 for keys a query does not see (later tokens, or
// outside a sliding window): row t of a map plus its sink entry sums to 1.
// Names match the reference's golden files where they overlap (attn_out,
// mlp_out, router_logits, expert_indices, expert_weights).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/io/safetensors.hpp"
#include "gptoss/layers/attention_probabilities.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/model/observer.hpp"

namespace gptoss {

/// What an IntrospectionRecorder keeps.
struct IntrospectionRequest {
  bool residual = true;
  bool routing = true;
  bool attention = true;
  std::vector<int> layers;      // empty: every layer
  std::vector<index_t> heads;   // query heads for attention maps; empty: every head
};

class IntrospectionRecorder {
 public:
  /// Recorded tensors of one layer, rows in call order.
  struct Layer {
    index_t hidden = 0, experts = 0, top_k = 0;
    std::vector<float> input, attn_out, mlp_out;  // (T, hidden) each
    std::vector<float> router_logits;             // (T, E)
    std::vector<std::int32_t> expert_indices;     // (T, k)
    std::vector<float> expert_weights;            // (T, k)
    std::vector<AttentionProbabilities> attention;  // one per call
  };

  /// `num_heads`: the model's query heads (for "every head" and range checks).
  IntrospectionRecorder(IntrospectionRequest request, int num_layers, index_t num_heads)
      : request_(std::move(request)) {
    for (int l : request_.layers) {
      if (l < 0 || l >= num_layers) {
        throw RangeError("introspection: layer " + std::to_string(l) + " is outside [0, " +
                         std::to_string(num_layers) + ")");
      }
    }
    for (index_t h : request_.heads) {
      if (h < 0 || h >= num_heads) {
        throw RangeError("introspection: head " + std::to_string(h) + " is outside [0, " +
                         std::to_string(num_heads) + ")");
      }
    }
    if (request_.layers.empty()) {
      request_.layers.resize(static_cast<std::size_t>(num_layers));
      std::iota(request_.layers.begin(), request_.layers.end(), 0);
    }
    if (request_.heads.empty()) {
      request_.heads.resize(static_cast<std::size_t>(num_heads));
      std::iota(request_.heads.begin(), request_.heads.end(), index_t{0});
    }
  }

  const IntrospectionRequest& request() const noexcept { return request_; }
  bool wants(int layer) const {
    return std::find(request_.layers.begin(), request_.layers.end(), layer) != request_.layers.end();
  }
  /// Recorded layers, by index.
  const std::map<int, Layer>& layers() const noexcept { return layers_; }
  const Layer& layer(int l) const {
    const auto it = layers_.find(l);
    if (it == layers_.end()) throw RangeError("introspection: nothing recorded for layer " + std::to_string(l));
    return it->second;
  }

  // ---- observer hooks ----
  void residual(int layer, BlockStage stage, MatrixView<const float> x) {
    if (!request_.residual || !wants(layer)) return;
    Layer& r = layers_[layer];
    r.hidden = x.extent(1);
    auto& rows = stage == BlockStage::input           ? r.input
                 : stage == BlockStage::attention_out ? r.attn_out
                                                      : r.mlp_out;
    rows.insert(rows.end(), x.data(), x.data() + x.size());
  }
  void routing(int layer, const MoERouting& routing) {
    if (!request_.routing || !wants(layer)) return;
    Layer& r = layers_[layer];
    r.experts = routing.logits.extent(1);
    r.top_k = routing.indices.extent(1);
    append(r.router_logits, routing.logits.storage());
    append(r.expert_indices, routing.indices.storage());
    append(r.expert_weights, routing.weights.storage());
  }
  std::vector<index_t> attention_heads(int layer) const {
    return request_.attention && wants(layer) ? request_.heads : std::vector<index_t>{};
  }
  void attention(int layer, const AttentionProbabilities& a) { layers_[layer].attention.push_back(a); }

  // ---- assembled maps ----
  /// Layer l's maps of every recorded call on one key axis of positions
  /// [0, P): probs (H', T, P) and sink (H', T); query_positions (T).
  struct AttentionDump {
    std::vector<index_t> heads;
    std::vector<index_t> query_positions;  // (T)
    Tensor<float, 3> probs;                // (H', T, P)
    Tensor<float, 2> sink;                 // (H', T)
  };
  AttentionDump attention_dump(int l) const {
    const Layer& r = layer(l);
    AttentionDump d;
    if (r.attention.empty()) return d;
    d.heads = r.attention.front().heads;
    index_t positions = 0;
    for (const auto& a : r.attention) {
      for (index_t t = 0; t < a.query_positions.extent(0); ++t) {
        d.query_positions.push_back(a.query_positions(t));
        positions = std::max(positions, a.query_positions(t) + 1);
      }
    }
    const index_t h_count = static_cast<index_t>(d.heads.size());
    const index_t t_count = static_cast<index_t>(d.query_positions.size());
    d.probs = Tensor<float, 3>({h_count, t_count, positions});
    d.sink = Tensor<float, 2>({h_count, t_count});
    index_t row = 0;
    for (const auto& a : r.attention) {
      for (index_t i = 0; i < h_count; ++i) {
        for (index_t t = 0; t < a.query_positions.extent(0); ++t) {
          d.sink(i, row + t) = a.sink(i, t);
          for (index_t j = 0; j < a.key_positions.extent(0); ++j) {
            const index_t kp = a.key_positions(j);
            if (kp < 0 || kp >= positions) {
              throw RangeError("introspection: key position " + std::to_string(kp) +
                               " is outside the recorded positions [0, " + std::to_string(positions) + ")");
            }
            d.probs(i, row + t, kp) = a.probs(i, t, j);
          }
        }
      }
      row += a.query_positions.extent(0);
    }
    return d;
  }

  /// Writes residual.safetensors, router.safetensors and attention.safetensors
  /// (those asked for) into `dir`, which is created if needed; returns the
  /// files written.
  std::vector<std::filesystem::path> write(const std::filesystem::path& dir,
                                           const std::map<std::string, std::string>& metadata = {}) const {
    std::filesystem::create_directories(dir);
    std::vector<std::filesystem::path> written;
    const auto save = [&](const char* file, const std::vector<io::TensorRecord>& records) {
      if (records.empty()) return;
      io::write_safetensors(dir / file, records, metadata);
      written.push_back(dir / file);
    };
    std::vector<io::TensorRecord> residual, router, attention;
    std::vector<AttentionDump> dumps;  // keeps the assembled maps alive while writing
    std::vector<std::vector<std::int32_t>> head_lists;
    std::vector<index_t> query_positions;
    dumps.reserve(layers_.size());
    head_lists.reserve(layers_.size());
    for (const auto& [l, r] : layers_) {
      const std::string prefix = "block." + std::to_string(l) + ".";
      if (request_.residual) {
        for (const auto& [stage, rows] : {std::pair{BlockStage::input, &r.input},
                                          std::pair{BlockStage::attention_out, &r.attn_out},
                                          std::pair{BlockStage::mlp_out, &r.mlp_out}}) {
          if (rows->empty()) continue;
          residual.push_back(io::TensorRecord::of<float>(prefix + stage_name(stage),
                                                         {rows_of(*rows, r.hidden), r.hidden}, *rows));
        }
      }
      if (request_.routing && !r.router_logits.empty()) {
        const index_t t_count = rows_of(r.router_logits, r.experts);
        router.push_back(io::TensorRecord::of<float>(prefix + "router_logits", {t_count, r.experts}, r.router_logits));
        router.push_back(io::TensorRecord::of<std::int32_t>(prefix + "expert_indices", {t_count, r.top_k}, r.expert_indices));
        router.push_back(io::TensorRecord::of<float>(prefix + "expert_weights", {t_count, r.top_k}, r.expert_weights));
      }
      if (request_.attention && !r.attention.empty()) {
        AttentionDump& d = dumps.emplace_back(attention_dump(l));
        auto& heads = head_lists.emplace_back(d.heads.begin(), d.heads.end());
        attention.push_back(io::TensorRecord::of<float>(prefix + "attn_probs",
                                                        {d.probs.shape().begin(), d.probs.shape().end()},
                                                        std::span<const float>(d.probs.storage())));
        attention.push_back(io::TensorRecord::of<float>(prefix + "attn_sink",
                                                        {d.sink.shape().begin(), d.sink.shape().end()},
                                                        std::span<const float>(d.sink.storage())));
        attention.push_back(io::TensorRecord::of<std::int32_t>(prefix + "attn_heads",
                                                               {static_cast<index_t>(heads.size())},
                                                               std::span<const std::int32_t>(heads)));
        if (query_positions.empty()) query_positions = d.query_positions;
      }
    }
    if (!attention.empty()) {
      attention.push_back(io::TensorRecord::of<index_t>("query_positions",
                                                        {static_cast<index_t>(query_positions.size())},
                                                        std::span<const index_t>(query_positions)));
    }
    save("residual.safetensors", residual);
    save("router.safetensors", router);
    save("attention.safetensors", attention);
    return written;
  }

 private:
  template <class T>
  static void append(std::vector<T>& to, const std::vector<T>& from) {
    to.insert(to.end(), from.begin(), from.end());
  }
  static index_t rows_of(const std::vector<float>& v, index_t cols) {
    return cols > 0 ? static_cast<index_t>(v.size()) / cols : 0;
  }

  IntrospectionRequest request_;
  std::map<int, Layer> layers_;
};

}  // namespace gptoss
