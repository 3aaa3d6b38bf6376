// FP4Tensor: FP4 block-quantized matrices: MXFP4 (OCP Microscaling, as in
// the gpt-oss checkpoints) and NVFP4 (formats/nvfp4.hpp), chosen by the
// Format type parameter.
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

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/e2m1.hpp"
#include "gptoss/formats/e8m0.hpp"
#include "gptoss/formats/fp4_rules.hpp"
#include "gptoss/formats/nvfp4.hpp"

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
  static constexpr bool kHasGlobalScale = false;
  static constexpr const char* kName = "mxfp4";

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

  /// The decoded element: value * 2^(s - 127) (MXFP4 has no global scale).
  static float apply(float value, std::uint8_t scale, float /*global*/) noexcept {
    return e8m0::apply(value, scale);
  }
  /// What elements are divided by before rounding to E2M1: 2^(s - 127).
  static float divisor(std::uint8_t scale, float /*global*/) noexcept { return e8m0::apply(1.0f, scale); }
  static float global_scale_for(float /*amax*/, GlobalScale /*rule*/) noexcept { return 1.0f; }

  /// The OCP scale byte for a block whose largest magnitude is amax.
  static std::uint8_t ocp_scale(float amax) noexcept {
    if (amax == 0.0f) return 0;
    if (std::isinf(amax)) return e8m0::from_exponent(e8m0::kBias);
    int e = 0;
    std::frexp(amax, &e);  // amax = m 2^e, m in [0.5, 1): floor(log2 amax) = e - 1
    return e8m0::from_exponent(e - 1 - e2m1::kEmax);
  }
  /// Candidate scale bytes for a block, the OCP one first; returns how many
  /// were written (at most 3). Byte 255 (2^128, not a finite float) is never used.
  static int scale_candidates(float amax, float /*global*/, ScaleRule rule, std::uint8_t* out) noexcept {
    const std::uint8_t s = ocp_scale(amax);
    int n = 0;
    out[n++] = s;
    if (rule == ScaleRule::search) {
      if (s < 254) out[n++] = static_cast<std::uint8_t>(s + 1);
      if (s > 0) out[n++] = static_cast<std::uint8_t>(s - 1);
    }
    return n;
  }
};

using MXFP4Checkpoint = MXFP4<NibbleOrder::interleaved>;
using MXFP4SplitHalf = MXFP4<NibbleOrder::split_half>;

/// A non-owning view of a (rows, cols) FP4 matrix.
template <class Format = MXFP4Checkpoint>
class FP4TensorView {
 public:
  using format = Format;
  static constexpr int kBlockSize = Format::kBlockSize;
  static constexpr int kBytesPerBlock = Format::kBytesPerBlock;

  FP4TensorView() = default;

  /// Wraps raw arrays: blocks (rows, cols/B, B/2), scales (rows, cols/B),
  /// with B = kBlockSize; global_scale is NVFP4's per-tensor scale.
  FP4TensorView(const std::uint8_t* blocks, const std::uint8_t* scales, index_t rows, index_t cols,
                float global_scale = 1.0f)
      : blocks_(blocks), scales_(scales), rows_(rows), cols_(cols), global_scale_(global_scale) {
    if (rows < 0 || cols < 0 || cols % kBlockSize != 0) {
      throw ShapeError("FP4TensorView: shape " + shape_string(std::array{rows, cols}) +
                       " needs cols divisible by " + std::to_string(kBlockSize));
    }
  }

  /// Wraps checkpoint tensors: blocks (..., G, 16) and scales (..., G); the
  /// leading dimensions are flattened into rows, cols = 32 G.
  template <std::size_t RB, std::size_t RS>
  static FP4TensorView from_blocks(TensorView<const std::uint8_t, RB> blocks,
                                   TensorView<const std::uint8_t, RS> scales, float global_scale = 1.0f) {
    static_assert(RB == RS + 1, "blocks have one more dimension than scales");
    bool ok = blocks.extent(RB - 1) == kBytesPerBlock;
    for (std::size_t d = 0; d < RS; ++d) ok = ok && blocks.extent(d) == scales.extent(d);
    if (!ok) {
      throw ShapeError(std::string(Format::kName) + " blocks " + shape_string(blocks.shape()) + " and scales " +
                       shape_string(scales.shape()) + " disagree: expected blocks (..., G, " +
                       std::to_string(kBytesPerBlock) + ") and scales (..., G)");
    }
    const index_t groups = scales.extent(RS - 1);
    const index_t rows = groups ? scales.size() / groups : 0;
    return FP4TensorView(blocks.data(), scales.data(), rows, groups * kBlockSize, global_scale);
  }

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  index_t blocks_per_row() const noexcept { return cols_ / kBlockSize; }
  const std::uint8_t* blocks() const noexcept { return blocks_; }
  const std::uint8_t* scales() const noexcept { return scales_; }
  float global_scale() const noexcept { return global_scale_; }
  /// Bytes of storage: 17 per 32 elements (MXFP4), 9 per 16 (NVFP4).
  index_t nbytes() const noexcept { return rows_ * blocks_per_row() * (kBytesPerBlock + 1); }

