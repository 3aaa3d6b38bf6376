// Checkpoint layouts: how a model's weights are named and split on disk.
//
// Weights are visited under the original gpt-oss names ("block.3.attn.qkv.weight",
// "block.3.mlp.mlp1_weight", ...). A layout maps each to the stored tensor(s):
//   original      the names themselves; MXFP4 as NAME.blocks / NAME.scales;
//                 the merged QKV projection as one tensor.
//   hugging_face  the transformers names ("model.layers.3.self_attn.q_proj.weight",
//                 "model.layers.3.mlp.experts.gate_up_proj_blocks", "lm_head.weight");
//                 MXFP4 as NAME_blocks / NAME_scales; Q, K and V as three tensors.
// NVFP4 experts add NAME.global_scale (original) / NAME_global_scale (HF).
// RowSplit is the slot type for one logical tensor whose rows several views
// share (Q, K, V of the merged projection): a layout either stores it whole
// or stores each part.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "gptoss/core/tensor_view.hpp"

namespace gptoss {

/// Views that share the rows of one logical tensor, in order. Ptr is
/// `View*` when binding and `const View*` when reading.
template <class Ptr, std::size_t N>
struct RowSplit {
  std::array<Ptr, N> parts;
  std::array<index_t, N> rows;  // rows of each part
  std::array<const char*, N> part_names;  // suffixes a layout may store them under
};

enum class CheckpointLayout { original, hugging_face };

inline const char* layout_name(CheckpointLayout layout) {
  return layout == CheckpointLayout::original ? "original" : "hugging_face";
}

namespace detail {

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

/// "block.12.attn.qkv.weight" -> {12, "attn.qkv.weight"}.
inline std::optional<std::pair<int, std::string>> split_block_name(const std::string& name) {
  if (!starts_with(name, "block.")) return std::nullopt;
  const std::size_t dot = name.find('.', 6);
  if (dot == std::string::npos || dot == 6) return std::nullopt;
  int layer = 0;
  for (std::size_t i = 6; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    layer = layer * 10 + (name[i] - '0');
  }
  return std::pair{layer, name.substr(dot + 1)};
}

}  // namespace detail

/// The stored name of a plain tensor (for MXFP4 tensors: the stem before
/// the blocks/scales suffix).
inline std::string stored_name(CheckpointLayout layout, const std::string& name) {
  if (layout == CheckpointLayout::original) return name;
  if (name == "embedding.weight") return "model.embed_tokens.weight";
  if (name == "norm.scale") return "model.norm.weight";
  if (name == "unembedding.weight") return "lm_head.weight";
  if (const auto block = detail::split_block_name(name)) {
    const std::string p = "model.layers." + std::to_string(block->first) + ".";
    const std::string& rest = block->second;
    static const std::array<std::pair<const char*, const char*>, 11> kNames{{
        {"attn.norm.scale", "input_layernorm.weight"},
        {"attn.sinks", "self_attn.sinks"},
        {"attn.out.weight", "self_attn.o_proj.weight"},
        {"attn.out.bias", "self_attn.o_proj.bias"},
        {"mlp.norm.scale", "post_attention_layernorm.weight"},
        {"mlp.gate.weight", "mlp.router.weight"},
        {"mlp.gate.bias", "mlp.router.bias"},
        {"mlp.mlp1_weight", "mlp.experts.gate_up_proj"},
        {"mlp.mlp1_bias", "mlp.experts.gate_up_proj_bias"},
        {"mlp.mlp2_weight", "mlp.experts.down_proj"},
        {"mlp.mlp2_bias", "mlp.experts.down_proj_bias"},
    }};
    for (const auto& [from, to] : kNames) {
      if (rest == from) return p + to;
    }
  }
  return name;  // parts the layout does not know keep their own names
}

/// Stored names of an MXFP4 tensor's blocks and scales.
inline std::pair<std::string, std::string> stored_fp4_names(CheckpointLayout layout, const std::string& name) {
  const std::string stem = stored_name(layout, name);
  return layout == CheckpointLayout::original ? std::pair{stem + ".blocks", stem + ".scales"}
                                              : std::pair{stem + "_blocks", stem + "_scales"};
}

/// Stored name of an NVFP4 tensor's per-expert global scales (F32 (E)).
inline std::string stored_fp4_global_name(CheckpointLayout layout, const std::string& name) {
  return stored_name(layout, name) + (layout == CheckpointLayout::original ? ".global_scale" : "_global_scale");
}

/// Stored names of each part of a row-split tensor, or an empty list when
/// the layout stores it whole under stored_name().
template <std::size_t N>
std::vector<std::string> stored_split_names(CheckpointLayout layout, const std::string& name,
                                            const std::array<const char*, N>& part_names) {
  if (layout == CheckpointLayout::original) return {};
  const auto block = detail::split_block_name(name);
  if (!block || (block->second != "attn.qkv.weight" && block->second != "attn.qkv.bias")) return {};
  const std::string suffix = block->second == "attn.qkv.weight" ? ".weight" : ".bias";
  std::vector<std::string> names;
  for (const char* part : part_names) {
    names.push_back("model.layers." + std::to_string(block->first) + ".self_attn." + part + "_proj" + suffix);
  }
  return names;
}

}  // namespace gptoss
