// Post-training FP4 quantization of a whole checkpoint.
//
// quantize_checkpoint(src, out, options) reads any checkpoint load_checkpoint
// reads (MXFP4 or NVFP4 experts, either layout) and writes one in the same
// layout whose expert matrices are stored natively in the chosen format
// (MXFP4: NAME.blocks / .scales; NVFP4: also NAME.global_scale, see
// checkpoint.hpp). With QuantModules::all the attention projections (QKV,
// out), the embedding and the unembedding are quantized too, but these layers
// take bf16 weights: they are stored as the quantize-dequantized values in
// bf16 (simulated quantization; every such value is exact in bf16, NVFP4
// using a power-of-two global scale for them). Router, biases, norms and sinks
// stay as they are. config.json records the format, the modules, the scale
// rule and which tensors were simulated. The report holds each quantized
// tensor's relative Frobenius error and largest absolute error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/weight_matrix.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/io/config_json.hpp"
#include "gptoss/model/any_checkpoint.hpp"
#include "gptoss/model/checkpoint.hpp"

namespace gptoss {

/// Which weights are quantized.
enum class QuantModules {
  experts,  // the MoE expert matrices only (stored natively in the FP4 format)
  all,      // also attention QKV/out, embedding and unembedding (simulated, bf16)
};

struct QuantizeOptions {
  std::string format = "mxfp4";  // "mxfp4" or "nvfp4"
  QuantModules modules = QuantModules::experts;
  ScaleRule scale = ScaleRule::ocp;
  int shards = 1;  // safetensors files written (an index when > 1)
};

/// Error of one quantized tensor (all experts of a stacked expert tensor together).
struct TensorQuantError {
  std::string name;            // the original-layout name ("block.0.mlp.mlp1_weight")
  std::vector<index_t> shape;
  double rel_frobenius = 0.0;  // ||Q(W) - W||_F / ||W||_F (0 for an all-zero W)
  double max_abs = 0.0;        // max |Q(W) - W|
  bool simulated = false;      // stored as bf16 quantize-dequantized values
};

struct QuantizeReport {
  std::string format;
  std::vector<TensorQuantError> tensors;
};

namespace detail {

/// Sums for the error figures of one tensor.
struct ErrorSums {
  double err2 = 0.0, ref2 = 0.0, max_abs = 0.0;
  void add(std::span<const float> ref, std::span<const float> got) {
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double d = static_cast<double>(got[i]) - ref[i];
      err2 += d * d;
      ref2 += static_cast<double>(ref[i]) * ref[i];
      max_abs = std::max(max_abs, std::fabs(d));
    }
  }
  double rel_frobenius() const { return ref2 > 0.0 ? std::sqrt(err2 / ref2) : 0.0; }
};

/// RangeError naming the tensor and element when x holds a NaN or infinity.
inline void require_finite(MatrixView<const float> x, const std::string& what) {
  for (index_t r = 0; r < x.extent(0); ++r) {
    for (index_t c = 0; c < x.extent(1); ++c) {
      if (!std::isfinite(x(r, c))) {
        throw RangeError(what + ": " + (std::isnan(x(r, c)) ? "NaN" : "infinity") + " at element (" +
                         std::to_string(r) + ", " + std::to_string(c) + "); cannot quantize non-finite weights");
      }
    }
  }
}

/// Every row of a weight matrix, decoded to float.
template <WeightMatrix W>
Tensor<float, 2> decode_matrix(const W& w) {
  Tensor<float, 2> x({rows(w), cols(w)});  // (R, C)
  for (index_t r = 0; r < rows(w); ++r) {
    decode_row(w, r, std::span<float>(&x(r, 0), static_cast<std::size_t>(cols(w))));
  }
  return x;
}

inline bool is_simulated_target(const std::string& name) {
  return name == "embedding.weight" || name == "unembedding.weight" || name.ends_with(".attn.qkv.weight") ||
         name.ends_with(".attn.out.weight");
}

/// Visitor that quantizes a model's weights while gathering them as
/// safetensors records (through WeightCollector, so names and splits follow
/// the layout).
template <class Format>
class QuantizingCollector {
 public:
  QuantizingCollector(CheckpointLayout layout, const QuantizeOptions& options) : base_(layout), options_(options) {}

