// Loading and writing checkpoints in the original gpt-oss layout: a
// directory with config.json and model.safetensors, tensors named
// "embedding.weight", "block.{i}.attn.qkv.weight", ...,
// "block.{i}.mlp.mlp1_weight.blocks" / ".scales" (MXFP4), "norm.scale",
// "unembedding.weight". NVFP4 experts (config.json quantization_config
// quant_method "nvfp4") store blocks (E, R, C/16, 8) U8, scales (E, R, C/16)
// U8 holding E4M3 bytes and ".global_scale" (E) F32; the model type must
// match the format the config names (FormatError otherwise).
//
// Loading maps the file and binds the model's weight views to the mapped
// bytes: bf16 tensors and MXFP4 blocks/scales are used in place, never
// expanded to float. Every tensor's dtype and shape is checked against the
// config (FormatError naming the file and tensor); missing and unexpected
// tensors are reported together.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/io/config_json.hpp"
#include "gptoss/io/safetensors.hpp"
#include "gptoss/model/checkpoint_layout.hpp"
#include "gptoss/model/transformer.hpp"

namespace gptoss {

/// Tensors by name across one or more safetensors files.
class TensorSource {
 public:
  /// Adds a file; a tensor name present in two files is a FormatError.
  void add(std::shared_ptr<const io::SafetensorsFile> file) {
    for (const auto& t : file->tensors()) {
      auto [it, inserted] = index_.emplace(t.name, file.get());
      if (!inserted) {
        throw FormatError("tensor '" + t.name + "' appears in both '" + it->second->path().string() +
                          "' and '" + file->path().string() + "'");
      }
    }
    files_.push_back(std::move(file));
  }

  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// The file holding `name`, or nullptr.
  const io::SafetensorsFile* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, file] : index_) out.push_back(name);
    return out;
  }
  const std::vector<std::shared_ptr<const io::SafetensorsFile>>& files() const noexcept { return files_; }

 private:
  std::vector<std::shared_ptr<const io::SafetensorsFile>> files_;
  std::map<std::string, const io::SafetensorsFile*> index_;
};

namespace detail {

/// Visitor that points each weight view at its tensor in a TensorSource,
/// with names and splits as the layout stores them.
class WeightBinder {
 public:
  WeightBinder(const TensorSource& source, CheckpointLayout layout) : source_(source), layout_(layout) {}

  template <class T, std::size_t R>
  void operator()(const std::string& name, TensorView<const T, R>& view,
                  const std::array<index_t, R>& shape) {
    const std::string stored = stored_name(layout_, name);
    if (const auto* f = lookup(stored)) view = f->template view<T, R>(stored, shape);
  }

  /// A tensor whose rows several views share: stored whole, or part by part.
  template <class View, std::size_t N, std::size_t R>
  void operator()(const std::string& name, const RowSplit<View*, N>& split, const std::array<index_t, R>& shape) {
    const auto parts = stored_split_names(layout_, name, split.part_names);
    if (parts.empty()) {
      View whole;
      (*this)(name, whole, shape);
      if (whole.data() == nullptr) return;  // missing: already reported
      index_t row = 0;
      for (std::size_t i = 0; i < N; ++i) {
        *split.parts[i] = whole.slice(row, row + split.rows[i]);
        row += split.rows[i];
      }
      return;
    }
    for (std::size_t i = 0; i < N; ++i) {
      std::array<index_t, R> part_shape = shape;
      part_shape[0] = split.rows[i];
      using T = typename View::element_type;
      if (const auto* f = lookup(parts[i])) {
        *split.parts[i] = f->template view<std::remove_const_t<T>, R>(parts[i], part_shape);
      }
    }
  }

