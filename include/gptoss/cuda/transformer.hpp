// CudaTransformer: a whole gpt-oss model on one CUDA device. The weights of
// a CPU Transformer (a loaded checkpoint or random weights) are uploaded
// once; each DeviceSequence keeps its KV cache and scratch on the device. A
// forward step uploads the token ids, enqueues every layer's kernels on one
// stream with no host round trip, and copies the logits back at the end.
//
// Layout on the device: bf16 weights as in the checkpoint (q, k and v rows
// merged into one (D (nq + 2 nkv), H) matrix), each layer's experts back to
// back (E, rows, cols/32, 16) blocks and (E, rows, cols/32) scales, a float
// KV cache (capacity, nkv, D) per layer in which row j holds position j
// (sliding layers read only their window of it).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "gptoss/core/tensor_view.hpp"
#include "gptoss/cuda/kernels.hpp"
#include "gptoss/cuda/plan.hpp"
#include "gptoss/cuda/runtime.hpp"

namespace gptoss::cuda {

/// Device scratch of one sequence, grown to the largest step seen.
struct DeviceScratch {
  std::size_t tokens = 0;
  DeviceBuffer<std::int32_t> token_ids;       // (T)
  DeviceBuffer<float> x, normed;              // (T, H)
  DeviceBuffer<float> qkv;                    // (T, D (nq + 2 nkv))
  DeviceBuffer<float> q, attn;                // (T, nq D)
  DeviceBuffer<float> router;                 // (T, E)
  DeviceBuffer<std::int32_t> indices;         // (T k)
  DeviceBuffer<float> weights;                // (T k)
  DeviceBuffer<std::int32_t> sorted_entry, entry_position;       // (T k)
  DeviceBuffer<std::int32_t> tile_expert, tile_begin, tile_end;  // (tiles)
  DeviceBuffer<float> up, act, down;          // (T k, 2I), (T k, I), (T k, H)
  DeviceBuffer<float> logits;                 // (T, V)
};

/// One sequence's decoding state on the device.
class DeviceSequence {
 public:
  DeviceSequence(const ModelDims& dims, index_t max_context);
  index_t length() const noexcept { return length_; }
  index_t max_context() const noexcept { return capacity_; }
  std::size_t num_layers() const noexcept { return k_.size(); }
  /// Bytes of the KV caches.
  std::size_t cache_bytes() const noexcept;
  void clear() noexcept { length_ = 0; }

 private:
  friend class CudaTransformer;
  std::vector<DeviceBuffer<float>> k_, v_;  // per layer (capacity, nkv, D)
  index_t capacity_;
  index_t length_ = 0;
  DeviceScratch scratch_;
};

class CudaTransformer {
 public:
  /// Uploads the weights viewed by `host` (checked first: ShapeError names
  /// any tensor of the wrong shape).
  explicit CudaTransformer(const HostModel& host, ModelOptions options = {});
  /// Uploads the weights of a CPU Transformer (gpt-oss blocks, MXFP4 experts).
  template <class Cfg, class Backend, class Pattern>
  explicit CudaTransformer(const Transformer<Cfg, Backend, Pattern>& model, ModelOptions options = {})
      : CudaTransformer(host_model(model), options) {}

  /// A model of `dims` with random weights generated on the device (host
  /// memory stays small even for gpt-oss-120b); for benchmarks.
  static CudaTransformer random(const ModelDims& dims, std::uint64_t seed, ModelOptions options = {});

  CudaTransformer(CudaTransformer&&) noexcept;
  CudaTransformer& operator=(CudaTransformer&&) noexcept;
  ~CudaTransformer();

  const ModelDims& dims() const noexcept;
  const ModelOptions& options() const noexcept;
  void set_options(const ModelOptions& options) noexcept;
  /// Bytes of weights held on the device.
  std::size_t weight_bytes() const noexcept;

  DeviceSequence new_sequence(index_t max_context = 4096) const;

  /// Feeds `tokens` to `seq` and returns their logits (T, V) on the host.
  Tensor<float, 2> forward(DeviceSequence& seq, std::span<const std::int32_t> tokens) const;
  /// As forward, but only the last token's logits (1, V).
  Tensor<float, 2> forward_last(DeviceSequence& seq, std::span<const std::int32_t> tokens) const;
  /// Logits (T, V) of a whole prompt with no earlier context.
  Tensor<float, 2> forward(std::span<const std::int32_t> tokens) const;

  /// Enqueues a step and leaves the logits of the last `logit_rows` tokens
  /// on the device (T is tokens.size()); returns the device pointer to them
  /// ((logit_rows, V), valid until the sequence's next step). For benchmarks.
  const float* enqueue(DeviceSequence& seq, std::span<const std::int32_t> tokens, int logit_rows) const;

 private:
  struct Weights;
  explicit CudaTransformer(std::unique_ptr<Weights> w);
  std::unique_ptr<Weights> w_;
};

}  // namespace gptoss::cuda