  /// Rows [begin, end) as a view.
  FP4TensorView row_range(index_t begin, index_t end) const noexcept {
    FP4TensorView v = *this;
    v.blocks_ += begin * blocks_per_row() * kBytesPerBlock;
    v.scales_ += begin * blocks_per_row();
    v.rows_ = end - begin;
    return v;
  }

  /// Decodes element (r, c) exactly (reference semantics: Format::apply,
  /// for MXFP4 code value * 2^(s-127)).
  float at(index_t r, index_t c) const noexcept {
    const index_t b = r * blocks_per_row() + c / kBlockSize;
    std::uint8_t codes[kBlockSize];
    Format::unpack(blocks_ + b * kBytesPerBlock, codes);
    return Format::apply(e2m1::decode(codes[c % kBlockSize]), scales_[b], global_scale_);
  }

  /// Decodes row r into out (cols floats), exactly.
  void decode_row(index_t r, std::span<float> out) const noexcept {
    std::uint8_t codes[kBlockSize];
    for (index_t g = 0; g < blocks_per_row(); ++g) {
      const index_t b = r * blocks_per_row() + g;
      Format::unpack(blocks_ + b * kBytesPerBlock, codes);
      for (int i = 0; i < kBlockSize; ++i) {
        out[g * kBlockSize + i] = Format::apply(e2m1::decode(codes[i]), scales_[b], global_scale_);
      }
    }
  }

 private:
  const std::uint8_t* blocks_ = nullptr;
  const std::uint8_t* scales_ = nullptr;
  index_t rows_ = 0;
  index_t cols_ = 0;
  float global_scale_ = 1.0f;
};

/// An owning (rows, cols) FP4 matrix.
template <class Format = MXFP4Checkpoint>
class FP4Tensor {
 public:
  using format = Format;
  /// Codes and scale bytes: large tensors get huge pages (core/huge_pages.hpp).
  using Storage = std::vector<std::uint8_t, HugePageAllocator<std::uint8_t>>;
  static constexpr int kBlockSize = Format::kBlockSize;
  static constexpr int kBytesPerBlock = Format::kBytesPerBlock;

  FP4Tensor() = default;
  /// All-zero storage (codes 0, scale bytes 0).
  FP4Tensor(index_t rows, index_t cols)
      : rows_(rows), cols_(cols), blocks_(checked_blocks(rows, cols) * kBytesPerBlock),
        scales_(checked_blocks(rows, cols)) {}

