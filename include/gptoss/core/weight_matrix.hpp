// The WeightMatrix concept: any (rows, cols) matrix a linear layer can
// multiply by, whatever its storage (float, bf16, MXFP4, NVFP4, int8 blocks). Kernels see weights
// only through rows(), cols() and decode_row(), so a new storage format plugs
// in by providing these three free functions.
#pragma once

#include <concepts>
#include <span>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/formats/int8_matrix.hpp"

namespace gptoss {

template <class T>
  requires(std::same_as<T, float> || std::same_as<T, bf16>)
index_t rows(const MatrixView<const T>& w) noexcept { return w.extent(0); }
template <class T>
  requires(std::same_as<T, float> || std::same_as<T, bf16>)
index_t cols(const MatrixView<const T>& w) noexcept { return w.extent(1); }

/// Row r of a float or bf16 matrix, widened to float.
template <class T>
  requires(std::same_as<T, float> || std::same_as<T, bf16>)
void decode_row(const MatrixView<const T>& w, index_t r, std::span<float> out) noexcept {
  const T* row = w.data() + r * w.extent(1);
  for (index_t c = 0; c < w.extent(1); ++c) {
    if constexpr (std::same_as<T, float>) {
      out[c] = row[c];
    } else {
      out[c] = row[c].to_float();
    }
  }
}

template <class F>
index_t rows(const FP4TensorView<F>& w) noexcept { return w.rows(); }
template <class F>
index_t cols(const FP4TensorView<F>& w) noexcept { return w.cols(); }
template <class F>
void decode_row(const FP4TensorView<F>& w, index_t r, std::span<float> out) noexcept {
  w.decode_row(r, out);
}

/// A matrix usable as linear-layer weights.
template <class W>
concept WeightMatrix = requires(const W& w, index_t r, std::span<float> out) {
  { rows(w) } -> std::convertible_to<index_t>;
  { cols(w) } -> std::convertible_to<index_t>;
  decode_row(w, r, out);
};

static_assert(WeightMatrix<MatrixView<const float>> && WeightMatrix<MatrixView<const bf16>> &&
              WeightMatrix<FP4TensorView<MXFP4Checkpoint>> && WeightMatrix<FP4TensorView<NVFP4>> &&
              WeightMatrix<Int8MatrixView>);

}  // namespace gptoss
