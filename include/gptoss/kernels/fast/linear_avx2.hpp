// AVX2+FMA micro-kernels of the fast linear layer (8-lane accumulators,
// acc (R, TT, 8)); see linear_avx512.hpp for the tiling contract.
//
// MXFP4 here decodes one block at a time with an exact per-block table: the
// eight magnitudes times 2^(s - 127) (scaled_e2m1_table, computed with the
// reference's ldexp), looked up with vpermps on the low 3 bits of each code
// and signed by xor-ing code bit 3 into the float sign. Every scale byte is
// exact, so no row is ever flagged.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gptoss/formats/e2m1.hpp"
#include "gptoss/kernels/fast/linear_avx512.hpp"
#include "gptoss/kernels/fast/simd.hpp"

namespace gptoss::kernels::fast {

/// table[16 s + c] = E2M1 value of code c times 2^(s - 127), exactly as
/// e8m0::apply computes it (subnormal and infinite results included).
inline const float* scaled_e2m1_table() {
  static const auto table = [] {
    struct Table {
      alignas(64) float values[256 * 16];
    } t{};
    for (int s = 0; s < 256; ++s) {
      for (int c = 0; c < 16; ++c) t.values[16 * s + c] = std::ldexp(e2m1::kValues[c], s - 127);
    }
    return t;
  }();
  return table.values;
}

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

/// sums[i] = the sum of the 8 floats at acc + 8 i, for i < count.
GPTOSS_TARGET_AVX2 inline void sum_lanes8_avx2(const float* acc, int64_t count, float* sums) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const float* v = acc + 8 * i;
    __m256 h[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) h[k] = _mm256_hadd_ps(_mm256_loadu_ps(v + 16 * k), _mm256_loadu_ps(v + 16 * k + 8));
    const __m256 low = _mm256_hadd_ps(h[0], h[1]), high = _mm256_hadd_ps(h[2], h[3]);
    // low: vectors 0..3, 128-bit half each; high: vectors 4..7.
    _mm256_storeu_ps(sums + i, _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20),
                                             _mm256_permute2f128_ps(low, high, 0x31)));
  }
  for (; i < count; ++i) sums[i] = hsum_avx2(_mm256_loadu_ps(acc + 8 * i));
}

/// Signed weights for 8 codes (low nibble of each dword lane), with the
/// block's scaled magnitudes.
GPTOSS_TARGET_AVX2 inline __m256 decode_e2m1_avx2(__m256i codes, __m256 magnitudes) noexcept {
  const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(codes, 28),
                                        _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  return _mm256_xor_ps(_mm256_permutevar8x32_ps(magnitudes, codes), _mm256_castsi256_ps(sign));
}

/// MXFP4 x fp32 activations. x: per token, per block, 32 floats ordered
/// (0, 2, .., 14), (1, 3, .., 15), (16, 18, .., 30), (17, 19, .., 31).
template <int R, int TT>
GPTOSS_TARGET_AVX2 void mxfp4_f32_tile_avx2(const Mxfp4Rows& w, int64_t row, int64_t c0, int64_t c1,
                                            const float* x, int64_t x_stride, float* acc) {
  const float* table = scaled_e2m1_table();
  const int64_t nb = w.blocks_per_row;
  const int64_t row_bytes = nb * 16;  // rows [row, row + R) all exist
  const std::uint8_t* blocks = w.blocks + row * row_bytes;
  const std::uint8_t* scales = w.scales + row * nb;
  __m256 a[R][TT];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) a[i][j] = _mm256_loadu_ps(acc + (i * TT + j) * 8);
  }
  for (int64_t b = c0; b < c1; ++b) {
    const float* xb = x + 32 * b;
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 magnitudes = _mm256_loadu_ps(table + 16 * scales[i * nb + b]);
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + i * row_bytes + 16 * b));
      const __m256i low_bytes = _mm256_cvtepu8_epi32(raw);
      const __m256i high_bytes = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(raw, raw));
      const __m256 w0 = decode_e2m1_avx2(low_bytes, magnitudes);
      const __m256 w1 = decode_e2m1_avx2(_mm256_srli_epi32(low_bytes, 4), magnitudes);
      const __m256 w2 = decode_e2m1_avx2(high_bytes, magnitudes);
      const __m256 w3 = decode_e2m1_avx2(_mm256_srli_epi32(high_bytes, 4), magnitudes);
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) {
        const float* xp = xb + j * x_stride;
        a[i][j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp), a[i][j]);
        a[i][j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp + 8), a[i][j]);
        a[i][j] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xp + 16), a[i][j]);
        a[i][j] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xp + 24), a[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) _mm256_storeu_ps(acc + (i * TT + j) * 8, a[i][j]);
  }
}

/// fp32 weights x fp32 activations; chunks of 8, x in natural order.
template <int R, int TT>
GPTOSS_TARGET_AVX2 void dense_f32_tile_avx2(const DenseRows<float>& w, int64_t row, int64_t c0,
                                            int64_t c1, const float* x, int64_t x_stride,
                                            float* acc) {
  const int64_t k = w.cols, full_chunks = k / 8;
  const __m256i tail_mask = first_lanes8_avx2(k - 8 * full_chunks);
  const float* base = w.data + row * k;  // rows [row, row + R) all exist
  __m256 a[R][TT];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) a[i][j] = _mm256_loadu_ps(acc + (i * TT + j) * 8);
  }
  for (int64_t c = c0; c < c1; ++c) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 wv = c < full_chunks ? _mm256_loadu_ps(base + i * k + 8 * c)
                                        : _mm256_maskload_ps(base + i * k + 8 * c, tail_mask);
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) {
        a[i][j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * x_stride + 8 * c), a[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) _mm256_storeu_ps(acc + (i * TT + j) * 8, a[i][j]);
  }
}

/// bf16 weights x fp32 activations; chunks of 16, x per chunk as 8 even-
/// then 8 odd-indexed elements.
template <int R, int TT>
GPTOSS_TARGET_AVX2 void dense_bf16_f32_tile_avx2(const DenseRows<bf16>& w, int64_t row, int64_t c0,
                                                 int64_t c1, const float* x, int64_t x_stride,
                                                 float* acc) {
  const int64_t k = w.cols, full_chunks = k / 16;
  const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  const bf16* base = w.data + row * k;  // rows [row, row + R) all exist
  __m256 a[R][TT];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) a[i][j] = _mm256_loadu_ps(acc + (i * TT + j) * 8);
  }
  for (int64_t c = c0; c < c1; ++c) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      __m256i v;
      if (c < full_chunks) {
        v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + i * k + 16 * c));
      } else {
        std::uint16_t tail[16] = {};
        std::memcpy(tail, base + i * k + 16 * c, static_cast<std::size_t>(k - 16 * c) * sizeof(bf16));
        v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail));
      }
      const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, high_half));
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) {
        const float* xp = x + j * x_stride + 16 * c;
        a[i][j] = _mm256_fmadd_ps(even, _mm256_loadu_ps(xp), a[i][j]);
        a[i][j] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(xp + 8), a[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) _mm256_storeu_ps(acc + (i * TT + j) * 8, a[i][j]);
  }
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast
