// AVX-512 micro-kernels of the fast linear layer. Each computes, for a group
// of R weight rows and TT tokens, partial dot products over a range of
// K-chunks and adds them to 16-lane accumulators acc (R, TT, 16); the driver
// in linear.hpp tiles rows, tokens and K, reduces the lanes and adds the bias.
//
// MXFP4 weights are decoded in registers, never into memory. A 64-byte load
// holds four 16-byte blocks; dword lane i holds bytes 4i..4i+3 of block i/4,
// whose nibble n (bits 4n..4n+3) is element 8 (i % 4) + n. vpermps uses only
// the low 4 bits of each index lane, so "shift by 4n, permute the 16-entry
// E2M1 table" yields 16 weights at once, and the activations are packed in
// the same order once per call. The block scale 2^(s - 127) is applied to the
// per-chunk partial sums (one FMA per chunk), built from the scale bytes as
// float bits s << 23. That equals the reference (which scales each weight)
// up to fp32 rounding while no decoded weight is infinite, i.e. for scale
// bytes up to 251 (6 * 2^124 is finite; byte 253 already overflows codes 4
// and 6, and byte 0 is not s << 23). Rows holding a byte outside [1, 251]
// are flagged by flag_extreme_scales_avx512 (a scan of the scale bytes, once
// per row block, after the micro-kernels have read them) and recomputed
// exactly by the driver.
//
// The BF16 variants (matmul precisions bf16 and bf16x2) decode to bf16 with
// vpermw (32 weights per instruction) and multiply with vdpbf16ps against
// activations rounded to bf16 (bf16x2: the activation is hi + lo, two bf16
// terms, 16 significant bits in all).
//
// The int8 variant (matmul precision int8, AVX512_VNNI) maps each nibble
// with vpshufb to 2 x its E2M1 value + 12, an unsigned byte, and multiplies
// it by activations rounded to int8 in blocks of 32 with vpdpbusd: every
// integer product is exact, the +12 is undone by a per-lane offset packed
// with the activations, and each block's integer sum is scaled once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "gptoss/core/bf16.hpp"
#include "gptoss/formats/e2m1.hpp"
#include "gptoss/kernels/fast/simd.hpp"

namespace gptoss::kernels::fast {

/// Raw MXFP4 rows: blocks (rows, blocks_per_row, 16), scales (rows, blocks_per_row).
struct Mxfp4Rows {
  const std::uint8_t* blocks = nullptr;
  const std::uint8_t* scales = nullptr;
  int64_t rows = 0;
  int64_t blocks_per_row = 0;
};

/// Raw dense rows (rows, cols) of T.
template <class T>
struct DenseRows {
  const T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

/// Raw 8-bit rows: values (rows, 32 blocks_per_row) int8, scales (rows, blocks_per_row) fp32.
struct Int8Rows {
  const std::int8_t* values = nullptr;
  const float* scales = nullptr;
  int64_t rows = 0;
  int64_t blocks_per_row = 0;
};

/// Prefetches `lines` cache lines from p on. The dense micro-kernels stream
/// R interleaved rows; the hardware prefetchers alone keep too few lines in
/// flight for that, so each chunk also requests R lines of the next row group
/// (contiguous after this one), one group ahead. (always_inline: as an
/// out-of-line call GCC finds it free of side effects and deletes it.)
__attribute__((always_inline)) inline void prefetch_lines(const void* p, int lines) noexcept {
  const char* bytes = static_cast<const char*>(p);
  for (int l = 0; l < lines; ++l) __builtin_prefetch(bytes + 64 * l, 0, 3);
}

/// How far ahead, in bytes, the MXFP4 micro-kernels prefetch each row. More
/// than a row (1440 bytes at K = 2880), so each row stream reaches well into
/// the next group: 2048 decodes the whole model 3-9% faster than 1024 did
/// (docs/performance.md, "MXFP4 prefetch distance").
inline constexpr int64_t kMxfp4PrefetchBytes = 2048;
/// The same for the 8-bit weights' row kernels (rows of K bytes).
inline constexpr int64_t kInt8PrefetchBytes = 1024;

/// Prefetches, for each of R interleaved rows starting at `rows` (row_bytes
/// apart), the line `offset` bytes into the row; past a row's end, the line
/// as far past the same row of the next group (which, past that row's end
/// too, is in the rows that follow it in memory). MXFP4 rows are short
/// (1440 bytes for K = 2880), so each row stream has to be fed from its own
/// position: fetching the next group as one block arrives too late for its
/// last rows.
template <int R>
__attribute__((always_inline)) inline void prefetch_row_streams(const std::uint8_t* rows,
                                                                int64_t row_bytes,
                                                                int64_t offset) noexcept {
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    __builtin_prefetch(offset < row_bytes ? rows + i * row_bytes + offset
                                          : rows + (R + i) * row_bytes + (offset - row_bytes),
                       0, 3);
  }
}

/// The E2M1 values as bf16 bits, twice (vpermw indexes 32 entries).
inline constexpr std::uint16_t kE2M1Bf16x2[32] = {
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
    0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0,
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0,
    0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0};

/// vpshufb pattern: every dword of 128-bit lane L becomes (byte L) << 16.
inline constexpr std::uint32_t kScaleBytePattern[16] = {
    0x80008080u, 0x80008080u, 0x80008080u, 0x80008080u, 0x80018080u, 0x80018080u,
    0x80018080u, 0x80018080u, 0x80028080u, 0x80028080u, 0x80028080u, 0x80028080u,
    0x80038080u, 0x80038080u, 0x80038080u, 0x80038080u};

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

/// The (R, TT) 16-lane accumulators of a micro-kernel call, from and to acc
/// (R, TT, 16). (always_inline: the arrays then stay in registers.)
template <int R, int TT>
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline void load_accumulators(const float* acc,
                                                                                 __m512 (&a)[R][TT]) noexcept {
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) a[i][j] = _mm512_loadu_ps(acc + (i * TT + j) * 16);
  }
}
template <int R, int TT>
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline void store_accumulators(const __m512 (&a)[R][TT],
                                                                                  float* acc) noexcept {
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) _mm512_storeu_ps(acc + (i * TT + j) * 16, a[i][j]);
  }
}

/// The P partial sums of a row kernel: a[0] holds the call's accumulators,
/// a[1..P) start at zero (PartialSums::start) and are added into a[0] at the
/// end (PartialSums::finish).
enum class PartialSums { start, finish };
template <PartialSums Step, int P, int R, int TT>
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline void partial_sums(__m512 (&a)[P][R][TT]) noexcept {
#pragma GCC unroll 4
  for (int p = 1; p < P; ++p) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) {
        if constexpr (Step == PartialSums::start) {
          a[p][i][j] = _mm512_setzero_ps();
        } else {
          a[0][i][j] = _mm512_add_ps(a[0][i][j], a[p][i][j]);
        }
      }
    }
  }
}

/// The same 512 bits seen as 32 bf16 (what vdpbf16ps takes).
GPTOSS_TARGET_AVX512_BF16 inline __m512bh as_bf16x32(__m512i v) noexcept { return (__m512bh)v; }

/// 16 lanes of 2^(s_b - 127), lane i taking block i / 4's scale byte s_b
/// from the four bytes in every dword of `bytes` (valid for bytes 1..254).
GPTOSS_TARGET_AVX512 inline __m512 spread_chunk_scales_avx512(__m512i bytes, __m512i pattern) noexcept {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_shuffle_epi8(bytes, pattern), 7));
}
/// The same from the four scale bytes at scale_bytes (broadcast straight
/// from the load).
GPTOSS_TARGET_AVX512 inline __m512 chunk_scales_avx512(const std::uint8_t* scale_bytes,
                                                       __m512i pattern) noexcept {
  return spread_chunk_scales_avx512(_mm512_broadcastd_epi32(_mm_loadu_si32(scale_bytes)), pattern);
}
/// The same for a row's last chunk: only the bytes in `live` (a mask of the
/// first 1..3) are read, the others are 127 (scale 1, on zero weights). One
/// masked load: a memcpy of a run-time byte count here was a library call
/// per row and chunk, and the one tail chunk of a 2880-wide row took about
/// a quarter of the micro-kernel's time on cached weights.
GPTOSS_TARGET_AVX512 inline __m512 tail_chunk_scales_avx512(const std::uint8_t* scale_bytes,
                                                            std::uint16_t live, __m512i pattern) noexcept {
  const __m128i loaded = _mm_mask_loadu_epi8(_mm_set1_epi8(127), live, scale_bytes);
  return spread_chunk_scales_avx512(_mm512_broadcastd_epi32(loaded), pattern);
}

/// Rounds `planes` planes of 32 floats to bf16 (round to nearest even, as
/// vcvtne2ps2bf16 does: subnormal inputs count as zero) into planes of 32
/// bf16; with split, each plane is followed by the plane of remainders
/// bf16(x - hi).
GPTOSS_TARGET_AVX512_BF16 inline void round_planes_bf16_avx512(const float* in, int64_t planes,
                                                               bool split, std::uint16_t* out) {
  const int64_t stride = split ? 64 : 32;
  for (int64_t i = 0; i < planes; ++i) {
    const __m512 a = _mm512_loadu_ps(in + 32 * i), b = _mm512_loadu_ps(in + 32 * i + 16);
    const __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(b, a);
    _mm512_storeu_si512(out + stride * i, hi);
    if (split) {
      const __m512 a_hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
      const __m512 b_hi = _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
      const __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, b_hi), _mm512_sub_ps(a, a_hi));
      _mm512_storeu_si512(out + stride * i + 32, lo);
    }
  }
}

/// Whether any of the `count` scale bytes at p lies outside [1, 251].
GPTOSS_TARGET_AVX512 inline bool any_extreme_scale_avx512(const std::uint8_t* p, int64_t count) {
  const __m512i neutral = _mm512_set1_epi8(127), top = _mm512_set1_epi8(static_cast<char>(251));
  __m512i low = neutral, high = neutral;
  for (int64_t b = 0; b < count; b += 64) {
    const __mmask64 mask = count - b >= 64 ? ~__mmask64{0} : (__mmask64{1} << (count - b)) - 1;
    const __m512i v = _mm512_mask_loadu_epi8(neutral, mask, p + b);
    low = _mm512_min_epu8(low, v);
    high = _mm512_max_epu8(high, v);
  }
  return (_mm512_cmpeq_epi8_mask(low, _mm512_setzero_si512()) | _mm512_cmpgt_epu8_mask(high, top)) != 0;
}

/// bad[i] = 1 for each row row + i (i < rows) holding a scale byte outside
/// [1, 251] (see the file comment); other entries untouched. The rows'
/// scales are contiguous: one scan of them all, then row by row only when
/// some byte is extreme (in real checkpoints, never).
GPTOSS_TARGET_AVX512 inline void flag_extreme_scales_avx512(const Mxfp4Rows& w, int64_t row,
                                                           int64_t rows, std::uint32_t* bad) {
  const int64_t nb = w.blocks_per_row;
  if (!any_extreme_scale_avx512(w.scales + row * nb, rows * nb)) return;
  for (int64_t i = 0; i < rows; ++i) {
    if (any_extreme_scale_avx512(w.scales + (row + i) * nb, nb)) bad[i] = 1;
  }
}

/// sums[i] = the sum of the 16 floats at acc + 16 i, for i < count (a
/// transposing tree: 16 sums for 45 instructions).
GPTOSS_TARGET_AVX512 inline void sum_lanes16_avx512(const float* acc, int64_t count, float* sums) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const float* v = acc + 16 * i;
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const __m512 x = _mm512_loadu_ps(v + 32 * k), y = _mm512_loadu_ps(v + 32 * k + 16);
      a[k] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512d x = _mm512_castps_pd(a[2 * k]), y = _mm512_castps_pd(a[2 * k + 1]);
      b[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                           _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    // b[k], 128-bit lane L: the partial sums over lane L of vectors 4k..4k+3.
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) {
      c[k] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], 0x88),
                           _mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], 0xdd));
    }
    _mm512_storeu_ps(sums + i, _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88),
                                             _mm512_shuffle_f32x4(c[0], c[1], 0xdd)));
  }
  for (; i < count; ++i) sums[i] = _mm512_reduce_add_ps(_mm512_loadu_ps(acc + 16 * i));
}
/// Rows [row, row + R) of an MXFP4 matrix as the row-streaming kernels read
/// them from chunk c0 on: chunk c of row i (64 bytes: 4 blocks; in a Tail
/// chunk, only the row's last 1..3 blocks, the rest zero), its 16 lane
/// scales, and the prefetches ahead of it.
struct Mxfp4RowGroup {
  int64_t nb, row_bytes, c0;
  const std::uint8_t* blocks;
  const std::uint8_t* scales;
  std::uint16_t tail_mask;        // dwords of a Tail chunk's blocks
  std::uint16_t tail_scale_mask;  // bytes of a Tail chunk's scales

  Mxfp4RowGroup(const Mxfp4Rows& w, int64_t row, int64_t first_chunk) noexcept
      : nb(w.blocks_per_row), row_bytes(w.blocks_per_row * 16), c0(first_chunk),
        blocks(w.blocks + row * row_bytes), scales(w.scales + row * nb),
        tail_mask(first_lanes16(4 * (nb - 4 * first_chunk))),
        tail_scale_mask(first_lanes16(nb - 4 * first_chunk)) {}

  template <bool Tail>
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) __m512i chunk(int i, int64_t c) const noexcept {
    const std::uint8_t* p = blocks + i * row_bytes + 64 * c;
    return Tail ? _mm512_maskz_loadu_epi32(tail_mask, p) : _mm512_loadu_si512(p);
  }
  template <bool Tail>
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) __m512 chunk_scales(int i, int64_t c,
                                                                         __m512i pattern) const noexcept {
    return Tail ? tail_chunk_scales_avx512(scales + i * nb + 4 * c, tail_scale_mask, pattern)
                : chunk_scales_avx512(scales + i * nb + 4 * c, pattern);
  }
  /// The blocks kMxfp4PrefetchBytes ahead of chunk c in each row, and the next group's scales.
  template <int R>
  __attribute__((always_inline)) void prefetch(int64_t c) const noexcept {
    prefetch_row_streams<R>(blocks, row_bytes, 64 * c + kMxfp4PrefetchBytes);
    __builtin_prefetch(scales + R * nb + 16 * (c - c0), 0, 3);
  }
};

/// Chunks [c0, c1) of mxfp4_f32_tile_avx512; Tail: the one last chunk of a
/// row holding 1..3 blocks (masked loads).
template <int R, int TT, bool Tail>
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline void mxfp4_f32_chunks_avx512(
    const Mxfp4Rows& w, int64_t row, int64_t c0, int64_t c1, const float* x, int64_t x_stride,
    float* acc) {
  const __m512 lut = _mm512_loadu_ps(e2m1::kValues.data());
  const __m512i pattern = _mm512_loadu_si512(kScaleBytePattern);
  const Mxfp4RowGroup g(w, row, c0);  // rows [row, row + R) all exist
  __m512 a[R][TT];
  load_accumulators(acc, a);
  for (int64_t c = c0; c < c1; ++c) {
    __m512i q[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) q[i] = g.chunk<Tail>(i, c);
    g.prefetch<R>(c);
    const float* xc = x + 128 * c;
    __m512 t[R][TT];
#pragma GCC unroll 8
    for (int n = 0; n < 8; ++n) {
      __m512 wv[R];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        wv[i] = _mm512_permutexvar_ps(n == 0 ? q[i] : _mm512_srli_epi32(q[i], 4 * n), lut);
      }
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) {
        const __m512 xv = _mm512_loadu_ps(xc + j * x_stride + 16 * n);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
          t[i][j] = n == 0 ? _mm512_mul_ps(wv[i], xv) : _mm512_fmadd_ps(wv[i], xv, t[i][j]);
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 sc = g.chunk_scales<Tail>(i, c, pattern);
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) a[i][j] = _mm512_fmadd_ps(t[i][j], sc, a[i][j]);
    }
  }
  store_accumulators(a, acc);
}

/// MXFP4 x fp32 activations. x: per token, chunks of 128 floats in the
/// nibble-plane order (8 planes n of 16 lanes i: element 32 (i / 4) + 8 (i % 4) + n).
template <int R, int TT>
GPTOSS_TARGET_AVX512 void mxfp4_f32_tile_avx512(const Mxfp4Rows& w, int64_t row, int64_t c0,
                                                int64_t c1, const float* x, int64_t x_stride,
                                                float* acc) {
  const int64_t nb = w.blocks_per_row, full_end = std::min(c1, nb / 4);
  if (c0 < full_end) mxfp4_f32_chunks_avx512<R, TT, false>(w, row, c0, full_end, x, x_stride, acc);
  if (full_end < c1) mxfp4_f32_chunks_avx512<R, TT, true>(w, row, full_end, c1, x, x_stride, acc);
}

/// Chunks [c0, c1) of mxfp4_bf16_tile_avx512 (Tail as above).
template <int R, int TT, bool Split, bool Tail>
GPTOSS_TARGET_AVX512_BF16 __attribute__((always_inline)) inline void mxfp4_bf16_chunks_avx512(
    const Mxfp4Rows& w, int64_t row, int64_t c0, int64_t c1, const std::uint16_t* x,
    int64_t x_stride, float* acc) {
  constexpr int kPlane = Split ? 64 : 32;  // uint16 per plane
  const __m512i lut = _mm512_loadu_si512(kE2M1Bf16x2);
  const __m512i pattern = _mm512_loadu_si512(kScaleBytePattern);
  const Mxfp4RowGroup g(w, row, c0);  // rows [row, row + R) all exist
  const std::uint16_t* xt[TT];
  __m512 a[R][TT];
  load_accumulators(acc, a);
#pragma GCC unroll 8
  for (int j = 0; j < TT; ++j) xt[j] = x + j * x_stride + c0 * 4 * kPlane;
  for (int64_t c = c0; c < c1; ++c) {
    __m512i q[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) q[i] = g.chunk<Tail>(i, c);
    g.prefetch<R>(c);
    __m512 t[R][TT];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) t[i][j] = _mm512_setzero_ps();
    }
#pragma GCC unroll 4
    for (int n = 0; n < 4; ++n) {
      __m512bh wv[R];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        wv[i] = as_bf16x32(
            _mm512_permutexvar_epi16(n == 0 ? q[i] : _mm512_srli_epi16(q[i], 4 * n), lut));
      }
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) {
        const __m512bh hi = as_bf16x32(_mm512_loadu_si512(xt[j] + n * kPlane));
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) t[i][j] = _mm512_dpbf16_ps(t[i][j], wv[i], hi);
        if constexpr (Split) {
          const __m512bh lo = as_bf16x32(_mm512_loadu_si512(xt[j] + n * kPlane + 32));
#pragma GCC unroll 8
          for (int i = 0; i < R; ++i) t[i][j] = _mm512_dpbf16_ps(t[i][j], wv[i], lo);
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 sc = g.chunk_scales<Tail>(i, c, pattern);
#pragma GCC unroll 8
      for (int j = 0; j < TT; ++j) a[i][j] = _mm512_fmadd_ps(t[i][j], sc, a[i][j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) xt[j] += 4 * kPlane;
  }
  store_accumulators(a, acc);
}

