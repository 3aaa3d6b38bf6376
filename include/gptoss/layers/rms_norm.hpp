// RMSNorm layer (gpt-oss: eps 1e-5, computed in fp32, learned per-channel
// scale stored as bf16).
#pragma once

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/kernels/fast/rms_norm.hpp"

namespace gptoss {

/// Weights of an RMSNorm.
struct RMSNormWeights {
  VectorView<const bf16> scale;  // (D)
};

/// y = x / sqrt(mean(x^2) + eps) * scale, row by row.
template <class Backend = cpu_reference>
class RMSNorm {
 public:
  using Weights = RMSNormWeights;

  explicit RMSNorm(index_t dim, float eps = 1e-5f) : dim_(dim), eps_(eps) {
    if (dim <= 0) throw ShapeError("RMSNorm: dimension must be positive, got " + std::to_string(dim));
  }

  index_t dim() const noexcept { return dim_; }
  float eps() const noexcept { return eps_; }

  /// Calls f(name, tensor, expected shape) for the scale.
  template <class W, class F>
  void visit_weights(W& w, F&& f) const { f("scale", w.scale, std::array{dim_}); }

  /// out (T, D) = RMSNorm(x (T, D)); out may alias x.
  void forward(const Weights& w, MatrixView<const float> x, MatrixView<float> out) const {
    require_shape(w.scale, {dim_}, "RMSNorm scale");
    if (x.extent(1) != dim_) {
      throw ShapeError("RMSNorm: input " + shape_string(x.shape()) + " does not have " +
                       std::to_string(dim_) + " columns");
    }
    kernels::rms_norm(Backend{}, x, w.scale, eps_, out);
  }

 private:
  index_t dim_;
  float eps_;
};

}  // namespace gptoss