  /// Expert matrices of any storage: decoded, quantized to Format.
  template <WeightMatrix M>
  void operator()(const std::string& name, const std::vector<M>& experts, const std::array<index_t, 3>& shape) {
    ErrorSums sums;
    std::vector<FP4Tensor<Format>> quantized;
    std::vector<FP4TensorView<Format>> views;
    for (std::size_t e = 0; e < experts.size(); ++e) {
      const Tensor<float, 2> x = decode_matrix(experts[e]);
      require_finite(x.view(), "tensor '" + name + "' expert " + std::to_string(e));
      quantized.push_back(FP4Tensor<Format>::quantize(x.view(), options_.scale));
      const Tensor<float, 2> y = dequantize(quantized.back().view());
      sums.add(x.storage(), y.storage());
    }
    for (const auto& q : quantized) views.push_back(q.view());
    record(name, shape, sums, false);
    base_(name, views, shape);  // copies the bytes
  }

  template <class T, std::size_t R>
  void operator()(const std::string& name, const TensorView<const T, R>& view, const std::array<index_t, R>& shape) {
    if constexpr (R == 2 && std::is_same_v<T, bf16>) {
      if (options_.modules == QuantModules::all && is_simulated_target(name)) {
        Tensor<float, 2> x({view.extent(0), view.extent(1)});
        for (index_t i = 0; i < x.size(); ++i) x.storage()[static_cast<std::size_t>(i)] = view.data()[i].to_float();
        const TensorView<const bf16, 2> q = simulate(name, x, shape);
        base_(name, q, shape);
        return;
      }
    }
    base_(name, view, shape);
  }

  /// The merged QKV projection: quantized as one (rows, cols) matrix.
  template <class View, std::size_t N, std::size_t R>
  void operator()(const std::string& name, const RowSplit<const View*, N>& split, const std::array<index_t, R>& shape) {
    if constexpr (R == 2 && std::is_same_v<View, TensorView<const bf16, 2>>) {
      if (options_.modules == QuantModules::all && is_simulated_target(name)) {
        Tensor<float, 2> x({shape[0], shape[1]});  // (R, C)
        index_t row = 0;
        for (std::size_t i = 0; i < N; ++i) {
          for (index_t r = 0; r < split.rows[i]; ++r, ++row) {
            for (index_t c = 0; c < shape[1]; ++c) x(row, c) = (*split.parts[i])(r, c).to_float();
          }
        }
        const TensorView<const bf16, 2> q = simulate(name, x, shape);
        RowSplit<const View*, N> parts = split;
        row = 0;
        for (std::size_t i = 0; i < N; ++i) {
          part_views_.push_back(std::make_unique<View>(q.slice(row, row + split.rows[i])));
          parts.parts[i] = part_views_.back().get();
          row += split.rows[i];
        }
        base_(name, parts, shape);
        return;
      }
    }
    base_(name, split, shape);
  }

  const std::vector<io::TensorRecord>& records() const noexcept { return base_.records(); }
  std::vector<TensorQuantError>& errors() noexcept { return errors_; }
  const std::vector<std::string>& simulated() const noexcept { return simulated_; }

 private:
  /// Quantize-dequantize x into an owned bf16 tensor (exact: checked).
  template <std::size_t R>
  TensorView<const bf16, 2> simulate(const std::string& name, const Tensor<float, 2>& x, const std::array<index_t, R>& shape) {
    if (x.extent(1) % Format::kBlockSize != 0) {
      throw ShapeError("tensor '" + name + "' " + shape_string(x.shape()) + ": " + Format::kName +
                       " needs the column count divisible by " + std::to_string(Format::kBlockSize));
    }
    require_finite(x.view(), "tensor '" + name + "'");
    const auto q = FP4Tensor<Format>::quantize(x.view(), options_.scale, GlobalScale::power_of_two);
    const Tensor<float, 2> y = dequantize(q.view());
    ErrorSums sums;
    sums.add(x.storage(), y.storage());
    auto out = std::make_unique<Tensor<bf16, 2>>(x.shape());
    for (std::size_t i = 0; i < y.storage().size(); ++i) {
      out->storage()[i] = bf16::from_float(y.storage()[i]);
      if (out->storage()[i].to_float() != y.storage()[i]) {
        throw Error("tensor '" + name + "': quantized value " + std::to_string(y.storage()[i]) + " is not exact in bf16");
      }
    }
    record(name, shape, sums, true);
    simulated_.push_back(name);
    owned_.push_back(std::move(out));
    return owned_.back()->view();
  }

  template <std::size_t R>
  void record(const std::string& name, const std::array<index_t, R>& shape, const ErrorSums& s, bool simulated) {
    errors_.push_back({name, {shape.begin(), shape.end()}, s.rel_frobenius(), s.max_abs, simulated});
  }

  WeightCollector base_;
  QuantizeOptions options_;
  std::vector<TensorQuantError> errors_;
  std::vector<std::string> simulated_;
  std::vector<std::unique_ptr<Tensor<bf16, 2>>> owned_;           // simulated tensors, viewed by records
  std::vector<std::unique_ptr<TensorView<const bf16, 2>>> part_views_;
};

template <class Format, class Model>
QuantizeReport quantize_model_as(const Model& model, const std::filesystem::path& out, CheckpointLayout layout,
                                 const QuantizeOptions& options) {
  QuantizingCollector<Format> collector(layout, options);
  model.visit_weights(model.weights(), collector);
  write_checkpoint_records(collector.records(), out, layout, model.dims(), options.shards);
  // Record what was done next to the format the loader reads.
  std::ifstream config_in(out / "config.json");
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(config_in);
  config["quantization_config"] = {
      {"quant_method", Format::kName},
      {"modules", options.modules == QuantModules::all ? "all" : "experts"},
      {"scale_rule", options.scale == ScaleRule::search ? "search" : "ocp"},
      {"simulated", collector.simulated()},
      {"simulated_note", "tensors listed in 'simulated' hold quantize-dequantized values stored as bf16"}};
  if (collector.simulated().empty()) {
    config["quantization_config"].erase("simulated");
    config["quantization_config"].erase("simulated_note");
  }
  write_json(out / "config.json", config);
  return {Format::kName, std::move(collector.errors())};
}

}  // namespace detail

/// Quantizes a loaded model's weights to options.format and writes them as
/// a checkpoint in `layout` to `out` (see the file comment).
template <class Model>
QuantizeReport quantize_model(const Model& model, const std::filesystem::path& out, CheckpointLayout layout,
                              const QuantizeOptions& options) {
  if (options.format == "mxfp4") return detail::quantize_model_as<MXFP4Checkpoint>(model, out, layout, options);
  if (options.format == "nvfp4") return detail::quantize_model_as<NVFP4>(model, out, layout, options);
  throw RangeError("unknown FP4 format '" + options.format + "' (expected mxfp4 or nvfp4)");
}

/// Reads the checkpoint in `src` (either format and layout), quantizes it and
/// writes the result, in the same layout, to `out` (which must differ from src).
inline QuantizeReport quantize_checkpoint(const std::filesystem::path& src, const std::filesystem::path& out,
                                          const QuantizeOptions& options) {
  if (options.format != "mxfp4" && options.format != "nvfp4") {
    throw RangeError("unknown FP4 format '" + options.format + "' (expected mxfp4 or nvfp4)");
  }
  const CheckpointInfo info = inspect_checkpoint(src);
  if (std::filesystem::exists(out) && (std::filesystem::equivalent(out, src) || std::filesystem::equivalent(out, info.dir))) {
    throw RangeError("the output directory '" + out.string() + "' is the checkpoint being read");
  }
  return with_checkpoint_model(src, [&](const auto& model) { return quantize_model(model, out, info.layout, options); });
}

}  // namespace gptoss