/// MXFP4 x bf16 activations (vdpbf16ps). x: per token, chunks of 4 planes n
/// of 32 bf16 (element 32 (m / 8) + 4 (m % 8) + n for word m), each plane
/// followed by its low-part plane when Split.
template <int R, int TT, bool Split>
GPTOSS_TARGET_AVX512_BF16 void mxfp4_bf16_tile_avx512(const Mxfp4Rows& w, int64_t row, int64_t c0,
                                                     int64_t c1, const std::uint16_t* x,
                                                     int64_t x_stride, float* acc) {
  const int64_t nb = w.blocks_per_row, full_end = std::min(c1, nb / 4);
  if (c0 < full_end) {
    mxfp4_bf16_chunks_avx512<R, TT, Split, false>(w, row, c0, full_end, x, x_stride, acc);
  }
  if (full_end < c1) {
    mxfp4_bf16_chunks_avx512<R, TT, Split, true>(w, row, full_end, c1, x, x_stride, acc);
  }
}

/// vpermps indexes for a run of 4 chunks: lane i of chunk p takes the scale
/// of the run's block 4p + i / 4.
inline constexpr std::uint32_t kRunScaleIndex[4][16] = {
    {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
    {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
    {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
    {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15}};

/// The weights of a run of the one-token MXFP4 row kernels (4 chunks from
/// chunk c of a row at `blocks`, `scales`) into q: whole, with prefetches
/// ahead, or (Last) the row's last `live` (1..16) blocks by masked loads,
/// missing blocks zero and chunk_live[p] whether chunk p holds any. Returns
/// the run's 16 block scales as floats (Last: 1 for missing blocks).
template <bool Last>
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline __m512 load_mxfp4_row_run(
    const std::uint8_t* blocks, const std::uint8_t* scales, int64_t c, int64_t live, __m512i (&q)[4],
    bool (&chunk_live)[4]) {
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    const std::uint8_t* bp = blocks + 64 * (c + p);
    if constexpr (Last) {
      const int64_t here = std::clamp<int64_t>(live - 4 * p, 0, 4);
      q[p] = _mm512_maskz_loadu_epi32(first_lanes16(4 * here), bp);
      chunk_live[p] = here > 0;
    } else {
      q[p] = _mm512_loadu_si512(bp);
      chunk_live[p] = true;
    }
    asm("" : "+v"(q[p]));  // one load per chunk: not again as each use's memory operand
  }
  if constexpr (!Last) {
    prefetch_lines(blocks + 64 * c + kMxfp4PrefetchBytes, 4);
    __builtin_prefetch(scales + 4 * c + kMxfp4PrefetchBytes / 16, 0, 3);
  }
  const __m128i scale_bytes =
      Last ? _mm_mask_loadu_epi8(_mm_set1_epi8(127), first_lanes16(live), scales + 4 * c)
           : _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 4 * c));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(scale_bytes), 23));
}

/// Run of 4 chunks of mxfp4_bf16_rows_avx512 from chunk c, added into a
/// (load_mxfp4_row_run; the activations of missing chunks are not read).
template <bool Split, bool Last>
GPTOSS_TARGET_AVX512_BF16 __attribute__((always_inline)) inline void mxfp4_bf16_row_run(
    const std::uint8_t* blocks, const std::uint8_t* scales, int64_t c, int64_t live,
    const std::uint16_t* x, __m512i lut, const __m512i (&index)[4], __m512 (&a)[4]) {
  constexpr int kPlane = Split ? 64 : 32;  // uint16 per plane
  __m512i q[4];
  bool chunk_live[4];
  const __m512 run_scales = load_mxfp4_row_run<Last>(blocks, scales, c, live, q, chunk_live);
  __mmask32 x_mask[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) x_mask[p] = chunk_live[p] ? ~__mmask32{0} : __mmask32{0};
  const std::uint16_t* xc = x + c * 4 * kPlane;
  __m512 t[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) t[p] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int n = 0; n < 4; ++n) {
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      const __m512bh wv =
          as_bf16x32(_mm512_permutexvar_epi16(n == 0 ? q[p] : _mm512_srli_epi16(q[p], 4 * n), lut));
      const std::uint16_t* xp = xc + (4 * p + n) * kPlane;
      t[p] = _mm512_dpbf16_ps(t[p], wv, as_bf16x32(Last ? _mm512_maskz_loadu_epi16(x_mask[p], xp) : _mm512_loadu_si512(xp)));
      if constexpr (Split) {
        const std::uint16_t* lo = xp + 32;
        t[p] = _mm512_dpbf16_ps(t[p], wv, as_bf16x32(Last ? _mm512_maskz_loadu_epi16(x_mask[p], lo) : _mm512_loadu_si512(lo)));
      }
    }
  }
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) a[p] = _mm512_fmadd_ps(t[p], _mm512_permutexvar_ps(index[p], run_scales), a[p]);
}

/// Rows [row, row + rows) of MXFP4 x one token of bf16 activations, each
/// read whole before the next, chunks [c0, c1) added into acc (rows, 16):
/// mxfp4_bf16_tile_avx512 at TT = 1, the same packed x, for decode. A row
/// is read in runs of 4 chunks (256 consecutive bytes), one partial sum per
/// chunk: a core reads one forward stream of blocks and one of scales,
/// where a 4-row tile reads 4 row streams side by side, and the 4 chunks'
/// dot-product chains hide vdpbf16ps's latency as 4 rows do. A run's 16
/// scale bytes become floats once (vpmovzxbd, a shift) and reach each
/// chunk's lanes by vpermps; a row's last 1..16 blocks are one masked run.
template <bool Split>
GPTOSS_TARGET_AVX512_BF16 void mxfp4_bf16_rows_avx512(const Mxfp4Rows& w, int64_t row, int rows, int64_t c0,
                                                     int64_t c1, const std::uint16_t* x, float* acc) {
  const int64_t nb = w.blocks_per_row, end_block = std::min(nb, 4 * c1);
  const __m512i lut = _mm512_loadu_si512(kE2M1Bf16x2);
  __m512i index[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) index[p] = _mm512_loadu_si512(kRunScaleIndex[p]);
  for (int i = 0; i < rows; ++i) {
    const std::uint8_t* blocks = w.blocks + (row + i) * nb * 16;
    const std::uint8_t* scales = w.scales + (row + i) * nb;
    __m512 a[4];
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) a[p] = p == 0 ? _mm512_loadu_ps(acc + 16 * i) : _mm512_setzero_ps();
    int64_t c = c0;
    for (; 4 * c + 16 <= end_block; c += 4) mxfp4_bf16_row_run<Split, false>(blocks, scales, c, 16, x, lut, index, a);
    if (4 * c < end_block) mxfp4_bf16_row_run<Split, true>(blocks, scales, c, end_block - 4 * c, x, lut, index, a);
    _mm512_storeu_ps(acc + 16 * i, _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
  }
}

/// vpshufb table: E2M1 code -> 2 x value + 12, an unsigned byte in [0, 24]
/// (the 2x makes every value an integer; the +12 makes it unsigned for
/// vpdpbusd, and the packed activations carry -12 x their sums to undo it).
inline constexpr std::uint8_t kE2M1TwiceOffsetBytes[16] = {12, 13, 14, 15, 16, 18, 20, 24,
                                                          12, 11, 10, 9,  8,  6,  4,  0};

