// Reference RMSNorm: out = x / sqrt(mean(x^2) + eps) * scale, per row, with
// the mean accumulated in float64.
#pragma once

#include <cmath>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss::kernels {

/// Throws ShapeError unless scale is (D) and out has x's shape (T, D). Every
/// backend's rms_norm checks this first.
inline void check_rms_norm_shapes(MatrixView<const float> x, VectorView<const bf16> scale, MatrixView<float> out) {
  const index_t d = x.extent(1);
  if (scale.extent(0) != d || out.shape() != x.shape()) {
    throw ShapeError("rms_norm: input " + shape_string(x.shape()) + ", scale " +
                     shape_string(scale.shape()) + ", output " + shape_string(out.shape()) +
                     " do not fit");
  }
}

/// out (T, D) = rmsnorm(x (T, D)) * scale (D). out may alias x.
inline void rms_norm(cpu_reference, MatrixView<const float> x, VectorView<const bf16> scale,
                     float eps, MatrixView<float> out) {
  const index_t t_count = x.extent(0), d = x.extent(1);
  check_rms_norm_shapes(x, scale, out);
  for (index_t t = 0; t < t_count; ++t) {
    double sum = 0.0;
    for (index_t i = 0; i < d; ++i) sum += static_cast<double>(x(t, i)) * x(t, i);
    const double inv = 1.0 / std::sqrt(sum / static_cast<double>(d) + eps);
    for (index_t i = 0; i < d; ++i) {
      out(t, i) = static_cast<float>(x(t, i) * inv * scale[i].to_float());
    }
  }
}

}  // namespace gptoss::kernels
