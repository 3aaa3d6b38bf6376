// A bf16 projection that may carry an 8-bit copy (quantize_dense_int8): the
// one place that decides which of the two a layer multiplies by, and checks
// that a bound copy has its weight's shape.
#pragma once

#include <array>
#include <string>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/int8_matrix.hpp"
#include "gptoss/kernels/fast/linear.hpp"

namespace gptoss {

/// y (T, N) = x (T, K) W^T + bias by the 8-bit copy `int8` when it is bound,
/// else by the bf16 `weight` (N, K). A copy of another shape is a ShapeError
/// naming `what`.
template <class Backend>
void dense_projection(const Int8MatrixView& int8, MatrixView<const bf16> weight, VectorView<const bf16> bias,
                      MatrixView<const float> x, MatrixView<float> y, const char* what) {
  if (int8.empty()) {
    kernels::linear(Backend{}, weight, bias, x, y);
    return;
  }
  if (int8.rows() != weight.extent(0) || int8.cols() != weight.extent(1)) {
    throw ShapeError(std::string(what) + ": 8-bit copy " + shape_string(std::array{int8.rows(), int8.cols()}) +
                     " does not match its weight " + shape_string(weight.shape()));
  }
  kernels::linear(Backend{}, int8, bias, x, y);
}

}  // namespace gptoss