/// Bytes of one chunk of 128 activations packed for mxfp4_int8_tile_avx512.
inline constexpr int64_t kInt8ChunkBytes = 256;

/// Rounds the `count` (1..32) activations at x, a block of 32 padded with
/// zeros, to int8 exactly as quantize_activation_block_int8 does: scale
/// max |x| / 127, q = x * (127 / max |x|) rounded to nearest even (blocks
/// under 2^-64 first scaled by 2^64); an all-zero block has scale 0, a block
/// holding NaN or infinity scale NaN (and q = 0). q[0] holds elements 0..15,
/// q[1] 16..31; returns the scale.
GPTOSS_TARGET_AVX512_VNNI inline float quantize_block_int8_avx512(const float* x, int64_t count, __m128i q[2]) {
  const __m512 sign_off = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 infinity = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const std::uint32_t lanes = count >= 32 ? 0xffffffffu : (std::uint32_t{1} << count) - 1;
  const __m512 x0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes), x);
  const __m512 x1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(lanes >> 16), x + 16);
  const __m512 a0 = _mm512_and_ps(x0, sign_off), a1 = _mm512_and_ps(x1, sign_off);
  // Not less than infinity, or unordered: an infinity or a NaN.
  const bool finite =
      (_mm512_cmp_ps_mask(a0, infinity, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(a1, infinity, _CMP_NLT_UQ)) == 0;
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  if (!finite || amax == 0.0f) {
    q[0] = q[1] = _mm_setzero_si128();
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float boost = amax < 0x1p-64f ? 0x1p64f : 1.0f, boosted = amax * boost;
  const __m512 up = _mm512_set1_ps(boost), inv = _mm512_set1_ps(127.0f / boosted);
  q[0] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(x0, up), inv)));
  q[1] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(x1, up), inv)));
  return boosted / 127.0f / boost;
}

/// The 64 int8 of blocks b0 and b0 + 1 (16 bytes each in q) in one register.
GPTOSS_TARGET_AVX512_VNNI inline __m512i join_blocks_int8_avx512(const __m128i q0[2], const __m128i q1[2]) {
  return _mm512_inserti64x2(
      _mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(q0[0]), q0[1], 1), q1[0], 2), q1[1], 3);
}

/// Packs one token's activations x (k, a multiple of 32) for
/// mxfp4_int8_tile_avx512 (layout there), `chunks` chunks of 128, blocks
/// past k zero, each block rounded by quantize_block_int8_avx512.
GPTOSS_TARGET_AVX512_VNNI inline void pack_int8_activations_avx512(const float* x, int64_t k, int64_t chunks,
                                                                   std::uint8_t* out) {
  const __m512i twelve = _mm512_set1_epi8(12);
  for (int64_t c = 0; c < chunks; ++c) {
    __m512i halves[2];  // the chunk's 128 int8 in natural order
    alignas(64) float lane_scale[16];
    for (int h = 0; h < 2; ++h) {
      __m128i q[2][2];
      for (int b2 = 0; b2 < 2; ++b2) {
        const int64_t base = 128 * c + 64 * h + 32 * b2;
        const float scale = base < k ? quantize_block_int8_avx512(x + base, 32, q[b2]) : 0.0f;
        if (base >= k) q[b2][0] = q[b2][1] = _mm_setzero_si128();
        for (int l = 0; l < 4; ++l) lane_scale[4 * (2 * h + b2) + l] = 0.5f * scale;
      }
      halves[h] = join_blocks_int8_avx512(q[0], q[1]);
    }
    // Even elements are the low bytes of the 16-bit words, odd the high.
    const __m512i even = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(halves[0])),
                                            _mm512_cvtepi16_epi8(halves[1]), 1);
    const __m512i odd = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srai_epi16(halves[0], 8))),
        _mm512_cvtepi16_epi8(_mm512_srai_epi16(halves[1], 8)), 1);
    // Lane d: 12 x the sum of its 8 activations, negated.
    const __m512i twelve_sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), twelve, even), twelve, odd);
    std::uint8_t* o = out + kInt8ChunkBytes * c;
    _mm512_storeu_si512(o, even);
    _mm512_storeu_si512(o + 64, odd);
    _mm512_storeu_si512(o + 128, _mm512_sub_epi32(_mm512_setzero_si512(), twelve_sum));
    _mm512_storeu_ps(o + 192, _mm512_load_ps(lane_scale));
  }
}

/// Bytes of one chunk of 64 activations packed for int8_int8_tile_avx512.
inline constexpr int64_t kInt8DenseChunkBytes = 192;

/// Packs one token's activations x (k) for int8_int8_tile_avx512: per
/// chunk of 64, the 64 int8 in natural order (0 past k), 16 int32 lane
/// offsets (-128 x the sum of the lane's 4 activations) and 16 fp32 lane
/// scales (the scale of block d / 8 for lane d).
GPTOSS_TARGET_AVX512_VNNI inline void pack_int8_dense_activations_avx512(const float* x, int64_t k, int64_t chunks,
                                                                         std::uint8_t* out) {
  const __m512i c128 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t c = 0; c < chunks; ++c) {
    __m128i q[2][2];
    alignas(64) float lane_scale[16];
    for (int b = 0; b < 2; ++b) {
      const int64_t base = 64 * c + 32 * b;
      const float scale = base < k ? quantize_block_int8_avx512(x + base, std::min<int64_t>(32, k - base), q[b]) : 0.0f;
      if (base >= k) q[b][0] = q[b][1] = _mm_setzero_si128();
      for (int l = 0; l < 8; ++l) lane_scale[8 * b + l] = scale;
    }
    const __m512i values = join_blocks_int8_avx512(q[0], q[1]);
    std::uint8_t* o = out + kInt8DenseChunkBytes * c;
    _mm512_storeu_si512(o, values);
    // The weights go in as w + 128 (unsigned): take 128 x sum q back out.
    const __m512i offset = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, values);
    _mm512_storeu_si512(o + 64, _mm512_sub_epi32(_mm512_setzero_si512(), offset));
    _mm512_storeu_ps(o + 128, _mm512_load_ps(lane_scale));
  }
}

/// 8-bit weights x int8 activations (vpdpbusd), chunks of 64 (two blocks of
/// 32; Tail: the last chunk of a row with an odd block count). Each weight
/// goes in as w + 128 (the sign bit flipped), unsigned; the packed per-lane
/// offset takes 128 x the activations' sum back out, so every lane's
/// integer sum is exact and is scaled once by both blocks' scales.
template <int R, int TT, bool Tail>
GPTOSS_TARGET_AVX512_VNNI __attribute__((always_inline)) inline void int8_int8_chunks_avx512(
    const Int8Rows& w, int64_t row, int64_t c0, int64_t c1, const std::uint8_t* x, int64_t x_stride, float* acc) {
  const __m512i sign_bit = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i block_of_lane = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const int64_t nb = w.blocks_per_row, row_bytes = nb * 32;
  const auto* values = reinterpret_cast<const std::uint8_t*>(w.values) + row * row_bytes;
  const float* scales = w.scales + row * nb;
  __m512 a[R][TT];
  load_accumulators(acc, a);
  for (int64_t c = c0; c < c1; ++c) {
    __m512i wu[R];
    __m512 ws[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const std::uint8_t* p = values + i * row_bytes + 64 * c;
      const __m512i v = Tail ? _mm512_maskz_loadu_epi8(0xffffffffull, p) : _mm512_loadu_si512(p);
      wu[i] = _mm512_xor_si512(v, sign_bit);
      const float* s = scales + i * nb + 2 * c;
      const __m128 two = Tail ? _mm_load_ss(s) : _mm_castsi128_ps(_mm_loadu_si64(s));  // (unaligned)
      ws[i] = _mm512_permutexvar_ps(block_of_lane, _mm512_castps128_ps512(two));
    }
    prefetch_row_streams<R>(values, row_bytes, 64 * c + kInt8PrefetchBytes);
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) {
      const std::uint8_t* xc = x + j * x_stride + kInt8DenseChunkBytes * c;
      const __m512i xq = _mm512_loadu_si512(xc), offset = _mm512_loadu_si512(xc + 64);
      const __m512 x_scale = _mm512_loadu_ps(reinterpret_cast<const float*>(xc + 128));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512i dot = _mm512_dpbusd_epi32(offset, wu[i], xq);
        a[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), x_scale), ws[i], a[i][j]);
      }
    }
  }
  store_accumulators(a, acc);
}

/// 8-bit weights x int8 activations packed by pack_int8_dense_activations_avx512.
template <int R, int TT>
GPTOSS_TARGET_AVX512_VNNI void int8_int8_tile_avx512(const Int8Rows& w, int64_t row, int64_t c0, int64_t c1,
                                                    const std::uint8_t* x, int64_t x_stride, float* acc) {
  const int64_t full_end = std::min(c1, w.blocks_per_row / 2);
  if (c0 < full_end) int8_int8_chunks_avx512<R, TT, false>(w, row, c0, full_end, x, x_stride, acc);
  if (full_end < c1) int8_int8_chunks_avx512<R, TT, true>(w, row, full_end, c1, x, x_stride, acc);
}

/// Chunks [c0, c1) of mxfp4_int8_tile_avx512 (Tail as above).
template <int R, int TT, bool Tail>
GPTOSS_TARGET_AVX512_VNNI __attribute__((always_inline)) inline void mxfp4_int8_chunks_avx512(
    const Mxfp4Rows& w, int64_t row, int64_t c0, int64_t c1, const std::uint8_t* x, int64_t x_stride,
    float* acc) {
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kE2M1TwiceOffsetBytes)));
  const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
  const __m512i pattern = _mm512_loadu_si512(kScaleBytePattern);
  const Mxfp4RowGroup g(w, row, c0);  // rows [row, row + R) all exist
  __m512 a[R][TT];
  load_accumulators(acc, a);
  for (int64_t c = c0; c < c1; ++c) {
    __m512i even[R], odd[R];
    __m512 ws[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512i q = g.chunk<Tail>(i, c);
      // Byte j of a block holds elements 2j (low nibble) and 2j + 1.
      even[i] = _mm512_shuffle_epi8(lut, _mm512_and_si512(q, low_nibbles));
      odd[i] = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(q, 4), low_nibbles));
      ws[i] = g.chunk_scales<Tail>(i, c, pattern);
    }
    g.prefetch<R>(c);
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) {
      const std::uint8_t* xc = x + j * x_stride + kInt8ChunkBytes * c;
      const __m512i x_even = _mm512_loadu_si512(xc), x_odd = _mm512_loadu_si512(xc + 64);
      const __m512i offset = _mm512_loadu_si512(xc + 128);  // -12 x the lane's activation sum
      const __m512 x_scale = _mm512_loadu_ps(reinterpret_cast<const float*>(xc + 192));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(offset, even[i], x_even), odd[i], x_odd);
        // (dot x activation scale) first, the block scale last, as the fp32
        // kernel applies it: no subnormal intermediate for small scale bytes.
        a[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), x_scale), ws[i], a[i][j]);
      }
    }
  }
  store_accumulators(a, acc);
}

/// MXFP4 x int8 activations (vpdpbusd). x: per token, chunks of 128
/// activations in kInt8ChunkBytes: 64 int8 of the even elements (byte j:
/// element 32 (j / 16) + 2 (j % 16)), 64 of the odd ones, 16 int32 lane
/// offsets (-12 x the sum of the lane's 8 activations) and 16 fp32 lane
/// scales (half the scale of the lane's block). Lane d of a chunk covers
/// block d / 4, so its integer dot product is exact and scaled once.
template <int R, int TT>
GPTOSS_TARGET_AVX512_VNNI void mxfp4_int8_tile_avx512(const Mxfp4Rows& w, int64_t row, int64_t c0, int64_t c1,
                                                     const std::uint8_t* x, int64_t x_stride, float* acc) {
  const int64_t nb = w.blocks_per_row, full_end = std::min(c1, nb / 4);
  if (c0 < full_end) mxfp4_int8_chunks_avx512<R, TT, false>(w, row, c0, full_end, x, x_stride, acc);
  if (full_end < c1) mxfp4_int8_chunks_avx512<R, TT, true>(w, row, full_end, c1, x, x_stride, acc);
}

