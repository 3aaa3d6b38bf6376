// Reference clipped SwiGLU of gpt-oss: the gate is x[..., 0::2] (clamped
// above at limit), the linear half is x[..., 1::2] (clamped to +-limit), and
// out = glu * sigmoid(alpha * glu) * (linear + 1).
#pragma once

#include <algorithm>
#include <cmath>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss::kernels {

inline constexpr float kSwigluAlpha = 1.702f;

/// One element pair, in float64.
inline double swiglu_pair(double glu, double linear, double alpha, double limit) noexcept {
  glu = std::min(glu, limit);  // NaN stays NaN in both clamps
  linear = std::clamp(linear, -limit, limit);
  return glu / (1.0 + std::exp(-alpha * glu)) * (linear + 1.0);
}

/// out (T, I) = swiglu(x (T, 2I)) with interleaved (gate, linear) columns.
inline void swiglu(cpu_reference, MatrixView<const float> x, float alpha, float limit,
                   MatrixView<float> out) {
  if (x.extent(1) % 2 != 0 || out.extent(0) != x.extent(0) || out.extent(1) * 2 != x.extent(1)) {
    throw ShapeError("swiglu: input " + shape_string(x.shape()) + " and output " +
                     shape_string(out.shape()) + " do not fit (expected (T, 2I) -> (T, I))");
  }
  for (index_t t = 0; t < x.extent(0); ++t) {
    for (index_t i = 0; i < out.extent(1); ++i) {
      out(t, i) = static_cast<float>(swiglu_pair(x(t, 2 * i), x(t, 2 * i + 1), alpha, limit));
    }
  }
}

}  // namespace gptoss::kernels
