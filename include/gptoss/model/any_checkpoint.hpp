// Loading a checkpoint as the model type its config.json names: MXFP4
// experts (gpt-oss's own format, and the default when config.json has no
// quantization_config) or NVFP4 experts (quant_method "nvfp4", as written by
// `gptoss quantize --format nvfp4`).
#pragma once

#include <filesystem>
#include <utility>

#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/model/checkpoint.hpp"
#include "gptoss/model/transformer.hpp"

namespace gptoss {

/// A gpt-oss model (run-time dims, the default backend) whose experts are
/// stored in FP4 Format.
template <class Format>
using GptOssModel = Transformer<DynamicConfig, default_backend, GptOssBlocks<default_backend, FP4TensorView<Format>>>;

using MXFP4Model = GptOssModel<MXFP4Checkpoint>;  // = Transformer<>
using NVFP4Model = GptOssModel<NVFP4>;

/// Loads `dir` (either layout, sharded or not) as the model type its config
/// names and returns f(model); f is called with a const model of either type
/// and must return the same type for both.
template <class F>
decltype(auto) with_checkpoint_model(const std::filesystem::path& dir, F&& f) {
  if (inspect_checkpoint(dir).quant_method == "nvfp4") {
    auto model = load_checkpoint<NVFP4Model>(dir);
    return std::forward<F>(f)(model);
  }
  auto model = load_checkpoint<MXFP4Model>(dir);
  return std::forward<F>(f)(model);
}

}  // namespace gptoss