/// Run of 4 chunks of mxfp4_int8_rows_avx512 from chunk c, added into a
/// (load_mxfp4_row_run; the activations of missing chunks are not read).
template <bool Last>
GPTOSS_TARGET_AVX512_VNNI __attribute__((always_inline)) inline void mxfp4_int8_row_run(
    const std::uint8_t* blocks, const std::uint8_t* scales, int64_t c, int64_t live, const std::uint8_t* x,
    __m512i lut, const __m512i (&index)[4], __m512 (&a)[4]) {
  const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
  __m512i q[4];
  bool chunk_live[4];
  const __m512 run_scales = load_mxfp4_row_run<Last>(blocks, scales, c, live, q, chunk_live);
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    const std::uint8_t* xc = x + kInt8ChunkBytes * (c + p);
    const __mmask64 m = Last && !chunk_live[p] ? __mmask64{0} : ~__mmask64{0};
    const __m512i x_even = _mm512_maskz_loadu_epi8(m, xc), x_odd = _mm512_maskz_loadu_epi8(m, xc + 64);
    const __m512i offset = _mm512_maskz_loadu_epi8(m, xc + 128);  // -12 x the lane's activation sum
    const __m512 x_scale = _mm512_castsi512_ps(_mm512_maskz_loadu_epi8(m, xc + 192));
    const __m512i even = _mm512_shuffle_epi8(lut, _mm512_and_si512(q[p], low_nibbles));
    const __m512i odd = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(q[p], 4), low_nibbles));
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(offset, even, x_even), odd, x_odd);
    // (dot x activation scale) first, the block scale last, as the tile does.
    a[p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), x_scale),
                           _mm512_permutexvar_ps(index[p], run_scales), a[p]);
  }
}

/// Rows [row, row + rows) of MXFP4 x one token of int8 activations, each
/// read whole before the next, in runs of 4 chunks, chunks [c0, c1) added
/// into acc (rows, 16): mxfp4_int8_tile_avx512 at TT = 1 (its packed x) as
/// mxfp4_bf16_rows_avx512 is the bf16 tile's, for the same reason.
GPTOSS_TARGET_AVX512_VNNI inline void mxfp4_int8_rows_avx512(const Mxfp4Rows& w, int64_t row, int rows, int64_t c0,
                                                            int64_t c1, const std::uint8_t* x, float* acc) {
  const int64_t nb = w.blocks_per_row, end_block = std::min(nb, 4 * c1);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kE2M1TwiceOffsetBytes)));
  __m512i index[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) index[p] = _mm512_loadu_si512(kRunScaleIndex[p]);
  for (int i = 0; i < rows; ++i) {
    const std::uint8_t* blocks = w.blocks + (row + i) * nb * 16;
    const std::uint8_t* scales = w.scales + (row + i) * nb;
    __m512 a[4];
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) a[p] = p == 0 ? _mm512_loadu_ps(acc + 16 * i) : _mm512_setzero_ps();
    int64_t c = c0;
    for (; 4 * c + 16 <= end_block; c += 4) mxfp4_int8_row_run<false>(blocks, scales, c, 16, x, lut, index, a);
    if (4 * c < end_block) mxfp4_int8_row_run<true>(blocks, scales, c, end_block - 4 * c, x, lut, index, a);
    _mm512_storeu_ps(acc + 16 * i, _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
  }
}

/// fp32 weights x fp32 activations; chunks of 16 elements, x in natural order.
template <int R, int TT>
GPTOSS_TARGET_AVX512 void dense_f32_tile_avx512(const DenseRows<float>& w, int64_t row, int64_t c0,
                                                int64_t c1, const float* x, int64_t x_stride,
                                                float* acc) {
  const int64_t k = w.cols, full_chunks = k / 16;
  const std::uint16_t tail_mask = first_lanes16(k - 16 * full_chunks);
  const float* base = w.data + row * k;  // rows [row, row + R) all exist
  __m512 a[R][TT];
  load_accumulators(acc, a);
  for (int64_t c = c0; c < c1; ++c) {
    const std::uint16_t mask = c < full_chunks ? std::uint16_t{0xffff} : tail_mask;
    __m512 wv[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) wv[i] = _mm512_maskz_loadu_ps(mask, base + i * k + 16 * c);
    prefetch_lines(base + R * k + 16 * R * (c - c0), R);
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + j * x_stride + 16 * c);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) a[i][j] = _mm512_fmadd_ps(wv[i], xv, a[i][j]);
    }
  }
  store_accumulators(a, acc);
}

/// 8-bit weights x fp32 activations; chunks of 32 elements (one scale
/// block), x in natural order. The weights widen to fp32 integers, a block's
/// products are summed in those units and scaled once into the accumulator
/// (the reference scales each weight first: the same sum up to fp32 rounding).
template <int R, int TT>
GPTOSS_TARGET_AVX512 void int8_f32_tile_avx512(const Int8Rows& w, int64_t row, int64_t c0, int64_t c1,
                                              const float* x, int64_t x_stride, float* acc) {
  const int64_t row_bytes = w.blocks_per_row * 32;
  const std::int8_t* base = w.values + row * row_bytes;  // rows [row, row + R) all exist
  const float* scales = w.scales + row * w.blocks_per_row;
  __m512 a[R][TT];
  load_accumulators(acc, a);
  for (int64_t c = c0; c < c1; ++c) {
    __m512 lo[R], hi[R], scale[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      scale[i] = _mm512_set1_ps(scales[i * w.blocks_per_row + c]);
      const std::int8_t* q = base + i * row_bytes + 32 * c;
      lo[i] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
      hi[i] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16))));
    }
    prefetch_lines(base + R * row_bytes + 32 * R * (c - c0), (32 * R + 63) / 64);
#pragma GCC unroll 8
    for (int j = 0; j < TT; ++j) {
      const __m512 x0 = _mm512_loadu_ps(x + j * x_stride + 32 * c);
      const __m512 x1 = _mm512_loadu_ps(x + j * x_stride + 32 * c + 16);
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        // The block's products in integer units, then scaled once into the sum.
        const __m512 block = _mm512_fmadd_ps(hi[i], x1, _mm512_mul_ps(lo[i], x0));
        a[i][j] = _mm512_fmadd_ps(block, scale[i], a[i][j]);
      }
    }
  }
  store_accumulators(a, acc);
}

/// A chunk of 32 bf16 at p: a plain load when the chunk is whole (the row
/// kernels' main loops pass the full mask as a constant), a masked load for
/// a row's partial last chunk. A masked load in every chunk, its mask picked
/// per chunk, read one-token bf16 rows 20-25% slower from memory at the
/// fp32 precision (docs/performance.md, "A single bf16 row without software
/// prefetch").
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline __m512i load_bf16_chunk(const bf16* p,
                                                                                std::uint32_t mask) noexcept {
  return mask == 0xffffffffu ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi16(mask, p);
}

