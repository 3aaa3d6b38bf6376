// Portable micro-kernels of the fast linear layer: xsimd with the build's
// default architecture (SSE2 on a plain x86-64 build, NEON on AArch64). One
// row at a time; each 32-element chunk of the row is decoded exactly into a
// 32-float stack buffer (one chunk, never the matrix) and multiplied with up
// to TT tokens. x is in natural order, padded with zeros to whole chunks;
// acc is (1, TT, lanes). See linear_avx512.hpp for the tiling contract.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gptoss/kernels/fast/linear_avx2.hpp"
#include "gptoss/kernels/fast/linear_avx512.hpp"

#if __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#endif

namespace gptoss::kernels::fast {

#if __has_include(<xsimd/xsimd.hpp>) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
inline constexpr bool kHavePortableSimd = true;
using portable_batch = xsimd::batch<float>;
inline constexpr int kPortableLanes = static_cast<int>(portable_batch::size);

/// Decodes elements [32 c, 32 c + 32) of a weight row into out (zeros past
/// the row's end).
inline void decode_chunk32(const Mxfp4Rows& w, int64_t row, int64_t c, float* out) {
  const float* scaled = scaled_e2m1_table() + 16 * w.scales[row * w.blocks_per_row + c];
  const std::uint8_t* bytes = w.blocks + (row * w.blocks_per_row + c) * 16;
  for (int j = 0; j < 16; ++j) {
    out[2 * j] = scaled[bytes[j] & 0x0f];
    out[2 * j + 1] = scaled[bytes[j] >> 4];
  }
}
inline void decode_chunk32(const DenseRows<float>& w, int64_t row, int64_t c, float* out) {
  const int64_t count = std::min<int64_t>(32, w.cols - 32 * c);
  std::memcpy(out, w.data + row * w.cols + 32 * c, static_cast<std::size_t>(count) * sizeof(float));
  std::fill(out + count, out + 32, 0.0f);
}
inline void decode_chunk32(const DenseRows<bf16>& w, int64_t row, int64_t c, float* out) {
  const int64_t count = std::min<int64_t>(32, w.cols - 32 * c);
  const bf16* src = w.data + row * w.cols + 32 * c;
  for (int64_t i = 0; i < count; ++i) out[i] = src[i].to_float();
  std::fill(out + count, out + 32, 0.0f);
}

inline void decode_chunk32(const Int8Rows& w, int64_t row, int64_t c, float* out) {
  const float scale = w.scales[row * w.blocks_per_row + c];
  const std::int8_t* q = w.values + (row * w.blocks_per_row + c) * 32;
  for (int i = 0; i < 32; ++i) out[i] = static_cast<float>(q[i]) * scale;
}

/// One row x TT tokens over chunks [c0, c1) of 32 elements.
template <int R, int TT, class Rows>
void tile_portable(const Rows& w, int64_t row, int64_t c0, int64_t c1, const float* x,
                   int64_t x_stride, float* acc) {
  static_assert(R == 1, "the portable kernels take one row at a time");
  constexpr int L = kPortableLanes;
  const int64_t r = std::min(row, w.rows - 1);
  portable_batch a[TT];
  for (int j = 0; j < TT; ++j) a[j] = portable_batch::load_unaligned(acc + j * L);
  alignas(64) float decoded[32];
  for (int64_t c = c0; c < c1; ++c) {
    decode_chunk32(w, r, c, decoded);
    for (int v = 0; v < 32; v += L) {
      const portable_batch wv = portable_batch::load_aligned(decoded + v);
      for (int j = 0; j < TT; ++j) {
        a[j] = xsimd::fma(wv, portable_batch::load_unaligned(x + j * x_stride + 32 * c + v), a[j]);
      }
    }
  }
  for (int j = 0; j < TT; ++j) a[j].store_unaligned(acc + j * L);
}
#else
inline constexpr bool kHavePortableSimd = false;
inline constexpr int kPortableLanes = 1;
#endif

}  // namespace gptoss::kernels::fast
