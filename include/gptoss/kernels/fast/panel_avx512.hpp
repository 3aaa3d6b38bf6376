// AVX-512 weight panels for products with many tokens (prefill, experts with
// many routed tokens). A panel holds kPanelRows = 32 weight rows decoded once
// into a column-major scratch buffer, (K, 32) floats or (K / 2, 32) bf16
// pairs (or unsigned byte codes for the int8 precision, see "int8 panels"
// below), padded with zeros to a multiple of 32 columns; the micro-kernel then
// forms outer products of two 16-row panel vectors with one broadcast
// activation per token, keeping 2 x TT accumulators (32 rows x TT tokens) in
// registers across all of K. Decoding costs one pass over the panel per
// call, shared by every token; the row-streaming kernels of
// linear_avx512.hpp decode per token tile instead and stay the choice for a
// few tokens.
//
// MXFP4 rows decode exactly: an E2M1 value times 2^(s - 127) is exact in
// fp32 and in bf16 (two significant bits) for scale bytes s in [1, 251];
// rows holding other bytes are flagged (flag_extreme_scales_avx512) and
// recomputed by the caller, as in linear_avx512.hpp. A panel's rows are
// contiguous in memory: they are first copied in order into a scratch
// buffer (one sequential stream, which the hardware prefetchers follow;
// gathering from 16 row streams at once stalls on memory), then gathered 16
// rows at a time (vpgatherdd, byte offsets < 2^31: the caller checks).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "gptoss/core/bf16.hpp"
#include "gptoss/formats/e2m1.hpp"
#include "gptoss/kernels/fast/linear_avx512.hpp"
#include "gptoss/kernels/fast/simd.hpp"

namespace gptoss::kernels::fast {

inline constexpr int64_t kPanelRows = 32;

/// K rounded up to whole 32-column planes.
constexpr int64_t panel_cols(int64_t k) noexcept { return (k + 31) / 32 * 32; }

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

/// Byte offsets of rows row0 .. row0 + 15 (row_bytes apart) and the mask of
/// those below `rows_here`.
GPTOSS_TARGET_AVX512 inline __m512i row_offsets_avx512(int64_t row_bytes) noexcept {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(static_cast<int>(row_bytes)));
}

/// Block scales of rows [row, row + rows_here) transposed for a panel:
/// out[b * 32 + r] = convert(scale of block b of row row + r), `pad` for r
/// past rows_here, so that a block's 32 row scales load at once.
template <class Out, class Scale, class Convert>
void transpose_panel_scales(const Scale* scales, int64_t blocks_per_row, int64_t row, int64_t rows_here, Out pad,
                            Out* out, Convert convert) {
  for (int64_t r = 0; r < kPanelRows; ++r) {
    for (int64_t b = 0; b < blocks_per_row; ++b) {
      out[b * kPanelRows + r] = r < rows_here ? convert(scales[(row + r) * blocks_per_row + b]) : pad;
    }
  }
}
inline constexpr auto kSameScale = [](auto s) { return s; };

/// Decodes MXFP4 rows [row, row + rows_here) (rows_here <= 32) into panel
/// (K, 32) floats (Pairs = false) or (K / 2, 32) bf16 pairs, element 2p in
/// the low half (Pairs = true). Rows past rows_here are zero. scale_scratch
/// holds blocks_per_row * 32 bytes, row_scratch 32 rows of blocks.
template <bool Pairs>
GPTOSS_TARGET_AVX512 void mxfp4_panel_avx512(const Mxfp4Rows& w, int64_t row, int64_t rows_here,
                                            std::uint8_t* scale_scratch, std::uint8_t* row_scratch,
                                            void* panel) {
  const int64_t nb = w.blocks_per_row, row_bytes = nb * 16;
  std::memcpy(row_scratch, w.blocks + row * row_bytes, static_cast<std::size_t>(rows_here * row_bytes));
  transpose_panel_scales(w.scales, nb, row, rows_here, std::uint8_t{127}, scale_scratch, kSameScale);
  const __m512 lut = _mm512_loadu_ps(e2m1::kValues.data());
  const __m512i offsets = row_offsets_avx512(row_bytes);
  const __mmask32 odd_words = 0xaaaaaaaau;
  for (int64_t g = 0; g < 2; ++g) {
    const int64_t live = std::clamp<int64_t>(rows_here - 16 * g, 0, 16);
    const __mmask16 mask = first_lanes16(live);
    const std::uint8_t* base = row_scratch + 16 * g * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scale_scratch + b * kPanelRows + 16 * g));
      const __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu8_epi32(s), 23));
      for (int64_t j = 0; j < 4; ++j) {
        // Dword j of block b of each row: bytes 4j..4j+3, elements 8j..8j+7.
        const __m512i d = live == 0 ? _mm512_setzero_si512()
                                    : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets,
                                                                  base + b * 16 + 4 * j, 1);
        const int64_t k0 = 32 * b + 8 * j;
        if constexpr (Pairs) {
          auto* out = static_cast<std::uint32_t*>(panel) + (k0 / 2) * kPanelRows + 16 * g;
#pragma GCC unroll 4
          for (int i = 0; i < 4; ++i) {
            const __m512 lo = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(d, 8 * i), lut), scale);
            const __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(d, 8 * i + 4), lut), scale);
            const __m512i pair = _mm512_mask_blend_epi16(odd_words, _mm512_srli_epi32(_mm512_castps_si512(lo), 16),
                                                         _mm512_castps_si512(hi));
            _mm512_storeu_si512(out + i * kPanelRows, pair);
          }
        } else {
          float* out = static_cast<float*>(panel) + k0 * kPanelRows + 16 * g;
#pragma GCC unroll 8
          for (int n = 0; n < 8; ++n) {
            const __m512 v = _mm512_permutexvar_ps(n == 0 ? d : _mm512_srli_epi32(d, 4 * n), lut);
            _mm512_storeu_ps(out + n * kPanelRows, _mm512_mul_ps(v, scale));
          }
        }
      }
    }
  }
}

/// bf16 rows [row, row + rows_here) into panel (K, 32) floats (Pairs =
/// false) or (K / 2, 32) bf16 pairs (Pairs = true), zero past K (up to
/// panel_cols(K)) and past rows_here. row_scratch holds 32 rows.
template <bool Pairs>
GPTOSS_TARGET_AVX512 void bf16_panel_avx512(const DenseRows<bf16>& w, int64_t row, int64_t rows_here,
                                           std::uint8_t* row_scratch, void* panel) {
  const int64_t k = w.cols, kp = panel_cols(k), full_pairs = k / 2;
  std::memcpy(row_scratch, w.data + row * k, static_cast<std::size_t>(rows_here * k) * sizeof(bf16));
  const __m512i offsets = row_offsets_avx512(k * 2);
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const std::uint16_t* bits = reinterpret_cast<const std::uint16_t*>(row_scratch);
  for (int64_t g = 0; g < 2; ++g) {
    const int64_t live = std::clamp<int64_t>(rows_here - 16 * g, 0, 16);
    const __mmask16 mask = first_lanes16(live);
    const std::uint16_t* base = bits + 16 * g * k;
    for (int64_t p = 0; p < full_pairs; ++p) {
      const __m512i d = live == 0 ? _mm512_setzero_si512()
                                  : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets, base + 2 * p, 1);
      if constexpr (Pairs) {
        _mm512_storeu_si512(static_cast<std::uint32_t*>(panel) + p * kPanelRows + 16 * g, d);
      } else {
        float* out = static_cast<float*>(panel) + 2 * p * kPanelRows + 16 * g;
        _mm512_storeu_ps(out, _mm512_castsi512_ps(_mm512_slli_epi32(d, 16)));
        _mm512_storeu_ps(out + kPanelRows, _mm512_castsi512_ps(_mm512_and_si512(d, high_half)));
      }
    }
  }
  // The odd last column (paired with a zero) and the padding up to kp.
  if constexpr (Pairs) {
    auto* out = static_cast<std::uint32_t*>(panel);
    std::memset(out + full_pairs * kPanelRows, 0, static_cast<std::size_t>((kp / 2 - full_pairs) * kPanelRows) * 4);
    if (k % 2 != 0) {
      for (int64_t r = 0; r < rows_here; ++r) out[full_pairs * kPanelRows + r] = bits[r * k + k - 1];
    }
  } else {
    auto* out = static_cast<float*>(panel);
    std::memset(out + 2 * full_pairs * kPanelRows, 0, static_cast<std::size_t>((kp - 2 * full_pairs) * kPanelRows) * 4);
    if (k % 2 != 0) {
      for (int64_t r = 0; r < rows_here; ++r) out[(k - 1) * kPanelRows + r] = w.data[(row + r) * k + k - 1].to_float();
    }
  }
}

/// Decodes 8-bit rows [row, row + rows_here) (rows_here <= 32) into a float
/// panel (K padded to whole blocks, 32): value times its block's scale, the
/// reference's decoding. Rows past rows_here are zero. scale_scratch holds
/// blocks_per_row * 32 floats, row_scratch 32 rows.
GPTOSS_TARGET_AVX512 inline void int8_panel_avx512(const Int8Rows& w, int64_t row, int64_t rows_here,
                                                  float* scale_scratch, std::int8_t* row_scratch, float* panel) {
  const int64_t nb = w.blocks_per_row, row_bytes = nb * 32;
  std::memcpy(row_scratch, w.values + row * row_bytes, static_cast<std::size_t>(rows_here * row_bytes));
  transpose_panel_scales(w.scales, nb, row, rows_here, 0.0f, scale_scratch, kSameScale);
  const __m512i offsets = row_offsets_avx512(row_bytes);
  for (int64_t g = 0; g < 2; ++g) {
    const int64_t live = std::clamp<int64_t>(rows_here - 16 * g, 0, 16);
    const __mmask16 mask = first_lanes16(live);
    const std::int8_t* base = row_scratch + 16 * g * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const __m512 scale = _mm512_loadu_ps(scale_scratch + b * kPanelRows + 16 * g);
      for (int64_t j = 0; j < 8; ++j) {
        // Bytes 4j..4j+3 of block b of each row: elements 32 b + 4 j + i.
        const __m512i d = live == 0 ? _mm512_setzero_si512()
                                    : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets,
                                                                  base + b * 32 + 4 * j, 1);
        float* out = panel + (32 * b + 4 * j) * kPanelRows + 16 * g;
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          // Byte i of each lane, sign-extended: shift it to the top, then arithmetic shift down.
          const __m512i q = _mm512_srai_epi32(i == 3 ? d : _mm512_slli_epi32(d, 24 - 8 * i), 24);
          _mm512_storeu_ps(out + i * kPanelRows, _mm512_mul_ps(_mm512_cvtepi32_ps(q), scale));
        }
      }
    }
  }
}

/// Lines of the next panel's rows to bring into L2 while a tile computes:
/// one per K step, `lines` lines of 64 bytes from `bytes` on.
struct PrefetchLines {
  const char* bytes = nullptr;
  int64_t lines = 0;
};