/// Chunk c of dense_bf16_f32_tile_avx512 (rows [0, R) from base, K = k,
/// its first chunk c0), added into sums; a group of rows (R > 1) prefetches
/// the next group's line for it (a single row does not: see
/// dense_bf16_bf16_chunk).
template <int R, int TT>
GPTOSS_TARGET_AVX512 __attribute__((always_inline)) inline void dense_bf16_f32_chunk(
    const bf16* base, int64_t k, int64_t c0, int64_t c, std::uint32_t mask, const float* x, int64_t x_stride,
    __m512 (&sums)[R][TT]) {
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  __m512 even[R], odd[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const __m512i v = load_bf16_chunk(base + i * k + 32 * c, mask);
    even[i] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    odd[i] = _mm512_castsi512_ps(_mm512_and_si512(v, high_half));
  }
  if constexpr (R > 1) prefetch_lines(base + R * k + 32 * R * (c - c0), R);
#pragma GCC unroll 8
  for (int j = 0; j < TT; ++j) {
    const __m512 xe = _mm512_loadu_ps(x + j * x_stride + 32 * c);
    const __m512 xo = _mm512_loadu_ps(x + j * x_stride + 32 * c + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      sums[i][j] = _mm512_fmadd_ps(even[i], xe, sums[i][j]);
      sums[i][j] = _mm512_fmadd_ps(odd[i], xo, sums[i][j]);
    }
  }
}

/// bf16 weights x fp32 activations; chunks of 32 elements, x per chunk as
/// 16 even-indexed then 16 odd-indexed elements (bf16 pairs widen to fp32 by
/// a shift and a mask, no shuffle). Consecutive chunks go to kChains
/// independent partial sums, added at the end, so that a pass of the loop
/// keeps at least 4 sums in flight (one row and one token, the decode
/// default: 4; docs/performance.md, "A single bf16 row without software
/// prefetch").
template <int R, int TT>
GPTOSS_TARGET_AVX512 void dense_bf16_f32_tile_avx512(const DenseRows<bf16>& w, int64_t row,
                                                     int64_t c0, int64_t c1, const float* x,
                                                     int64_t x_stride, float* acc) {
  constexpr int kChains = R * TT >= 4 ? 1 : 4 / (R * TT);
  const int64_t k = w.cols, full_chunks = k / 32;
  const std::uint32_t tail_mask = first_lanes32(k - 32 * full_chunks);
  const auto mask_of = [&](int64_t c) { return c < full_chunks ? 0xffffffffu : tail_mask; };
  const bf16* base = w.data + row * k;  // rows [row, row + R) all exist
  __m512 a[kChains][R][TT];
  load_accumulators(acc, a[0]);
  partial_sums<PartialSums::start>(a);
  int64_t c = c0;
  for (; c + kChains <= std::min(c1, full_chunks); c += kChains) {
#pragma GCC unroll 4
    for (int p = 0; p < kChains; ++p) dense_bf16_f32_chunk<R, TT>(base, k, c0, c + p, 0xffffffffu, x, x_stride, a[p]);
  }
  for (; c < c1; ++c) dense_bf16_f32_chunk<R, TT>(base, k, c0, c, mask_of(c), x, x_stride, a[0]);
  partial_sums<PartialSums::finish>(a);
  store_accumulators(a[0], acc);
}

/// Chunk c of dense_bf16_bf16_tile_avx512 (rows [0, R) from base, K = k,
/// its first chunk c0), added into sums. A group of rows (R > 1) prefetches
/// the next group's line for it; a single row does not: its core then reads
/// one forward stream, as the bandwidth probe does, which the hardware
/// prefetchers follow alone, and where the next row's line was prefetched
/// too, one-token bf16 products read 40-45% slower from memory on a host
/// that runs 512-bit instructions in two halves (docs/performance.md, "A
/// single bf16 row without software prefetch").
template <int R, int TT, bool Split>
GPTOSS_TARGET_AVX512_BF16 __attribute__((always_inline)) inline void dense_bf16_bf16_chunk(
    const bf16* base, int64_t k, int64_t c0, int64_t c, std::uint32_t mask, const std::uint16_t* x,
    int64_t x_stride, __m512 (&sums)[R][TT]) {
  constexpr int kChunk = Split ? 64 : 32;  // uint16 per chunk of x
  __m512bh wv[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) wv[i] = as_bf16x32(load_bf16_chunk(base + i * k + 32 * c, mask));
  if constexpr (R > 1) prefetch_lines(base + R * k + 32 * R * (c - c0), R);
#pragma GCC unroll 8
  for (int j = 0; j < TT; ++j) {
    const std::uint16_t* xp = x + j * x_stride + kChunk * c;
    const __m512bh hi = as_bf16x32(_mm512_loadu_si512(xp));
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) sums[i][j] = _mm512_dpbf16_ps(sums[i][j], wv[i], hi);
    if constexpr (Split) {
      const __m512bh lo = as_bf16x32(_mm512_loadu_si512(xp + 32));
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) sums[i][j] = _mm512_dpbf16_ps(sums[i][j], wv[i], lo);
    }
  }
}

/// bf16 weights x bf16 activations (vdpbf16ps); chunks of 32 elements, x per
/// chunk as 32 bf16 in natural order, followed by the low parts when Split.
/// Consecutive chunks go to kChains independent partial sums, added at the
/// end, so that a pass of the loop issues at least 4 vdpbf16ps (a chunk
/// issues R x TT, twice that when Split). With one row and one token (the
/// decode default) a single sum waited out vdpbf16ps's latency on every 64
/// bytes: about 40 GB/s per core on cached rows, 22 when Split
/// (docs/performance.md, "One bf16 row, partial sums").
template <int R, int TT, bool Split>
GPTOSS_TARGET_AVX512_BF16 void dense_bf16_bf16_tile_avx512(const DenseRows<bf16>& w, int64_t row,
                                                          int64_t c0, int64_t c1,
                                                          const std::uint16_t* x, int64_t x_stride,
                                                          float* acc) {
  constexpr int kProductsPerChunk = R * TT * (Split ? 2 : 1);
  constexpr int kChains = kProductsPerChunk >= 4 ? 1 : 4 / kProductsPerChunk;
  const int64_t k = w.cols, full_chunks = k / 32;
  const std::uint32_t tail_mask = first_lanes32(k - 32 * full_chunks);
  const auto mask_of = [&](int64_t c) { return c < full_chunks ? 0xffffffffu : tail_mask; };
  const bf16* base = w.data + row * k;  // rows [row, row + R) all exist
  __m512 a[kChains][R][TT];
  load_accumulators(acc, a[0]);
  partial_sums<PartialSums::start>(a);
  int64_t c = c0;
  for (; c + kChains <= std::min(c1, full_chunks); c += kChains) {
#pragma GCC unroll 4
    for (int p = 0; p < kChains; ++p) {
      dense_bf16_bf16_chunk<R, TT, Split>(base, k, c0, c + p, 0xffffffffu, x, x_stride, a[p]);
    }
  }
  for (; c < c1; ++c) dense_bf16_bf16_chunk<R, TT, Split>(base, k, c0, c, mask_of(c), x, x_stride, a[0]);
  partial_sums<PartialSums::finish>(a);
  store_accumulators(a[0], acc);
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast
