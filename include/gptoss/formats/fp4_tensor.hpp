// FP4Tensor: MXFP4 block-quantized matrices (OCP Microscaling, as in the
// gpt-oss checkpoints).
//
// A (rows, cols) matrix is stored as two arrays, exactly as the checkpoint
// stores them:
//   blocks  (rows, cols/32, 16) bytes: 32 E2M1 codes per block, two per byte;
//   scales  (rows, cols/32)     bytes: one E8M0 scale per block.
// Which element of a byte pair sits in the low nibble is part of the format
// type: NibbleOrder::interleaved is the gpt-oss checkpoint's order (element
// 2j low, 2j+1 high); NibbleOrder::split_half is ggml's (element j low, j+16
// high). FP4TensorView wraps existing bytes (e.g. a memory-mapped checkpoint)
// without copying; FP4Tensor owns its bytes and can be quantized from floats.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/e2m1.hpp"
#include "gptoss/formats/e8m0.hpp"

namespace gptoss {

enum class NibbleOrder {
  interleaved,  // gpt-oss checkpoint: element 2j in the low nibble, 2j+1 in the high
  split_half,   // ggml: element j in the low nibble, j+16 in the high
};

/// MXFP4: E2M1 elements, 32-element blocks, one E8M0 scale per block.
template <NibbleOrder Order>
struct MXFP4 {
  static constexpr int kBlockSize = 32;
  static constexpr int kBytesPerBlock = kBlockSize / 2;
  static constexpr NibbleOrder kOrder = Order;

  /// Unpacks one block's 16 bytes into 32 codes in element order.
  static constexpr void unpack(const std::uint8_t* bytes, std::uint8_t* codes) noexcept {
    for (int j = 0; j < kBytesPerBlock; ++j) {
      const std::uint8_t lo = bytes[j] & 0x0f, hi = bytes[j] >> 4;
      if constexpr (Order == NibbleOrder::interleaved) {
        codes[2 * j] = lo;
        codes[2 * j + 1] = hi;
      } else {
        codes[j] = lo;
        codes[j + kBytesPerBlock] = hi;
      }
    }
  }
  /// Packs 32 codes in element order into one block's 16 bytes.
  static constexpr void pack(const std::uint8_t* codes, std::uint8_t* bytes) noexcept {
    for (int j = 0; j < kBytesPerBlock; ++j) {
      if constexpr (Order == NibbleOrder::interleaved) {
        bytes[j] = static_cast<std::uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
      } else {
        bytes[j] = static_cast<std::uint8_t>(codes[j] | (codes[j + kBytesPerBlock] << 4));
      }
    }
  }
};

using MXFP4Checkpoint = MXFP4<NibbleOrder::interleaved>;
using MXFP4SplitHalf = MXFP4<NibbleOrder::split_half>;

/// A non-owning view of a (rows, cols) MXFP4 matrix.
template <class Format = MXFP4Checkpoint>
class FP4TensorView {
 public:
  using format = Format;
  static constexpr int kBlockSize = Format::kBlockSize;
  static constexpr int kBytesPerBlock = Format::kBytesPerBlock;

  FP4TensorView() = default;

  /// Wraps raw arrays: blocks (rows, cols/32, 16), scales (rows, cols/32).
  FP4TensorView(const std::uint8_t* blocks, const std::uint8_t* scales, index_t rows, index_t cols)
      : blocks_(blocks), scales_(scales), rows_(rows), cols_(cols) {
    if (rows < 0 || cols < 0 || cols % kBlockSize != 0) {
      throw ShapeError("FP4TensorView: shape " + shape_string(std::array{rows, cols}) +
                       " needs cols divisible by " + std::to_string(kBlockSize));
    }
  }

  /// Wraps checkpoint tensors: blocks (..., G, 16) and scales (..., G); the
  /// leading dimensions are flattened into rows, cols = 32 G.
  template <std::size_t RB, std::size_t RS>
  static FP4TensorView from_blocks(TensorView<const std::uint8_t, RB> blocks,
                                   TensorView<const std::uint8_t, RS> scales) {
    static_assert(RB == RS + 1, "blocks have one more dimension than scales");
    bool ok = blocks.extent(RB - 1) == kBytesPerBlock;
    for (std::size_t d = 0; d < RS; ++d) ok = ok && blocks.extent(d) == scales.extent(d);
    if (!ok) {
      throw ShapeError("MXFP4 blocks " + shape_string(blocks.shape()) + " and scales " +
                       shape_string(scales.shape()) + " disagree: expected blocks (..., G, " +
                       std::to_string(kBytesPerBlock) + ") and scales (..., G)");
    }
    const index_t groups = scales.extent(RS - 1);
    const index_t rows = groups ? scales.size() / groups : 0;
    return FP4TensorView(blocks.data(), scales.data(), rows, groups * kBlockSize);
  }

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  index_t blocks_per_row() const noexcept { return cols_ / kBlockSize; }
  const std::uint8_t* blocks() const noexcept { return blocks_; }
  const std::uint8_t* scales() const noexcept { return scales_; }
  /// Bytes of storage: 17 per 32 elements.
  index_t nbytes() const noexcept { return rows_ * blocks_per_row() * (kBytesPerBlock + 1); }

  /// Rows [begin, end) as a view.
  FP4TensorView row_range(index_t begin, index_t end) const noexcept {
    FP4TensorView v = *this;
    v.blocks_ += begin * blocks_per_row() * kBytesPerBlock;
    v.scales_ += begin * blocks_per_row();
    v.rows_ = end - begin;
    return v;
  }

  /// Decodes element (r, c) exactly (reference semantics: code value * 2^(s-127)).
  float at(index_t r, index_t c) const noexcept {
    const index_t b = r * blocks_per_row() + c / kBlockSize;
    std::uint8_t codes[kBlockSize];
    Format::unpack(blocks_ + b * kBytesPerBlock, codes);
    return e8m0::apply(e2m1::decode(codes[c % kBlockSize]), scales_[b]);
  }

  /// Decodes row r into out (cols floats), exactly.
  void decode_row(index_t r, std::span<float> out) const noexcept {
    std::uint8_t codes[kBlockSize];
    for (index_t g = 0; g < blocks_per_row(); ++g) {
      const index_t b = r * blocks_per_row() + g;
      Format::unpack(blocks_ + b * kBytesPerBlock, codes);
      for (int i = 0; i < kBlockSize; ++i) {
        out[g * kBlockSize + i] = e8m0::apply(e2m1::decode(codes[i]), scales_[b]);
      }
    }
  }

 private:
  const std::uint8_t* blocks_ = nullptr;
  const std::uint8_t* scales_ = nullptr;
  index_t rows_ = 0;
  index_t cols_ = 0;
};

/// An owning (rows, cols) MXFP4 matrix.
template <class Format = MXFP4Checkpoint>
class FP4Tensor {
 public:
  using format = Format;
  static constexpr int kBlockSize = Format::kBlockSize;
  static constexpr int kBytesPerBlock = Format::kBytesPerBlock;

  FP4Tensor() = default;
  /// All-zero storage (codes 0, scale bytes 0).
  FP4Tensor(index_t rows, index_t cols)
      : rows_(rows), cols_(cols), blocks_(checked_blocks(rows, cols) * kBytesPerBlock),
        scales_(checked_blocks(rows, cols)) {}

  /// Quantizes a float matrix per the OCP Microscaling spec: each block's
  /// scale is 2^(floor(log2(amax)) - 2) (clamped to the E8M0 range; an
  /// all-zero block gets byte 0), elements are rounded to nearest E2M1,
  /// ties to even, and saturate at +-6. Never produces NaN: a NaN input is
  /// rejected with RangeError naming the element.
  static FP4Tensor quantize(MatrixView<const float> x) {
    FP4Tensor q(x.extent(0), x.extent(1));
    std::uint8_t codes[kBlockSize];
    for (index_t r = 0; r < q.rows_; ++r) {
      for (index_t g = 0; g < q.cols_ / kBlockSize; ++g) {
        const float* v = &x(r, g * kBlockSize);
        float amax = 0.0f;
        for (int i = 0; i < kBlockSize; ++i) {
          if (std::isnan(v[i])) {
            throw RangeError("FP4Tensor::quantize: NaN at element (" + std::to_string(r) + ", " +
                             std::to_string(g * kBlockSize + i) + ")");
          }
          amax = std::fmax(amax, std::fabs(v[i]));
        }
        const std::uint8_t scale = scale_for(amax);
        const int e = e8m0::exponent(scale);
        for (int i = 0; i < kBlockSize; ++i) codes[i] = e2m1::encode(std::ldexp(v[i], -e));
        const index_t b = r * (q.cols_ / kBlockSize) + g;
        q.scales_[b] = scale;
        Format::pack(codes, q.blocks_.data() + b * kBytesPerBlock);
      }
    }
    return q;
  }

  /// The OCP scale byte for a block whose largest magnitude is amax.
  static std::uint8_t scale_for(float amax) noexcept {
    if (amax == 0.0f) return 0;
    if (std::isinf(amax)) return e8m0::from_exponent(e8m0::kBias);
    int e = 0;
    std::frexp(amax, &e);  // amax = m 2^e, m in [0.5, 1): floor(log2 amax) = e - 1
    return e8m0::from_exponent(e - 1 - e2m1::kEmax);
  }

  FP4TensorView<Format> view() const {
    return FP4TensorView<Format>(blocks_.data(), scales_.data(), rows_, cols_);
  }
  operator FP4TensorView<Format>() const { return view(); }  // NOLINT(implicit)

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  std::vector<std::uint8_t>& blocks() noexcept { return blocks_; }
  std::vector<std::uint8_t>& scales() noexcept { return scales_; }
  const std::vector<std::uint8_t>& blocks() const noexcept { return blocks_; }
  const std::vector<std::uint8_t>& scales() const noexcept { return scales_; }

 private:
  static std::size_t checked_blocks(index_t rows, index_t cols) {
    if (rows < 0 || cols < 0 || cols % kBlockSize != 0) {
      throw ShapeError("FP4Tensor: shape " + shape_string(std::array{rows, cols}) +
                       " needs cols divisible by " + std::to_string(kBlockSize));
    }
    return static_cast<std::size_t>(rows * (cols / kBlockSize));
  }

  index_t rows_ = 0;
  index_t cols_ = 0;
  std::vector<std::uint8_t> blocks_;
  std::vector<std::uint8_t> scales_;
};

/// Decodes a whole MXFP4 matrix to float (exact).
template <class Format>
Tensor<float, 2> dequantize(const FP4TensorView<Format>& w) {
  Tensor<float, 2> out({w.rows(), w.cols()});
  for (index_t r = 0; r < w.rows(); ++r) {
    w.decode_row(r, std::span<float>(out.data() + r * w.cols(), static_cast<std::size_t>(w.cols())));
  }
  return out;
}

}  // namespace gptoss
