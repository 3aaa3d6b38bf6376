// Loading and writing checkpoints in the original gpt-oss layout: a
// directory with config.json and model.safetensors, tensors named
// "embedding.weight", "block.{i}.attn.qkv.weight", ...,
// "block.{i}.mlp.mlp1_weight.blocks" / ".scales" (MXFP4), "norm.scale",
// "unembedding.weight".
//
// Loading maps the file and binds the model's weight views to the mapped
// bytes: bf16 tensors and MXFP4 blocks/scales are used in place, never
// expanded to float. Every tensor's dtype and shape is checked against the
// config (FormatError naming the file and tensor); missing and unexpected
// tensors are reported together.
#pragma once

#include <algorithm>
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

/// Visitor that points each weight view at its tensor in a TensorSource.
class WeightBinder {
 public:
  explicit WeightBinder(const TensorSource& source) : source_(source) {}

  template <class T, std::size_t R>
  void operator()(const std::string& name, TensorView<const T, R>& view,
                  const std::array<index_t, R>& shape) {
    if (const auto* f = lookup(name)) view = f->template view<T, R>(name, shape);
  }

  template <class Format>
  void operator()(const std::string& name, std::vector<FP4TensorView<Format>>& experts,
                  const std::array<index_t, 3>& shape) {
    const auto* fb = lookup(name + ".blocks");
    const auto* fs = lookup(name + ".scales");
    if (fb == nullptr || fs == nullptr) return;
    const index_t groups = shape[2] / Format::kBlockSize;
    const auto blocks = fb->template view<std::uint8_t, 4>(
        name + ".blocks", {shape[0], shape[1], groups, Format::kBytesPerBlock});
    const auto scales = fs->template view<std::uint8_t, 3>(name + ".scales", {shape[0], shape[1], groups});
    experts.clear();
    for (index_t e = 0; e < shape[0]; ++e) {
      experts.push_back(FP4TensorView<Format>::from_blocks(blocks[e], scales[e]));
    }
  }

  template <class T>
  void operator()(const std::string& name, std::vector<MatrixView<const T>>& experts,
                  const std::array<index_t, 3>& shape) {
    const auto* f = lookup(name);
    if (f == nullptr) return;
    const auto all = f->template view<T, 3>(name, shape);
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
  std::vector<std::string> missing_;
  std::set<std::string> used_;
};

}  // namespace detail

/// Binds every weight of `model` to the tensors of `source`, keeping the
/// files alive as long as the model.
template <class Model>
void bind_weights(Model& model, const TensorSource& source, const std::string& where) {
  detail::WeightBinder binder(source);
  model.visit_weights(model.mutable_weights(), binder);
  binder.finish(where);
  for (const auto& f : source.files()) model.keep_alive(f);
}

/// Loads an original-layout checkpoint directory (config.json +
/// model.safetensors). Model is a Transformer type; DynamicConfig takes the
/// dims from config.json, a fixed config requires them to match.
template <class Model = Transformer<>>
Model load_original_checkpoint(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) {
    throw FormatError("checkpoint directory '" + dir.string() + "' does not exist");
  }
  const ModelDims dims = io::read_original_config(dir / "config.json");
  Model model(dims);
  TensorSource source;
  source.add(std::make_shared<const io::SafetensorsFile>(dir / "model.safetensors"));
  bind_weights(model, source, "checkpoint '" + dir.string() + "'");
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

/// Visitor that gathers a model's weights as safetensors records.
class WeightCollector {
 public:
  template <class T, std::size_t R>
  void operator()(const std::string& name, const TensorView<const T, R>& view,
                  const std::array<index_t, R>&) {
    records_.push_back(io::TensorRecord::of<T>(
        name, {view.shape().begin(), view.shape().end()}, std::span<const T>(view.span())));
  }

  template <class Format>
  void operator()(const std::string& name, const std::vector<FP4TensorView<Format>>& experts,
                  const std::array<index_t, 3>& shape) {
    auto& blocks = buffer();
    auto& scales = buffer();
    for (const auto& w : experts) {
      const index_t nblocks = w.rows() * w.blocks_per_row();
      blocks.insert(blocks.end(), w.blocks(), w.blocks() + nblocks * Format::kBytesPerBlock);
      scales.insert(scales.end(), w.scales(), w.scales() + nblocks);
    }
    const index_t groups = shape[2] / Format::kBlockSize;
    records_.push_back({name + ".blocks", DType::U8, {shape[0], shape[1], groups, Format::kBytesPerBlock},
                        std::as_bytes(std::span<const std::uint8_t>(blocks))});
    records_.push_back({name + ".scales", DType::U8, {shape[0], shape[1], groups},
                        std::as_bytes(std::span<const std::uint8_t>(scales))});
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
    records_.push_back({name, dtype_of_v<T>, {shape[0], shape[1], shape[2]},
                        std::as_bytes(std::span<const std::uint8_t>(bytes))});
  }

  const std::vector<io::TensorRecord>& records() const noexcept { return records_; }

 private:
  std::vector<std::uint8_t>& buffer() {
    buffers_.push_back(std::make_unique<std::vector<std::uint8_t>>());
    return *buffers_.back();
  }
  std::vector<io::TensorRecord> records_;
  std::vector<std::unique_ptr<std::vector<std::uint8_t>>> buffers_;
};

}  // namespace detail

/// Writes `model` as an original-layout checkpoint: dir/config.json and
/// dir/model.safetensors (the directory is created if needed).
template <class Model>
void write_original_checkpoint(const Model& model, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  {
    std::ofstream config(dir / "config.json");
    config << original_config_json(model.dims()).dump(2) << "\n";
    if (!config) throw Error("cannot write '" + (dir / "config.json").string() + "'");
  }
  detail::WeightCollector collector;
  model.visit_weights(model.weights(), collector);
  io::write_safetensors(dir / "model.safetensors", collector.records(),
                        {{"format", "gpt-oss original checkpoint layout"}});
}

}  // namespace gptoss