  /// Quantizes a float matrix, one quantizer for every format:
  ///  - the per-tensor scale g = Format::global_scale_for(amax) (NVFP4:
  ///    amax / (448 * 6), see GlobalScale; MXFP4: none);
  ///  - each block's scale by `rule`: ScaleRule::ocp is the format's standard
  ///    scale (MXFP4: 2^(floor(log2 amax) - 2), clamped to the E8M0 range, an
  ///    all-zero block gets byte 0; NVFP4: e4m3(amax / (6 g))); ScaleRule::search
  ///    also tries one scale step up and one down and keeps the scale whose
  ///    decoded block has the least squared error (ties: the earlier candidate);
  ///  - elements are divided by the block's decoded scale, rounded to the
  ///    nearest E2M1 value, ties to even, and saturate at +-6.
  /// Never produces NaN: a NaN input is rejected with RangeError naming the
  /// element (NVFP4 also rejects infinities, which have no finite global scale).
  static FP4Tensor quantize(MatrixView<const float> x, ScaleRule rule = ScaleRule::ocp,
                            GlobalScale global = GlobalScale::amax) {
    FP4Tensor q(x.extent(0), x.extent(1));
    float tensor_amax = 0.0f;
    for (index_t r = 0; r < q.rows_; ++r) {
      for (index_t c = 0; c < q.cols_; ++c) {
        const float v = x(r, c);
        if (std::isnan(v) || (Format::kHasGlobalScale && std::isinf(v))) {
          throw RangeError("FP4Tensor::quantize: " + std::string(std::isnan(v) ? "NaN" : "infinity") +
                           " at element (" + std::to_string(r) + ", " + std::to_string(c) + ")");
        }
        tensor_amax = std::fmax(tensor_amax, std::fabs(v));
      }
    }
    q.global_ = Format::global_scale_for(tensor_amax, global);
    std::uint8_t codes[kBlockSize], trial[kBlockSize], candidates[3];
    for (index_t r = 0; r < q.rows_; ++r) {
      for (index_t g = 0; g < q.cols_ / kBlockSize; ++g) {
        const float* v = &x(r, g * kBlockSize);
        float amax = 0.0f;
        for (int i = 0; i < kBlockSize; ++i) amax = std::fmax(amax, std::fabs(v[i]));
        const int n = Format::scale_candidates(amax, q.global_, rule, candidates);
        std::uint8_t scale = candidates[0];
        double best = encode_block(v, scale, q.global_, codes, n > 1);
        for (int k = 1; k < n; ++k) {
          const double err = encode_block(v, candidates[k], q.global_, trial, true);
          if (err < best) {
            best = err;
            scale = candidates[k];
            std::copy_n(trial, kBlockSize, codes);
          }
        }
        const index_t b = r * (q.cols_ / kBlockSize) + g;
        q.scales_[b] = scale;
        Format::pack(codes, q.blocks_.data() + b * kBytesPerBlock);
      }
    }
    return q;
  }

  /// The OCP scale byte for a block whose largest magnitude is amax (MXFP4).
  static std::uint8_t scale_for(float amax) noexcept
    requires requires(float a) { Format::ocp_scale(a); }
  {
    return Format::ocp_scale(amax);
  }

  FP4TensorView<Format> view() const {
    return FP4TensorView<Format>(blocks_.data(), scales_.data(), rows_, cols_, global_);
  }
  operator FP4TensorView<Format>() const { return view(); }  // NOLINT(implicit)

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  Storage& blocks() noexcept { return blocks_; }
  Storage& scales() noexcept { return scales_; }
  const Storage& blocks() const noexcept { return blocks_; }
  const Storage& scales() const noexcept { return scales_; }
  float global_scale() const noexcept { return global_; }

 private:
  /// Rounds one block's elements to E2M1 codes at scale byte s; returns the
  /// squared error of the decoded block (float64) when `measure`, else 0.
  static double encode_block(const float* v, std::uint8_t s, float global, std::uint8_t* codes, bool measure) {
    const float d = Format::divisor(s, global);
    double err = 0.0;
    for (int i = 0; i < kBlockSize; ++i) {
      codes[i] = d > 0.0f ? e2m1::encode(v[i] / d) : e2m1::encode(0.0f * v[i]);
      if (measure) {
        const double e = static_cast<double>(v[i]) - Format::apply(e2m1::decode(codes[i]), s, global);
        err += e * e;
      }
    }
    return err;
  }

  static std::size_t checked_blocks(index_t rows, index_t cols) {
    if (rows < 0 || cols < 0 || cols % kBlockSize != 0) {
      throw ShapeError("FP4Tensor: shape " + shape_string(std::array{rows, cols}) +
                       " needs cols divisible by " + std::to_string(kBlockSize));
    }
    return static_cast<std::size_t>(rows * (cols / kBlockSize));
  }

  index_t rows_ = 0;
  index_t cols_ = 0;
  Storage blocks_;
  Storage scales_;
  float global_ = 1.0f;
};

/// Decodes a whole FP4 matrix to float (exact).
template <class Format>
Tensor<float, 2> dequantize(const FP4TensorView<Format>& w) {
  Tensor<float, 2> out({w.rows(), w.cols()});
  for (index_t r = 0; r < w.rows(); ++r) {
    w.decode_row(r, std::span<float>(out.data() + r * w.cols(), static_cast<std::size_t>(w.cols())));
  }
  return out;
}

}  // namespace gptoss