/// out (TT, 32) = x (TT tokens, stride apart; kp floats each) times the
/// float panel (kp, 32): fp32 products, fp32 sums.
template <int TT>
GPTOSS_TARGET_AVX512 void panel_f32_tile_avx512(const float* panel, int64_t kp, const float* x,
                                               int64_t x_stride, float* out, PrefetchLines ahead) {
  __m512 c0[TT], c1[TT];
#pragma GCC unroll 16
  for (int j = 0; j < TT; ++j) c0[j] = c1[j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < kp; ++c) {
    const __m512 w0 = _mm512_loadu_ps(panel + c * kPanelRows);
    const __m512 w1 = _mm512_loadu_ps(panel + c * kPanelRows + 16);
    if (c < ahead.lines) __builtin_prefetch(ahead.bytes + 64 * c, 0, 2);
#pragma GCC unroll 16
    for (int j = 0; j < TT; ++j) {
      const __m512 xb = _mm512_set1_ps(x[j * x_stride + c]);
      c0[j] = _mm512_fmadd_ps(w0, xb, c0[j]);
      c1[j] = _mm512_fmadd_ps(w1, xb, c1[j]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < TT; ++j) {
    _mm512_storeu_ps(out + j * kPanelRows, c0[j]);
    _mm512_storeu_ps(out + j * kPanelRows + 16, c1[j]);
  }
}

/// The same for the bf16-pair panel (kp / 2, 32) and activations in planes of
/// 16 bf16 pairs (32 columns), each followed by its low-part plane when Split
/// (round_planes_bf16_avx512's layout), with vdpbf16ps.
template <int TT, bool Split>
GPTOSS_TARGET_AVX512_BF16 void panel_bf16_tile_avx512(const std::uint32_t* panel, int64_t kp,
                                                     const std::uint32_t* x, int64_t x_stride,
                                                     float* out, PrefetchLines ahead) {
  constexpr int64_t kPlane = Split ? 32 : 16;  // uint32 per plane of x
  __m512 c0[TT], c1[TT];
#pragma GCC unroll 16
  for (int j = 0; j < TT; ++j) c0[j] = c1[j] = _mm512_setzero_ps();
  for (int64_t plane = 0; plane < kp / 32; ++plane) {
    const std::uint32_t* wp = panel + plane * 16 * kPanelRows;
    const std::uint32_t* xp = x + plane * kPlane;
    for (int q = 0; q < 16; ++q) {
      const __m512bh w0 = as_bf16x32(_mm512_loadu_si512(wp + q * kPanelRows));
      const __m512bh w1 = as_bf16x32(_mm512_loadu_si512(wp + q * kPanelRows + 16));
      if (const int64_t c = 16 * plane + q; c < ahead.lines) __builtin_prefetch(ahead.bytes + 64 * c, 0, 2);
#pragma GCC unroll 16
      for (int j = 0; j < TT; ++j) {
        const __m512bh hi = as_bf16x32(_mm512_set1_epi32(static_cast<int>(xp[j * x_stride + q])));
        c0[j] = _mm512_dpbf16_ps(c0[j], w0, hi);
        c1[j] = _mm512_dpbf16_ps(c1[j], w1, hi);
        if constexpr (Split) {
          const __m512bh lo = as_bf16x32(_mm512_set1_epi32(static_cast<int>(xp[j * x_stride + 16 + q])));
          c0[j] = _mm512_dpbf16_ps(c0[j], w0, lo);
          c1[j] = _mm512_dpbf16_ps(c1[j], w1, lo);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < TT; ++j) {
    _mm512_storeu_ps(out + j * kPanelRows, c0[j]);
    _mm512_storeu_ps(out + j * kPanelRows + 16, c1[j]);
  }
}

// ---- int8 panels (the int8 precision, AVX512_VNNI) ------------------------
//
// An int8 panel holds, for each block b of 32 columns (nb = panel_cols(K) / 32
// blocks) and each quad q of it (columns 32 b + 4 q .. 32 b + 4 q + 3), the
// 32 rows' four codes as one dword each (rows 0..15, then 16..31: 128 bytes,
// one vector per half), followed by the (nb, 32) fp32 row scales. Codes are
// unsigned bytes: 2 x the E2M1 value + 12 for MXFP4 (scale 2^(s - 127); the
// 2x is taken out by the activations' scale), w + 128 for 8-bit weights.
// The activations go in as int8 blocks of 32 with one scale each and an int32
// offset, -(code offset) x the block's sum, so that each block's vpdpbusd sum
// is the exact integer dot product; it is scaled once per block (activation
// scale first, then the row's block scale, as the row-streaming kernels do).

/// Bytes of one block of 32 columns of an int8 panel's codes.
inline constexpr int64_t kInt8PanelBlockBytes = 8 * kPanelRows * 4;
/// Bytes of one block of 32 packed activations: 32 int8, the int32 offset, the fp32 scale.
inline constexpr int64_t kInt8PanelXBlockBytes = 40;

/// Bytes of an int8 panel of K columns (codes, then row scales).
constexpr int64_t int8_panel_bytes(int64_t k) noexcept {
  return panel_cols(k) / 32 * (kInt8PanelBlockBytes + kPanelRows * 4);
}

/// Row scales of int8 panels: (blocks, 32) floats after the codes.
inline float* int8_panel_scales(std::uint8_t* panel, int64_t k) noexcept {
  return reinterpret_cast<float*>(panel + panel_cols(k) / 32 * kInt8PanelBlockBytes);
}
inline const float* int8_panel_scales(const std::uint8_t* panel, int64_t k) noexcept {
  return reinterpret_cast<const float*>(panel + panel_cols(k) / 32 * kInt8PanelBlockBytes);
}

/// Decodes MXFP4 rows [row, row + rows_here) (rows_here <= 32) into an int8
/// panel (codes 2 x E2M1 + 12, scales 2^(s - 127) as float bits s << 23:
/// exact for bytes 1..254; rows holding other bytes are flagged and
/// recomputed by the caller). Rows past rows_here get code 12 (zero) and
/// scale 0. row_scratch holds 32 rows of blocks.
GPTOSS_TARGET_AVX512 inline void mxfp4_int8_panel_avx512(const Mxfp4Rows& w, int64_t row, int64_t rows_here,
                                                        std::uint8_t* row_scratch, std::uint8_t* panel) {
  const int64_t nb = w.blocks_per_row, row_bytes = nb * 16;
  std::memcpy(row_scratch, w.blocks + row * row_bytes, static_cast<std::size_t>(rows_here * row_bytes));
  transpose_panel_scales(w.scales, nb, row, rows_here, 0.0f, int8_panel_scales(panel, 32 * nb),
                         [](std::uint8_t s) { return std::bit_cast<float>(std::uint32_t{s} << 23); });
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kE2M1TwiceOffsetBytes)));
  const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
  const __m512i offsets = row_offsets_avx512(row_bytes);
  for (int64_t g = 0; g < 2; ++g) {
    const int64_t live = std::clamp<int64_t>(rows_here - 16 * g, 0, 16);
    const __mmask16 mask = first_lanes16(live);
    const std::uint8_t* base = row_scratch + 16 * g * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      std::uint8_t* out = panel + b * kInt8PanelBlockBytes + 64 * g;
#pragma GCC unroll 4
      for (int64_t j = 0; j < 4; ++j) {
        // Dword j of block b of each row: bytes 4j..4j+3, elements 8j..8j+7
        // (byte i: element 8j + 2i in the low nibble, 8j + 2i + 1 in the high).
        const __m512i d = live == 0 ? _mm512_setzero_si512()
                                    : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets,
                                                                  base + b * 16 + 4 * j, 1);
        const __m512i lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(d, low_nibbles));
        const __m512i hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(d, 4), low_nibbles));
        // Per 128-bit lane (rows 4L..4L+3): unpacklo = [r0 quad 2j, r0 quad 2j+1, r1 .., r1 ..], unpackhi rows 2, 3.
        const __m512 first = _mm512_castsi512_ps(_mm512_unpacklo_epi8(lo, hi));
        const __m512 second = _mm512_castsi512_ps(_mm512_unpackhi_epi8(lo, hi));
        _mm512_storeu_ps(out + (2 * j) * 128, _mm512_shuffle_ps(first, second, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(out + (2 * j + 1) * 128, _mm512_shuffle_ps(first, second, _MM_SHUFFLE(3, 1, 3, 1)));
      }
    }
  }
}

/// 8-bit rows [row, row + rows_here) (rows_here <= 32) into an int8 panel
/// (codes w + 128, the blocks' fp32 scales); rows past rows_here get code
/// 128 (zero) and scale 0. row_scratch holds 32 rows.
GPTOSS_TARGET_AVX512 inline void int8_int8_panel_avx512(const Int8Rows& w, int64_t row, int64_t rows_here,
                                                       std::int8_t* row_scratch, std::uint8_t* panel) {
  const int64_t nb = w.blocks_per_row, row_bytes = nb * 32;
  std::memcpy(row_scratch, w.values + row * row_bytes, static_cast<std::size_t>(rows_here * row_bytes));
  transpose_panel_scales(w.scales, nb, row, rows_here, 0.0f, int8_panel_scales(panel, 32 * nb), kSameScale);
  const __m512i sign_bit = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i offsets = row_offsets_avx512(row_bytes);
  for (int64_t g = 0; g < 2; ++g) {
    const int64_t live = std::clamp<int64_t>(rows_here - 16 * g, 0, 16);
    const __mmask16 mask = first_lanes16(live);
    const std::int8_t* base = row_scratch + 16 * g * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
#pragma GCC unroll 8
      for (int64_t q = 0; q < 8; ++q) {
        const __m512i d = live == 0 ? _mm512_setzero_si512()
                                    : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets,
                                                                  base + b * 32 + 4 * q, 1);
        _mm512_storeu_si512(panel + b * kInt8PanelBlockBytes + q * 128 + 64 * g, _mm512_xor_si512(d, sign_bit));
      }
    }
  }
}

/// Packs one token's activations x (k) for panel_int8_tile_avx512: per block
/// of 32 (0 past k), the int8 values rounded by quantize_block_int8_avx512,
/// the int32 offset -code_offset x their sum, and the fp32 scale x
/// scale_factor.
GPTOSS_TARGET_AVX512_VNNI inline void pack_int8_panel_activations_avx512(const float* x, int64_t k, int code_offset,
                                                                         float scale_factor, std::uint8_t* out) {
  for (int64_t b = 0; b < panel_cols(k) / 32; ++b) {
    __m128i q[2];
    const float scale = quantize_block_int8_avx512(x + 32 * b, std::min<int64_t>(32, k - 32 * b), q);
    std::uint8_t* o = out + b * kInt8PanelXBlockBytes;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), q[0]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), q[1]);
    const __m256i wide = _mm256_add_epi16(_mm256_cvtepi8_epi16(q[0]), _mm256_cvtepi8_epi16(q[1]));
    const __m512i sums = _mm512_cvtepi16_epi32(wide);
    const std::int32_t offset = -code_offset * _mm512_reduce_add_epi32(sums);
    const float scaled = scale * scale_factor;
    std::memcpy(o + 32, &offset, 4);
    std::memcpy(o + 36, &scaled, 4);
  }
}

/// out (TT, 32) = x (TT tokens, stride apart, packed by
/// pack_int8_panel_activations_avx512) times the int8 panel of kp columns:
/// per block, exact integer sums (vpdpbusd, the 32 x TT sums in registers),
/// then scaled into fp32 accumulators.
template <int TT>
GPTOSS_TARGET_AVX512_VNNI void panel_int8_tile_avx512(const std::uint8_t* panel, int64_t kp, const std::uint8_t* x,
                                                     int64_t x_stride, float* out, PrefetchLines ahead) {
  const int64_t nb = kp / 32;
  const float* scales = int8_panel_scales(panel, kp);
  __m512 c0[TT], c1[TT];
#pragma GCC unroll 16
  for (int j = 0; j < TT; ++j) c0[j] = c1[j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const std::uint8_t* wb = panel + b * kInt8PanelBlockBytes;
    const std::uint8_t* xb = x + b * kInt8PanelXBlockBytes;
    __m512i d0[TT], d1[TT];
#pragma GCC unroll 16
    for (int j = 0; j < TT; ++j) {
      std::int32_t offset;
      std::memcpy(&offset, xb + j * x_stride + 32, 4);
      d0[j] = d1[j] = _mm512_set1_epi32(offset);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      const __m512i w0 = _mm512_loadu_si512(wb + q * 128);
      const __m512i w1 = _mm512_loadu_si512(wb + q * 128 + 64);
      if (const int64_t line = 2 * (8 * b + q); line < ahead.lines) {
        __builtin_prefetch(ahead.bytes + 64 * line, 0, 2);
        if (line + 1 < ahead.lines) __builtin_prefetch(ahead.bytes + 64 * (line + 1), 0, 2);
      }
#pragma GCC unroll 16
      for (int j = 0; j < TT; ++j) {
        std::int32_t four;
        std::memcpy(&four, xb + j * x_stride + 4 * q, 4);
        const __m512i xv = _mm512_set1_epi32(four);
        d0[j] = _mm512_dpbusd_epi32(d0[j], w0, xv);
        d1[j] = _mm512_dpbusd_epi32(d1[j], w1, xv);
      }
    }
    const __m512 s0 = _mm512_loadu_ps(scales + b * kPanelRows), s1 = _mm512_loadu_ps(scales + b * kPanelRows + 16);
#pragma GCC unroll 16
    for (int j = 0; j < TT; ++j) {
      float x_scale;
      std::memcpy(&x_scale, xb + j * x_stride + 36, 4);
      const __m512 xs = _mm512_set1_ps(x_scale);
      c0[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d0[j]), xs), s0, c0[j]);
      c1[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d1[j]), xs), s1, c1[j]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < TT; ++j) {
    _mm512_storeu_ps(out + j * kPanelRows, c0[j]);
    _mm512_storeu_ps(out + j * kPanelRows + 16, c1[j]);
  }
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast
