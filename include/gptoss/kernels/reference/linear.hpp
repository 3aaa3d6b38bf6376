// Reference (oracle) linear layer: y = x W^T + b with float64 accumulation.
#pragma once

#include <array>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/weight_matrix.hpp"

namespace gptoss::kernels {

/// Throws ShapeError unless W (N, K), x (T, K), y (T, N) and bias (N or
/// empty) fit. Every backend's linear checks this first.
inline void check_linear_shapes(index_t n, index_t k, VectorView<const bf16> bias, MatrixView<const float> x,
                                MatrixView<float> y) {
  if (x.extent(1) != k || y.extent(0) != x.extent(0) || y.extent(1) != n ||
      (!bias.empty() && bias.extent(0) != n)) {
    throw ShapeError("linear: weight " + shape_string(std::array{n, k}) + ", input " +
                     shape_string(x.shape()) + ", output " + shape_string(y.shape()) +
                     ", bias " + shape_string(bias.shape()) + " do not fit");
  }
}

/// y (T, N) = x (T, K) W^T (W: (N, K)) + bias (N, optional: empty view = no bias).
template <WeightMatrix W>
void linear(cpu_reference, const W& w, VectorView<const bf16> bias, MatrixView<const float> x,
            MatrixView<float> y) {
  const index_t n = rows(w), k = cols(w), t_count = x.extent(0);
  check_linear_shapes(n, k, bias, x, y);
  std::vector<float> row(static_cast<std::size_t>(k));
  for (index_t o = 0; o < n; ++o) {
    decode_row(w, o, row);
    const double b = bias.empty() ? 0.0 : bias[o].to_float();
    for (index_t t = 0; t < t_count; ++t) {
      const float* xt = x.data() + t * k;  // (not &x(t, 0): x may be empty)
      double acc = 0.0;
      for (index_t i = 0; i < k; ++i) acc += static_cast<double>(row[i]) * xt[i];
      y(t, o) = static_cast<float>(acc + b);
    }
  }
}

}  // namespace gptoss::kernels