  template <class Format>
  void operator()(const std::string& name, std::vector<FP4TensorView<Format>>& experts,
                  const std::array<index_t, 3>& shape) {
    const auto [blocks_name, scales_name] = stored_fp4_names(layout_, name);
    const auto* fb = lookup(blocks_name);
    const auto* fs = lookup(scales_name);
    if (fb == nullptr || fs == nullptr) return;
    const index_t groups = shape[2] / Format::kBlockSize;
    const auto blocks = fb->template view<std::uint8_t, 4>(
        blocks_name, {shape[0], shape[1], groups, Format::kBytesPerBlock});
    const auto scales = fs->template view<std::uint8_t, 3>(scales_name, {shape[0], shape[1], groups});
    std::vector<float> global(static_cast<std::size_t>(shape[0]), 1.0f);
    if constexpr (Format::kHasGlobalScale) {
      const std::string global_name = stored_fp4_global_name(layout_, name);
      const auto* fg = lookup(global_name);
      if (fg == nullptr) return;
      const auto g = fg->template view<float, 1>(global_name, {shape[0]});
      for (index_t e = 0; e < shape[0]; ++e) {
        if (!(std::isfinite(g[e]) && g[e] > 0.0f)) {
          throw FormatError("'" + fg->path().string() + "': tensor '" + global_name + "' element " +
                            std::to_string(e) + " is " + std::to_string(g[e]) + ", not a positive finite scale");
        }
        global[static_cast<std::size_t>(e)] = g[e];
      }
    }
    experts.clear();
    for (index_t e = 0; e < shape[0]; ++e) {
      experts.push_back(FP4TensorView<Format>::from_blocks(blocks[e], scales[e], global[static_cast<std::size_t>(e)]));
    }
  }

  /// One MXFP4 matrix (a dense layer's): blocks (rows, G, 16), scales (rows, G).
  template <class Format>
  void operator()(const std::string& name, FP4TensorView<Format>& matrix, const std::array<index_t, 2>& shape) {
    const auto [blocks_name, scales_name] = stored_fp4_names(layout_, name);
    const auto* fb = lookup(blocks_name);
    const auto* fs = lookup(scales_name);
    if (fb == nullptr || fs == nullptr) return;
    const index_t groups = shape[1] / Format::kBlockSize;
    matrix = FP4TensorView<Format>::from_blocks(
        fb->template view<std::uint8_t, 3>(blocks_name, {shape[0], groups, Format::kBytesPerBlock}),
        fs->template view<std::uint8_t, 2>(scales_name, {shape[0], groups}));
  }

  template <class T>
  void operator()(const std::string& name, std::vector<MatrixView<const T>>& experts,
                  const std::array<index_t, 3>& shape) {
    const std::string stored = stored_name(layout_, name);
    const auto* f = lookup(stored);
    if (f == nullptr) return;
    const auto all = f->template view<T, 3>(stored, shape);
    experts.clear();
    for (index_t e = 0; e < shape[0]; ++e) experts.push_back(all[e]);
  }

  /// Throws FormatError listing missing and unexpected tensors, if any.
  void finish(const std::string& where) const {
    std::vector<std::string> unexpected;
    for (const auto& name : source_.names()) {
      if (!used_.count(name)) unexpected.push_back(name);
    }
    if (missing_.empty() && unexpected.empty()) return;
    std::string msg = where + ":";
    const auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg += std::string(" ") + std::to_string(names.size()) + " " + what + " tensor(s):";
      for (std::size_t i = 0; i < names.size() && i < 8; ++i) msg += " '" + names[i] + "'";
      if (names.size() > 8) msg += " ...";
      msg += ";";
    };
    list("missing", missing_);
    list("unexpected", unexpected);
    msg.pop_back();
    throw FormatError(msg);
  }

 private:
  const io::SafetensorsFile* lookup(const std::string& name) {
    const auto* f = source_.find(name);
    if (f == nullptr) {
      missing_.push_back(name);
    } else {
      used_.insert(name);
    }
    return f;
  }

  const TensorSource& source_;
  CheckpointLayout layout_;
  std::vector<std::string> missing_;
  std::set<std::string> used_;
};

}  // namespace detail

/// Binds every weight of `model` to the tensors of `source`, keeping the
/// files alive as long as the model.
template <class Model>
void bind_weights(Model& model, const TensorSource& source, CheckpointLayout layout,
                  const std::string& where) {
  detail::WeightBinder binder(source, layout);
  model.visit_weights(model.mutable_weights(), binder);
  binder.finish(where);
  for (const auto& f : source.files()) model.keep_alive(f);
}

namespace detail {

/// Visitor that finds the FP4 format of a model's expert matrices.
struct ExpertFormatProbe {
  std::string format;  // Format::kName, or "" when the experts are not FP4
  template <class Format>
  void operator()(const std::string&, const std::vector<FP4TensorView<Format>>&, const std::array<index_t, 3>&) {
    format = Format::kName;
  }
  template <class... A>
  void operator()(const A&...) {}
};

}  // namespace detail

/// The FP4 format of Model's experts ("mxfp4", "nvfp4"), or "" for others.
template <class Model>
std::string expert_format(const Model& model) {
  detail::ExpertFormatProbe probe;
  model.visit_weights(model.weights(), probe);
  return probe.format;
}

/// Throws FormatError when a checkpoint's config names an expert format
/// (quant_method; none means gpt-oss's MXFP4) that Model does not hold.
template <class Model>
void check_expert_format(const Model& model, const std::string& quant_method, const std::string& where) {
  const std::string expected = expert_format(model);
  const std::string stored = quant_method.empty() ? "mxfp4" : quant_method;
  if ((!expected.empty() && expected != stored) || (expected.empty() && !quant_method.empty() && stored != "mxfp4")) {
    throw FormatError(where + " stores its expert weights as " + stored +
                      (quant_method.empty() ? " (config.json has no quantization_config)" : " (config.json quantization_config)") +
                      ", but the model type expects " + (expected.empty() ? "dense" : expected) + " experts");
  }
}

/// Loads an original-layout checkpoint directory (config.json +
/// model.safetensors). Model is a Transformer type; DynamicConfig takes the
/// dims from config.json, a fixed config requires them to match.
template <class Model = Transformer<>>
Model load_original_checkpoint(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) {
    throw FormatError("checkpoint directory '" + dir.string() + "' does not exist");
  }
  const nlohmann::json config = io::read_json_file(dir / "config.json");
  const std::string where = "'" + (dir / "config.json").string() + "'";
  Model model(io::parse_original_config(config, where));
  check_expert_format(model, io::parse_quant_method(config, where), "checkpoint '" + dir.string() + "'");
  TensorSource source;
  source.add(std::make_shared<const io::SafetensorsFile>(dir / "model.safetensors"));
  bind_weights(model, source, CheckpointLayout::original, "checkpoint '" + dir.string() + "'");
  return model;
}

/// What a checkpoint directory holds, found without reading any weights.
struct CheckpointInfo {
  std::filesystem::path dir;              // the folder with config.json (may be DIR/original)
  CheckpointLayout layout = CheckpointLayout::original;
  ModelDims dims;
  std::vector<std::filesystem::path> files;  // safetensors files (shards) in load order
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name (sharded only)
  std::string quant_method;  // config.json quantization_config.quant_method: "mxfp4", "nvfp4" or ""
};

namespace detail {

inline bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find('\\') == std::string::npos &&
         name != "." && name != "..";
}

}  // namespace detail

/// Detects the layout of `dir` and reads its config (and shard index):
///  - `model.safetensors.index.json` + Hugging Face config.json: sharded HF layout;
///  - config.json with HF keys (num_local_experts) + model.safetensors: HF, one file;
///  - config.json with original keys + model.safetensors: original layout;
///  - none of these but an `original/` subfolder (as in the HF repo): that folder.
inline CheckpointInfo inspect_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw FormatError("checkpoint directory '" + dir.string() + "' does not exist");
  CheckpointInfo info;
  info.dir = dir;
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path)) {
    if (fs::exists(dir / "original" / "config.json")) return inspect_checkpoint(dir / "original");
    throw FormatError("checkpoint directory '" + dir.string() + "' has no config.json (nor original/config.json)");
  }
  const nlohmann::json config = io::read_json_file(config_path);
  const std::string where = "'" + config_path.string() + "'";
  const bool hf = io::is_hf_config(config);
  info.layout = hf ? CheckpointLayout::hugging_face : CheckpointLayout::original;
  info.dims = hf ? io::parse_hf_config(config, where) : io::parse_original_config(config, where);
  info.quant_method = io::parse_quant_method(config, where);

  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    const nlohmann::json index = io::read_json_file(index_path);
    const std::string iwhere = "shard index '" + index_path.string() + "'";
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw FormatError(iwhere + ": no weight_map object");
    }
    if (index["weight_map"].empty()) throw FormatError(iwhere + ": weight_map lists no tensors");
    std::set<std::string> seen;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      if (!file.is_string() || !detail::is_plain_file_name(file.get<std::string>())) {
        throw FormatError(iwhere + ": tensor '" + tensor + "' maps to " + file.dump() +
                          ", not a file name in the checkpoint directory");
      }
      const std::string name = file.get<std::string>();
      info.weight_map[tensor] = name;
      if (seen.insert(name).second) info.files.push_back(dir / name);
    }
    std::sort(info.files.begin(), info.files.end());
  } else {
    info.files.push_back(dir / "model.safetensors");
  }
  return info;
}

/// Loads a checkpoint in either layout (see inspect_checkpoint): config and
/// shards are checked, each tensor is taken from the shard the index names,
/// and the weights are used in place from the mapped files.
template <class Model = Transformer<>>
Model load_checkpoint(const std::filesystem::path& dir) {
  const CheckpointInfo info = inspect_checkpoint(dir);
  Model model(info.dims);
  check_expert_format(model, info.quant_method, "checkpoint '" + info.dir.string() + "'");
  TensorSource source;
  for (const auto& file : info.files) {
    if (!std::filesystem::exists(file)) {
      throw FormatError(info.weight_map.empty()
                            ? "checkpoint '" + info.dir.string() + "' has no '" + file.filename().string() + "'"
                            : "shard index of '" + info.dir.string() + "' names shard '" +
                                  file.filename().string() + "', which does not exist");
    }
    auto shard = std::make_shared<const io::SafetensorsFile>(file);
    if (!info.weight_map.empty()) {
      for (const auto& t : shard->tensors()) {
        if (!info.weight_map.count(t.name)) {
          throw FormatError("shard '" + file.string() + "' holds tensor '" + t.name +
                            "', which the shard index does not list");
        }
      }
    }
    source.add(std::move(shard));
  }
  for (const auto& [tensor, file] : info.weight_map) {
    const io::SafetensorsFile* holder = source.find(tensor);
    if (holder == nullptr || holder->path().filename() != file) {
      throw FormatError("shard index of '" + info.dir.string() + "' puts tensor '" + tensor + "' in '" + file +
                        "', but " + (holder ? "it is in '" + holder->path().filename().string() + "'"
                                            : std::string("no shard holds it")));
    }
  }
  bind_weights(model, source, info.layout, "checkpoint '" + info.dir.string() + "'");
  return model;
}

/// config.json contents (original layout) for dims.
inline nlohmann::ordered_json original_config_json(const ModelDims& d) {
  return {{"num_hidden_layers", d.num_layers},
          {"num_experts", d.num_experts},
          {"experts_per_token", d.experts_per_token},
          {"vocab_size", d.vocab},
          {"hidden_size", d.hidden},
          {"intermediate_size", d.intermediate},
          {"swiglu_limit", d.swiglu_limit},
          {"head_dim", d.head_dim},
          {"num_attention_heads", d.num_heads},
          {"num_key_value_heads", d.num_kv_heads},
          {"sliding_window", d.sliding_window},
          {"initial_context_length", d.initial_context},
          {"rope_theta", d.rope_theta},
          {"rope_scaling_factor", d.rope_scaling_factor},
          {"rope_ntk_alpha", d.rope_ntk_alpha},
          {"rope_ntk_beta", d.rope_ntk_beta},
          {"rms_norm_eps", d.rms_eps}};
}

namespace detail {

/// Visitor that gathers a model's weights as safetensors records, named and
/// split as `layout` stores them.
class WeightCollector {
 public:
  explicit WeightCollector(CheckpointLayout layout) : layout_(layout) {}

  template <class T, std::size_t R>
  void operator()(const std::string& name, const TensorView<const T, R>& view,
                  const std::array<index_t, R>&) {
    records_.push_back(io::TensorRecord::of<T>(
        stored_name(layout_, name), {view.shape().begin(), view.shape().end()}, std::span<const T>(view.span())));
  }

  template <class View, std::size_t N, std::size_t R>
  void operator()(const std::string& name, const RowSplit<const View*, N>& split, const std::array<index_t, R>& shape) {
    using T = std::remove_const_t<typename View::element_type>;
    const auto parts = stored_split_names(layout_, name, split.part_names);
    if (!parts.empty()) {
      for (std::size_t i = 0; i < N; ++i) (*this)(parts[i], *split.parts[i], shape);
      // stored_name() leaves the HF part names as they are
      return;
    }
    auto& bytes = buffer();
    for (std::size_t i = 0; i < N; ++i) {
      const auto b = std::as_bytes(split.parts[i]->span());
      const auto* p = reinterpret_cast<const std::uint8_t*>(b.data());
      bytes.insert(bytes.end(), p, p + b.size());
    }
    records_.push_back({stored_name(layout_, name), dtype_of_v<T>, {shape.begin(), shape.end()},
                        std::as_bytes(std::span<const std::uint8_t>(bytes))});
  }

  template <class Format>
  void operator()(const std::string& name, const std::vector<FP4TensorView<Format>>& experts,
                  const std::array<index_t, 3>& shape) {
    auto& blocks = buffer();
    auto& scales = buffer();
    auto& global = buffer();
    for (const auto& w : experts) {
      const index_t nblocks = w.rows() * w.blocks_per_row();
      blocks.insert(blocks.end(), w.blocks(), w.blocks() + nblocks * Format::kBytesPerBlock);
      scales.insert(scales.end(), w.scales(), w.scales() + nblocks);
      const float g = w.global_scale();
      const auto* p = reinterpret_cast<const std::uint8_t*>(&g);
      global.insert(global.end(), p, p + sizeof(float));
    }
    const index_t groups = shape[2] / Format::kBlockSize;
    const auto [blocks_name, scales_name] = stored_fp4_names(layout_, name);
    records_.push_back({blocks_name, DType::U8, {shape[0], shape[1], groups, Format::kBytesPerBlock},
                        std::as_bytes(std::span<const std::uint8_t>(blocks))});
    records_.push_back({scales_name, DType::U8, {shape[0], shape[1], groups},
                        std::as_bytes(std::span<const std::uint8_t>(scales))});
    if constexpr (Format::kHasGlobalScale) {
      records_.push_back({stored_fp4_global_name(layout_, name), DType::F32, {shape[0]},
                          std::as_bytes(std::span<const std::uint8_t>(global))});
    }
  }

  template <class Format>
  void operator()(const std::string& name, const FP4TensorView<Format>& w, const std::array<index_t, 2>& shape) {
    const index_t groups = shape[1] / Format::kBlockSize;
    const auto [blocks_name, scales_name] = stored_fp4_names(layout_, name);
    records_.push_back({blocks_name, DType::U8, {shape[0], groups, Format::kBytesPerBlock},
                        std::as_bytes(std::span<const std::uint8_t>(w.blocks(), static_cast<std::size_t>(shape[0] * groups * Format::kBytesPerBlock)))});
    records_.push_back({scales_name, DType::U8, {shape[0], groups},
                        std::as_bytes(std::span<const std::uint8_t>(w.scales(), static_cast<std::size_t>(shape[0] * groups)))});
  }

  template <class T>
  void operator()(const std::string& name, const std::vector<MatrixView<const T>>& experts,
                  const std::array<index_t, 3>& shape) {
    auto& bytes = buffer();
    for (const auto& w : experts) {
      const auto b = std::as_bytes(w.span());
      const auto* p = reinterpret_cast<const std::uint8_t*>(b.data());
      bytes.insert(bytes.end(), p, p + b.size());
    }
    records_.push_back({stored_name(layout_, name), dtype_of_v<T>, {shape[0], shape[1], shape[2]},
                        std::as_bytes(std::span<const std::uint8_t>(bytes))});
  }

  const std::vector<io::TensorRecord>& records() const noexcept { return records_; }

 private:
  std::vector<std::uint8_t>& buffer() {
    buffers_.push_back(std::make_unique<std::vector<std::uint8_t>>());
    return *buffers_.back();
  }
  CheckpointLayout layout_;
  std::vector<io::TensorRecord> records_;
  std::vector<std::unique_ptr<std::vector<std::uint8_t>>> buffers_;
};

}  // namespace detail

/// One tensor a checkpoint must hold for a model.
struct PlannedTensor {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<index_t> shape;
  std::uint64_t bytes() const {
    std::uint64_t n = dtype_size(dtype);
    for (auto e : shape) n *= static_cast<std::uint64_t>(e);
    return n;
  }
};

namespace detail {

/// Visitor that lists the stored tensors a model needs in a layout.
class TensorPlanner {
 public:
  explicit TensorPlanner(CheckpointLayout layout) : layout_(layout) {}

  template <class T, std::size_t R>
  void operator()(const std::string& name, const TensorView<const T, R>&, const std::array<index_t, R>& shape) {
    add(stored_name(layout_, name), dtype_of_v<T>, shape);
  }
  template <class View, std::size_t N, std::size_t R>
  void operator()(const std::string& name, const RowSplit<const View*, N>& split, const std::array<index_t, R>& shape) {
    constexpr DType dtype = dtype_of_v<std::remove_const_t<typename View::element_type>>;
    const auto parts = stored_split_names(layout_, name, split.part_names);
    if (parts.empty()) return add(stored_name(layout_, name), dtype, shape);
    for (std::size_t i = 0; i < N; ++i) {
      std::array<index_t, R> part = shape;
      part[0] = split.rows[i];
      add(parts[i], dtype, part);
    }
  }
  template <class Format>
  void operator()(const std::string& name, const std::vector<FP4TensorView<Format>>&, const std::array<index_t, 3>& shape) {
    const auto [blocks, scales] = stored_fp4_names(layout_, name);
    const index_t groups = shape[2] / Format::kBlockSize;
    add(blocks, DType::U8, std::array{shape[0], shape[1], groups, index_t{Format::kBytesPerBlock}});
    add(scales, DType::U8, std::array{shape[0], shape[1], groups});
    if constexpr (Format::kHasGlobalScale) add(stored_fp4_global_name(layout_, name), DType::F32, std::array{shape[0]});
  }
  template <class Format>
  void operator()(const std::string& name, const FP4TensorView<Format>&, const std::array<index_t, 2>& shape) {
    const auto [blocks, scales] = stored_fp4_names(layout_, name);
    const index_t groups = shape[1] / Format::kBlockSize;
    add(blocks, DType::U8, std::array{shape[0], groups, index_t{Format::kBytesPerBlock}});
    add(scales, DType::U8, std::array{shape[0], groups});
  }
  template <class T>
  void operator()(const std::string& name, const std::vector<MatrixView<const T>>&, const std::array<index_t, 3>& shape) {
    add(stored_name(layout_, name), dtype_of_v<T>, shape);
  }

  std::vector<PlannedTensor> tensors;

 private:
  template <std::size_t R>
  void add(const std::string& name, DType dtype, const std::array<index_t, R>& shape) {
    tensors.push_back({name, dtype, {shape.begin(), shape.end()}});
  }
  CheckpointLayout layout_;
};

}  // namespace detail

/// A load planned from config.json (and the shard index) alone: what the
/// checkpoint must hold, what its index or files list that the model does not
/// need, and what is missing. Shard files need not be present.
struct CheckpointPlan {
  CheckpointInfo info;
  std::vector<PlannedTensor> tensors;    // what the model needs, stored names
  std::vector<std::string> missing;      // needed but not listed
  std::vector<std::string> unexpected;   // listed but not needed
  std::vector<std::string> absent_files; // shard files not on disk
  std::uint64_t bytes() const {
    std::uint64_t n = 0;
    for (const auto& t : tensors) n += t.bytes();
    return n;
  }
};

/// Plans loading `dir` without mapping any weights: the tensors are compared
/// with the index's weight_map (sharded) or the file's header (one file).
template <class Model = Transformer<>>
CheckpointPlan plan_checkpoint(const std::filesystem::path& dir, Model* model_out = nullptr) {
  CheckpointPlan plan;
  plan.info = inspect_checkpoint(dir);
  Model model(plan.info.dims);
  detail::TensorPlanner planner(plan.info.layout);
  model.visit_weights(model.weights(), planner);
  plan.tensors = std::move(planner.tensors);
  std::set<std::string> listed;
  for (const auto& file : plan.info.files) {
    if (!std::filesystem::exists(file)) plan.absent_files.push_back(file.filename().string());
  }
  if (!plan.info.weight_map.empty()) {
    for (const auto& [name, file] : plan.info.weight_map) listed.insert(name);
  } else if (plan.absent_files.empty()) {
    const io::SafetensorsFile file(plan.info.files.front());
    for (const auto& t : file.tensors()) listed.insert(t.name);
  }
  std::set<std::string> needed;
  for (const auto& t : plan.tensors) {
    needed.insert(t.name);
    if (!listed.count(t.name)) plan.missing.push_back(t.name);
  }
  for (const auto& name : listed) {
    if (!needed.count(name)) plan.unexpected.push_back(name);
  }
  if (model_out != nullptr) *model_out = std::move(model);
  return plan;
}

/// config.json contents (Hugging Face layout, model_type gpt_oss) for dims.
inline nlohmann::ordered_json hf_config_json(const ModelDims& d, bool mxfp4_experts = true) {
  nlohmann::ordered_json layer_types = nlohmann::ordered_json::array();
  for (int l = 0; l < d.num_layers; ++l) {
    layer_types.push_back(ModelDims::is_sliding_layer(l) ? "sliding_attention" : "full_attention");
  }
  nlohmann::ordered_json j{{"architectures", {"GptOssForCausalLM"}},
                           {"model_type", "gpt_oss"},
                           {"num_hidden_layers", d.num_layers},
                           {"num_local_experts", d.num_experts},
                           {"num_experts_per_tok", d.experts_per_token},
                           {"experts_per_token", d.experts_per_token},
                           {"vocab_size", d.vocab},
                           {"hidden_size", d.hidden},
                           {"intermediate_size", d.intermediate},
                           {"head_dim", d.head_dim},
                           {"num_attention_heads", d.num_heads},
                           {"num_key_value_heads", d.num_kv_heads},
                           {"sliding_window", d.sliding_window},
                           {"layer_types", layer_types},
                           {"rope_theta", d.rope_theta},
                           {"rms_norm_eps", d.rms_eps},
                           {"swiglu_limit", d.swiglu_limit},
                           {"initial_context_length", d.initial_context}};
  if (d.rope_scaling_factor > 1.0) {
    j["rope_scaling"] = {{"rope_type", "yarn"},
                         {"factor", d.rope_scaling_factor},
                         {"beta_fast", d.rope_ntk_beta},
                         {"beta_slow", d.rope_ntk_alpha},
                         {"original_max_position_embeddings", d.initial_context},
                         {"truncate", d.rope_truncate}};
  }
  if (mxfp4_experts) j["quantization_config"] = {{"quant_method", "mxfp4"}};
  return j;
}

namespace detail {
inline void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw Error("cannot write '" + path.string() + "'");
}
}  // namespace detail

/// Writes a checkpoint directory for dims in `layout`: config.json plus
/// either model.safetensors (shards == 1) or `shards` files
/// model-0000i-of-0000N.safetensors with model.safetensors.index.json. Shards
/// take tensors in name order up to an equal share of the bytes each, so a
/// layer's tensors may straddle two shards, as in the released checkpoints.
/// `write_data(spec, writer)` writes one tensor's bytes; memory use is
/// whatever it needs, so checkpoints larger than memory can be streamed.
template <class WriteData>
void write_checkpoint_files(const std::filesystem::path& dir, CheckpointLayout layout, const ModelDims& dims,
                            std::vector<io::TensorSpec> specs, int shards, WriteData&& write_data) {
  if (shards < 1) throw RangeError("write_checkpoint: shards must be at least 1");
  std::filesystem::create_directories(dir);
  bool mxfp4 = false, nvfp4 = false;
  for (const auto& t : specs) {
    mxfp4 = mxfp4 || t.name.ends_with("blocks");
    nvfp4 = nvfp4 || t.name.ends_with("global_scale");
  }
  nlohmann::ordered_json config = layout == CheckpointLayout::original
                                      ? nlohmann::ordered_json(original_config_json(dims))
                                      : hf_config_json(dims, mxfp4);
  if (nvfp4) config["quantization_config"] = {{"quant_method", "nvfp4"}};  // NVFP4 experts, either layout
  detail::write_json(dir / "config.json", config);
  const std::map<std::string, std::string> metadata{
      {"format", layout == CheckpointLayout::original ? "gpt-oss original checkpoint layout" : "pt"}};
  const auto write_file = [&](const std::filesystem::path& path, std::vector<io::TensorSpec> part) {
    io::SafetensorsStreamWriter writer(path, std::move(part), metadata);
    for (const auto& spec : writer.order()) write_data(spec, writer);
    writer.finish();
  };
  if (shards == 1) {
    write_file(dir / "model.safetensors", std::move(specs));
    return;
  }
  std::sort(specs.begin(), specs.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::uint64_t total = 0;
  for (const auto& t : specs) total += io::checked_bytes(t);
  const std::uint64_t share = (total + static_cast<std::uint64_t>(shards) - 1) / static_cast<std::uint64_t>(shards);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::size_t next = 0;
  for (int i = 0; i < shards; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", i, shards);
    std::vector<io::TensorSpec> part;
    std::uint64_t bytes = 0;
    while (next < specs.size() && (i == shards - 1 || bytes < share)) {
      bytes += io::checked_bytes(specs[next]);
      weight_map[specs[next].name] = name;
      part.push_back(specs[next++]);
    }
    write_file(dir / name, std::move(part));
  }
  detail::write_json(dir / "model.safetensors.index.json",
                     {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
}

/// Writes tensors already named and split for `layout` as a checkpoint for
/// dims (see write_checkpoint_files).
inline void write_checkpoint_records(const std::vector<io::TensorRecord>& records, const std::filesystem::path& dir,
                                     CheckpointLayout layout, const ModelDims& dims, int shards = 1) {
  std::vector<io::TensorSpec> specs;
  std::map<std::string, const io::TensorRecord*> by_name;
  for (const auto& r : records) {
    specs.push_back({r.name, r.dtype, r.shape});
    by_name[r.name] = &r;
  }
  write_checkpoint_files(dir, layout, dims, std::move(specs), shards,
                         [&](const io::TensorSpec& spec, io::SafetensorsStreamWriter& writer) {
                           writer.write(by_name.at(spec.name)->data);
                         });
}

/// Writes `model`'s weights as a checkpoint in `layout` (see write_checkpoint_files).
template <class Model>
void write_checkpoint(const Model& model, const std::filesystem::path& dir, CheckpointLayout layout,
                      int shards = 1) {
  detail::WeightCollector collector(layout);
  model.visit_weights(model.weights(), collector);
  write_checkpoint_records(collector.records(), dir, layout, model.dims(), shards);
}

/// Writes `model` as an original-layout checkpoint: dir/config.json and
/// dir/model.safetensors (the directory is created if needed).
template <class Model>
void write_original_checkpoint(const Model& model, const std::filesystem::path& dir) {
  write_checkpoint(model, dir, CheckpointLayout::original);
}

}  // namespace gptoss
