// Reference rotary embedding application (half-split rotation, as gpt-oss):
// with x = [x1, x2] split in halves, out = [x1 cos - x2 sin, x2 cos + x1 sin].
#pragma once

#include "gptoss/core/backend.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss::kernels {

/// Throws ShapeError unless x is (T, H, D) with D even and cos and sin are
/// both (T, D/2). Every backend's apply_rotary checks this first.
inline void check_rotary_shapes(TensorView<float, 3> x, MatrixView<const float> cos, MatrixView<const float> sin) {
  const index_t t_count = x.extent(0), half = x.extent(2) / 2;
  if (x.extent(2) % 2 != 0 || cos.extent(0) != t_count || cos.extent(1) != half ||
      sin.shape() != cos.shape()) {
    throw ShapeError("apply_rotary: x " + shape_string(x.shape()) + ", cos " +
                     shape_string(cos.shape()) + ", sin " + shape_string(sin.shape()) +
                     " do not fit");
  }
}

/// Rotates x (T, H, D) in place; cos and sin are (T, D/2), already scaled by
/// the YaRN concentration.
inline void apply_rotary(cpu_reference, TensorView<float, 3> x, MatrixView<const float> cos,
                         MatrixView<const float> sin) {
  const index_t t_count = x.extent(0), heads = x.extent(1), half = x.extent(2) / 2;
  check_rotary_shapes(x, cos, sin);
  for (index_t t = 0; t < t_count; ++t) {
    for (index_t h = 0; h < heads; ++h) {
      for (index_t i = 0; i < half; ++i) {
        const float x1 = x(t, h, i), x2 = x(t, h, i + half);
        const float c = cos(t, i), s = sin(t, i);
        x(t, h, i) = x1 * c - x2 * s;
        x(t, h, i + half) = x2 * c + x1 * s;
      }
    }
  }
}

}  // namespace gptoss::kernels
