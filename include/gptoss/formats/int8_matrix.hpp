// 8-bit dense weights: each row cut into blocks of 32 elements, every block
// stored as 32 int8 values q in [-127, 127] and one fp32 scale s = max|w| / 127,
// so that element i decodes to float(q_i) * s (one fp32 multiply). Rows are
// padded with zeros to whole blocks. Int8Matrix owns the data (made once,
// from bf16 weights, by quantize_int8); Int8MatrixView is what kernels take.
// An optional path for the attention projections and the unembedding: about
// 1.125 bytes per weight (with the scales) instead of bf16's 2, at an error per weight
// of at most 1/254 of its block's largest magnitude.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss {

inline constexpr index_t kInt8BlockSize = 32;

/// Blocks of 32 that hold a row of `cols` values (the last one padded).
constexpr index_t int8_blocks_per_row(index_t cols) noexcept { return (cols + kInt8BlockSize - 1) / kInt8BlockSize; }

/// Non-owning view: values (rows, blocks_per_row * 32), scales (rows, blocks_per_row).
class Int8MatrixView {
 public:
  Int8MatrixView() = default;
  Int8MatrixView(const std::int8_t* values, const float* scales, index_t rows, index_t cols) noexcept
      : values_(values), scales_(scales), rows_(rows), cols_(cols) {}

  bool empty() const noexcept { return values_ == nullptr; }
  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  index_t blocks_per_row() const noexcept { return int8_blocks_per_row(cols_); }
  index_t row_stride() const noexcept { return blocks_per_row() * kInt8BlockSize; }
  const std::int8_t* values() const noexcept { return values_; }  // (rows, row_stride)
  const float* scales() const noexcept { return scales_; }         // (rows, blocks_per_row)

  float at(index_t r, index_t c) const noexcept {
    return static_cast<float>(values_[r * row_stride() + c]) * scales_[r * blocks_per_row() + c / kInt8BlockSize];
  }
  /// Row r decoded to float (out holds cols() values).
  void decode_row(index_t r, std::span<float> out) const noexcept {
    for (index_t c = 0; c < cols_; ++c) out[static_cast<std::size_t>(c)] = at(r, c);
  }

 private:
  const std::int8_t* values_ = nullptr;
  const float* scales_ = nullptr;
  index_t rows_ = 0, cols_ = 0;
};

/// Owning 8-bit matrix. A new matrix's contents are unspecified until
/// quantize_int8_rows has filled its rows.
class Int8Matrix {
 public:
  Int8Matrix() = default;
  Int8Matrix(index_t rows, index_t cols)
      : rows_(rows), cols_(cols), values_(static_cast<std::size_t>(rows * int8_blocks_per_row(cols) * kInt8BlockSize)),
        scales_(static_cast<std::size_t>(rows * int8_blocks_per_row(cols))) {}

  Int8MatrixView view() const noexcept { return {values_.data(), scales_.data(), rows_, cols_}; }
  std::span<std::int8_t> values() noexcept { return values_; }
  std::span<float> scales() noexcept { return scales_; }
  /// Bytes held (values and scales).
  std::size_t bytes() const noexcept { return values_.size() + scales_.size() * sizeof(float); }

 private:
  index_t rows_ = 0, cols_ = 0;
  std::vector<std::int8_t, HugePageAllocator<std::int8_t, true>> values_;  // filled by quantize_int8_rows
  std::vector<float, HugePageAllocator<float, true>> scales_;
};

/// Quantizes rows [r0, r1) of bf16 weights w (rows, cols) into out (made
/// with the same shape): per block of 32, s = max|w| / 127 and q = w · 127 / max|w|
/// rounded to the nearest integer (ties away from zero); a block of zeros gets
/// s = 0 and q = 0. A non-finite weight is
/// a RangeError naming `what` and the element.
inline void quantize_int8_rows(MatrixView<const bf16> w, Int8Matrix& out, index_t r0, index_t r1,
                               const std::string& what) {
  const index_t cols = w.extent(1);
  const Int8MatrixView shape = out.view();
  if (shape.rows() != w.extent(0) || shape.cols() != cols) {
    throw ShapeError(what + ": 8-bit matrix " + shape_string(std::array{shape.rows(), shape.cols()}) +
                     " for weights " + shape_string(w.shape()));
  }
  const index_t stride = shape.row_stride(), blocks = shape.blocks_per_row();
  std::int8_t* values = out.values().data();
  float* scales = out.scales().data();
  float block[kInt8BlockSize];
  for (index_t r = r0; r < r1; ++r) {
    const bf16* row = w.data() + r * cols;
    for (index_t b = 0; b < blocks; ++b) {
      const index_t c0 = b * kInt8BlockSize, count = std::min(cols - c0, kInt8BlockSize);
      float max_abs = 0.0f;
      bool finite = true;
      for (index_t i = 0; i < count; ++i) {
        block[i] = row[c0 + i].to_float();
        finite = finite && std::isfinite(block[i]);
        max_abs = std::max(max_abs, std::fabs(block[i]));
      }
      if (!finite) {
        const index_t c = c0 + (std::find_if(block, block + count, [](float v) { return !std::isfinite(v); }) - block);
        throw RangeError(what + ": cannot quantize the non-finite weight at (" + std::to_string(r) + ", " +
                         std::to_string(c) + ") to 8 bits");
      }
      const float scale = max_abs / 127.0f;
      scales[r * blocks + b] = scale;
      // q = w / s rounded half away from zero, by truncation (|w / s| <= 127
      // plus rounding, so the conversion is in range); clamped to +-127.
      // Blocks under 2^-64 are scaled up by 2^64 first (exactly): for max
      // |w| below about 3.7e-37, 127 / max |w| would overflow to infinity.
      const float boost = max_abs < 0x1p-64f ? 0x1p64f : 1.0f;
      const float inverse = max_abs > 0.0f ? 127.0f / (max_abs * boost) : 0.0f;
      std::int8_t* q = values + r * stride + c0;
      for (index_t i = 0; i < count; ++i) {
        const float t = block[i] * boost * inverse;
        const int rounded = static_cast<int>(t + (t >= 0.0f ? 0.5f : -0.5f));
        q[i] = static_cast<std::int8_t>(std::clamp(rounded, -127, 127));
      }
      std::fill(q + count, q + kInt8BlockSize, std::int8_t{0});  // padding of the last block
    }
  }
}

/// The whole matrix: see quantize_int8_rows.
inline Int8Matrix quantize_int8(MatrixView<const bf16> w, const std::string& what) {
  Int8Matrix out(w.extent(0), w.extent(1));
  quantize_int8_rows(w, out, 0, w.extent(0), what);
  return out;
}

// WeightMatrix interface (see core/weight_matrix.hpp).
inline index_t rows(const Int8MatrixView& w) noexcept { return w.rows(); }
inline index_t cols(const Int8MatrixView& w) noexcept { return w.cols(); }
inline void decode_row(const Int8MatrixView& w, index_t r, std::span<float> out) noexcept { w.decode_row(r, out); }

}  // namespace gptoss
