// cpu_fast sink attention: same signature and semantics as the reference
// (kernels/reference/attention.hpp), computed in fp32 with an online
// (flash-style) softmax.
//
// Work items are (query token, KV head) pairs, spread over the thread pool.
// An item walks the visible keys in blocks (16 keys with AVX-512, 8 with
// AVX2): the block's keys are read once and transposed into a (D, 16)
// scratch tile that every query head of the GQA group reuses, scores are
// computed with the keys in the lanes, and each head keeps a running max m,
// denominator l and output accumulator. The sink logit starts them: m = sink,
// l = 1 (l = 0 for a -inf sink), acc = 0; a block that raises the max
// rescales l and acc by exp(m_old - m_new). out = acc / l.
//
// Visibility is per key, as in the reference (k_pos[j] <= p and, for a
// window W > 0, p - W < k_pos[j]); where a part's positions increase
// strictly (a full layer's cache, a step's new tokens) its scan is narrowed
// to the visible range by binary search.
//
// The keys may come in several parts (KeyValuePart: a KV cache's storage,
// ring or array, then the step's new tokens): an item walks the parts one
// after the other with the same running softmax state, so decoding attends
// over the cache in place, with no concatenated copy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/simd.hpp"
#include "gptoss/kernels/reference/attention.hpp"

#if __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#endif

namespace gptoss::kernels::fast {

/// The keys of one part that one work item scans.
struct KeyRange {
  const float* k = nullptr;      // key j at k + j * kv_stride, dim floats
  const float* v = nullptr;      // value j at v + j * kv_stride
  int64_t kv_stride = 0;
  const index_t* k_pos = nullptr;
  int64_t begin = 0, end = 0;    // keys [begin, end) are scanned
};

/// One work item: the query heads of one KV group at one query token.
struct AttentionGroup {
  const float* q = nullptr;      // (heads, dim): the group's query rows
  const KeyRange* ranges = nullptr;  // scanned in order, one softmax state
  int64_t range_count = 0;
  index_t position = 0;          // the query's position
  index_t window = 0;            // 0: unlimited
  const float* sinks = nullptr;  // (heads)
  float scale = 1.0f;
  int64_t heads = 0, dim = 0;
  float* out = nullptr;          // (heads, dim)
};

inline bool key_visible(index_t key_position, index_t position, index_t window) noexcept {
  return key_position <= position && (window == 0 || position - window < key_position);
}

/// Initial running state of a head from its sink logit.
inline void start_softmax(float sink, float& m, float& l) noexcept {
  m = sink;
  l = sink == -std::numeric_limits<float>::infinity() ? 0.0f : 1.0f;
}

/// Reference-semantics fallback of one group, in fp32 (portable tier).
inline void attend_group_portable(const AttentionGroup& g) {
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
  using batch = xsimd::batch<float>;
  constexpr int64_t L = static_cast<int64_t>(batch::size);
#else
  constexpr int64_t L = 1;
#endif
  const int64_t d = g.dim, vec_end = d / L * L;
  std::vector<float> acc(static_cast<std::size_t>(d));
  for (int64_t h = 0; h < g.heads; ++h) {
    const float* q = g.q + h * d;
    float m, l;
    start_softmax(g.sinks[h], m, l);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t r = 0; r < g.range_count; ++r) {
      const KeyRange& kr = g.ranges[r];
      for (int64_t j = kr.begin; j < kr.end; ++j) {
        if (!key_visible(kr.k_pos[j], g.position, g.window)) continue;
        const float* key = kr.k + j * kr.kv_stride;
        const float* value = kr.v + j * kr.kv_stride;
        float dot = 0.0f;
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
        batch sum(0.0f);
        for (int64_t i = 0; i < vec_end; i += L) {
          sum = xsimd::fma(batch::load_unaligned(q + i), batch::load_unaligned(key + i), sum);
        }
        dot = xsimd::hadd(sum);
#endif
        for (int64_t i = vec_end; i < d; ++i) dot += q[i] * key[i];
        const float s = dot * g.scale;
        float p;
        if (s > m) {
          const float correction = std::exp(m - s);
          l *= correction;
          for (float& a : acc) a *= correction;
          m = s;
          p = 1.0f;
        } else {
          p = std::exp(s - m);
        }
        l += p;
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
        const batch pb(p);
        for (int64_t i = 0; i < vec_end; i += L) {
          xsimd::fma(pb, batch::load_unaligned(value + i), batch::load_unaligned(&acc[i]))
              .store_unaligned(&acc[i]);
        }
#endif
        for (int64_t i = vec_end; i < d; ++i) acc[i] += p * value[i];
      }
    }
    for (int64_t i = 0; i < d; ++i) g.out[h * d + i] = acc[i] / l;
  }
}

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

/// Transposes 16 rows of 16 floats (rows[i], masked to `cols` columns; rows
/// past `count` are zero) into out[c * 16 + i] for c < 16.
GPTOSS_TARGET_AVX512 inline void transpose16_avx512(const float* const* rows, int64_t count,
                                                    std::uint16_t cols, float* out) {
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    r[i] = i < count ? _mm512_maskz_loadu_ps(cols, rows[i]) : _mm512_setzero_ps();
  }
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    const __m512d t0 = _mm512_castps_pd(t[4 * b]), t1 = _mm512_castps_pd(t[4 * b + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * b + 2]), t3 = _mm512_castps_pd(t[4 * b + 3]);
    u[4 * b + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  // u[4 b + c], 128-bit lane L: rows 4b..4b+3 of column 4 L + c.
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    const __m512 x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee);
    const __m512 y0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee);
    _mm512_storeu_ps(out + (0 + c) * 16, _mm512_shuffle_f32x4(x0, y0, 0x88));
    _mm512_storeu_ps(out + (4 + c) * 16, _mm512_shuffle_f32x4(x0, y0, 0xdd));
    _mm512_storeu_ps(out + (8 + c) * 16, _mm512_shuffle_f32x4(x1, y1, 0x88));
    _mm512_storeu_ps(out + (12 + c) * 16, _mm512_shuffle_f32x4(x1, y1, 0xdd));
  }
}

/// scores (H, 16) = q (H heads, rows `dim` apart) times the transposed key
/// tile (dim, 16), for H <= 8 heads at once: each tile row is loaded once
/// and multiplied with every head's broadcast element; two accumulator sets
/// (even and odd dims) keep 2 H FMA chains in flight.
template <int H>
GPTOSS_TARGET_AVX512 inline void block_scores_avx512(const float* q, int64_t dim, const float* tile,
                                                     float* scores) {
  __m512 s0[H], s1[H];
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) {
    s0[h] = _mm512_setzero_ps();
    s1[h] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 2 <= dim; i += 2) {
    const __m512 k0 = _mm512_loadu_ps(tile + i * 16), k1 = _mm512_loadu_ps(tile + (i + 1) * 16);
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) {
      s0[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * dim + i]), k0, s0[h]);
      s1[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * dim + i + 1]), k1, s1[h]);
    }
  }
  if (i < dim) {
    const __m512 k0 = _mm512_loadu_ps(tile + i * 16);
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) s0[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * dim + i]), k0, s0[h]);
  }
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h) _mm512_storeu_ps(scores + 16 * h, _mm512_add_ps(s0[h], s1[h]));
}

/// acc (H, dim16) += p (H, 16) times the block's values, for H <= 4 heads and
/// dim chunks [c0, c0 + C) of 16 (C <= 4): every value chunk is loaded once
/// for all heads. Only the visible keys (bits of `visible`) contribute.
template <int H, int C>
GPTOSS_TARGET_AVX512 inline void block_values_avx512(const float* const* values, std::uint16_t visible,
                                                     const float* p, int64_t c0, int64_t dim,
                                                     int64_t dim16, float* acc) {
  __m512 a[H][C];
  std::uint16_t mask[C];
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) mask[c] = first_lanes16(dim - 16 * (c0 + c));
#pragma GCC unroll 4
  for (int h = 0; h < H; ++h) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) a[h][c] = _mm512_loadu_ps(acc + h * dim16 + 16 * (c0 + c));
  }
  for (unsigned bits = visible; bits != 0; bits &= bits - 1) {
    const int key = __builtin_ctz(bits);
    __m512 v[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) v[c] = _mm512_maskz_loadu_ps(mask[c], values[key] + 16 * (c0 + c));
#pragma GCC unroll 4
    for (int h = 0; h < H; ++h) {
      const __m512 ph = _mm512_set1_ps(p[16 * h + key]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) a[h][c] = _mm512_fmadd_ps(ph, v[c], a[h][c]);
    }
  }
#pragma GCC unroll 4
  for (int h = 0; h < H; ++h) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(acc + h * dim16 + 16 * (c0 + c), a[h][c]);
  }
}

/// Calls block_values_avx512<H, C> for run-time H in [1, 4] and C in [1, 4].
template <int H = 1, int C = 1>
GPTOSS_TARGET_AVX512 inline void block_values_dispatch_avx512(int heads, int chunks,
                                                              const float* const* values,
                                                              std::uint16_t visible, const float* p,
                                                              int64_t c0, int64_t dim, int64_t dim16,
                                                              float* acc) {
  if constexpr (H <= 4 && C <= 4) {
    if (heads == H && chunks == C) {
      block_values_avx512<H, C>(values, visible, p, c0, dim, dim16, acc);
    } else if (chunks == C) {
      block_values_dispatch_avx512<H + 1, C>(heads, chunks, values, visible, p, c0, dim, dim16, acc);
    } else {
      block_values_dispatch_avx512<H, C + 1>(heads, chunks, values, visible, p, c0, dim, dim16, acc);
    }
  }
}

/// Calls block_scores_avx512<H> for run-time H in [1, 8].
template <int H = 1>
GPTOSS_TARGET_AVX512 inline void block_scores_dispatch_avx512(int heads, const float* q, int64_t dim,
                                                              const float* tile, float* scores) {
  if constexpr (H <= 8) {
    if (heads == H) {
      block_scores_avx512<H>(q, dim, tile, scores);
    } else {
      block_scores_dispatch_avx512<H + 1>(heads, q, dim, tile, scores);
    }
  }
}

/// One group with AVX-512: blocks of 16 keys. scratch: (dim16 * 16) key tile
/// + (heads * dim16) accumulators + (heads * 16) scores, dim16 = dim rounded
/// up to 16.
GPTOSS_TARGET_AVX512 inline void attend_group_avx512(const AttentionGroup& g, float* scratch) {
  const int64_t d = g.dim, d16 = (d + 15) / 16 * 16, chunks = d16 / 16;
  float* tile = scratch;                // (d16, 16): tile[c * 16 + i] = key i, dim c
  float* acc = tile + d16 * 16;         // (heads, d16)
  float* scores = acc + g.heads * d16;  // (heads, 16), then the probabilities
  float m[64], l[64];                   // running max / denominator per head (heads <= 64)
  const float* keys[16];
  const float* values[16];
  for (int64_t h = 0; h < g.heads; ++h) start_softmax(g.sinks[h], m[h], l[h]);
  std::fill(acc, acc + g.heads * d16, 0.0f);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 scale = _mm512_set1_ps(g.scale);
  for (int64_t r = 0; r < g.range_count; ++r) {
    const KeyRange& kr = g.ranges[r];
    for (int64_t j0 = kr.begin; j0 < kr.end; j0 += 16) {
      const int64_t count = std::min<int64_t>(16, kr.end - j0);
      std::uint16_t visible = 0;
      for (int64_t i = 0; i < count; ++i) {
        keys[i] = kr.k + (j0 + i) * kr.kv_stride;
        values[i] = kr.v + (j0 + i) * kr.kv_stride;
        if (key_visible(kr.k_pos[j0 + i], g.position, g.window)) visible |= std::uint16_t(1u << i);
      }
      if (visible == 0) continue;
      // One KV head's rows are nkv * D floats apart, a stride the hardware
      // prefetchers follow poorly: request the next block's keys and values
      // while this one is computed.
      for (int64_t i = 0, next = std::min<int64_t>(16, kr.end - j0 - 16); i < next; ++i) {
        const float* k_row = kr.k + (j0 + 16 + i) * kr.kv_stride;
        const float* v_row = kr.v + (j0 + 16 + i) * kr.kv_stride;
        for (int64_t b = 0; b < d; b += 16) {
          __builtin_prefetch(k_row + b, 0, 3);
          __builtin_prefetch(v_row + b, 0, 3);
        }
      }
      for (int64_t c = 0; c < chunks; ++c) {
        const float* rows[16];
        for (int64_t i = 0; i < count; ++i) rows[i] = keys[i] + 16 * c;
        transpose16_avx512(rows, count, first_lanes16(d - 16 * c), tile + c * 256);
      }
      for (int64_t h0 = 0; h0 < g.heads; h0 += 8) {
        const int heads = static_cast<int>(std::min<int64_t>(8, g.heads - h0));
        block_scores_dispatch_avx512(heads, g.q + h0 * d, d, tile, scores + 16 * h0);
      }
      for (int64_t h = 0; h < g.heads; ++h) {
        const __m512 score = _mm512_mask_mul_ps(neg_inf, visible, _mm512_loadu_ps(scores + 16 * h), scale);
        const float block_max = hmax_avx512(score);
        if (block_max > m[h]) {
          const float correction = std::exp(m[h] - block_max);
          l[h] *= correction;
          const __m512 cv = _mm512_set1_ps(correction);
          float* acc_h = acc + h * d16;
          for (int64_t c = 0; c < chunks; ++c) {
            _mm512_storeu_ps(acc_h + 16 * c, _mm512_mul_ps(cv, _mm512_loadu_ps(acc_h + 16 * c)));
          }
          m[h] = block_max;
        }
        const __m512 p = _mm512_maskz_mov_ps(visible, exp_avx512(_mm512_sub_ps(score, _mm512_set1_ps(m[h]))));
        l[h] += hsum_avx512(p);
        _mm512_storeu_ps(scores + 16 * h, p);
      }
      for (int64_t h0 = 0; h0 < g.heads; h0 += 4) {
        const int heads = static_cast<int>(std::min<int64_t>(4, g.heads - h0));
        for (int64_t c0 = 0; c0 < chunks; c0 += 4) {
          const int cn = static_cast<int>(std::min<int64_t>(4, chunks - c0));
          block_values_dispatch_avx512(heads, cn, values, visible, scores + 16 * h0, c0, d, d16,
                                       acc + h0 * d16);
        }
      }
    }
  }
  for (int64_t h = 0; h < g.heads; ++h) {
    const float inv = 1.0f / l[h];
    for (int64_t i = 0; i < d; ++i) g.out[h * d + i] = acc[h * d16 + i] * inv;
  }
}

/// Transposes 8 rows of 8 floats (rows past `count` zero; columns masked by
/// `cols`) into out[c * 8 + i].
GPTOSS_TARGET_AVX2 inline void transpose8_avx2(const float* const* rows, int64_t count, __m256i cols,
                                               float* out) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = i < count ? _mm256_maskload_ps(rows[i], cols) : _mm256_setzero_ps();
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int b = 0; b < 2; ++b) {
    u[4 * b + 0] = _mm256_shuffle_ps(t[4 * b], t[4 * b + 2], 0x44);
    u[4 * b + 1] = _mm256_shuffle_ps(t[4 * b], t[4 * b + 2], 0xee);
    u[4 * b + 2] = _mm256_shuffle_ps(t[4 * b + 1], t[4 * b + 3], 0x44);
    u[4 * b + 3] = _mm256_shuffle_ps(t[4 * b + 1], t[4 * b + 3], 0xee);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    _mm256_storeu_ps(out + c * 8, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
    _mm256_storeu_ps(out + (4 + c) * 8, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
  }
}

/// One group with AVX2: blocks of 8 keys (see attend_group_avx512).
GPTOSS_TARGET_AVX2 inline void attend_group_avx2(const AttentionGroup& g, float* scratch) {
  const int64_t d = g.dim, d8 = (d + 7) / 8 * 8, chunks = d8 / 8;
  float* tile = scratch;          // (d8, 8)
  float* acc = scratch + d8 * 8;  // (heads, d8)
  float m[64], l[64];
  alignas(32) float p[8];
  const float* keys[8];
  const float* values[8];
  for (int64_t h = 0; h < g.heads; ++h) start_softmax(g.sinks[h], m[h], l[h]);
  std::fill(acc, acc + g.heads * d8, 0.0f);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < g.range_count; ++r) {
    const KeyRange& kr = g.ranges[r];
    for (int64_t j0 = kr.begin; j0 < kr.end; j0 += 8) {
      const int64_t count = std::min<int64_t>(8, kr.end - j0);
      alignas(32) std::int32_t visible_lanes[8] = {};
      int live[8];  // the visible lanes, in order
      int live_count = 0;
      for (int64_t i = 0; i < count; ++i) {
        keys[i] = kr.k + (j0 + i) * kr.kv_stride;
        values[i] = kr.v + (j0 + i) * kr.kv_stride;
        if (key_visible(kr.k_pos[j0 + i], g.position, g.window)) {
          visible_lanes[i] = -1;
          live[live_count++] = static_cast<int>(i);
        }
      }
      if (live_count == 0) continue;
      const __m256 visible =
          _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(visible_lanes)));
      for (int64_t c = 0; c < chunks; ++c) {
        const float* rows[8];
        for (int64_t i = 0; i < count; ++i) rows[i] = keys[i] + 8 * c;
        transpose8_avx2(rows, count, first_lanes8_avx2(d - 8 * c), tile + c * 64);
      }
      for (int64_t h = 0; h < g.heads; ++h) {
        const float* q = g.q + h * d;
        __m256 s[4];
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) s[u] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 4 <= d; i += 4) {
#pragma GCC unroll 4
          for (int u = 0; u < 4; ++u) {
            s[u] = _mm256_fmadd_ps(_mm256_set1_ps(q[i + u]), _mm256_loadu_ps(tile + (i + u) * 8), s[u]);
          }
        }
        for (; i < d; ++i) s[0] = _mm256_fmadd_ps(_mm256_set1_ps(q[i]), _mm256_loadu_ps(tile + i * 8), s[0]);
        __m256 score = _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])),
                                     _mm256_set1_ps(g.scale));
        score = _mm256_blendv_ps(neg_inf, score, visible);
        const float block_max = hmax_avx2(score);
        float* acc_h = acc + h * d8;
        if (block_max > m[h]) {
          const float correction = std::exp(m[h] - block_max);
          l[h] *= correction;
          const __m256 cv = _mm256_set1_ps(correction);
          for (int64_t c = 0; c < chunks; ++c) {
            _mm256_storeu_ps(acc_h + 8 * c, _mm256_mul_ps(cv, _mm256_loadu_ps(acc_h + 8 * c)));
          }
          m[h] = block_max;
        }
        const __m256 pv = _mm256_and_ps(visible, exp_avx2(_mm256_sub_ps(score, _mm256_set1_ps(m[h]))));
        l[h] += hsum_avx2(pv);
        _mm256_store_ps(p, pv);
        // Only the visible keys' values: a masked key's (NaN, say) must not
        // reach this query through a zero weight.
        for (int64_t c = 0; c < chunks; ++c) {
          const __m256i mask = first_lanes8_avx2(d - 8 * c);
          __m256 a0 = _mm256_loadu_ps(acc_h + 8 * c), a1 = _mm256_setzero_ps();
          int64_t n = 0;
          for (; n + 2 <= live_count; n += 2) {
            const int k0 = live[n], k1 = live[n + 1];
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[k0]), _mm256_maskload_ps(values[k0] + 8 * c, mask), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(p[k1]), _mm256_maskload_ps(values[k1] + 8 * c, mask), a1);
          }
          if (n < live_count) {
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[live[n]]), _mm256_maskload_ps(values[live[n]] + 8 * c, mask), a0);
          }
          _mm256_storeu_ps(acc_h + 8 * c, _mm256_add_ps(a0, a1));
        }
      }
    }
  }
  for (int64_t h = 0; h < g.heads; ++h) {
    const float inv = 1.0f / l[h];
    for (int64_t i = 0; i < d; ++i) g.out[h * d + i] = acc[h * d8 + i] * inv;
  }
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

/// First index in [0, n) whose k_pos exceeds `bound` (k_pos increasing).
inline int64_t first_after(const index_t* k_pos, int64_t n, index_t bound) {
  return std::upper_bound(k_pos, k_pos + n, bound) - k_pos;
}

}  // namespace gptoss::kernels::fast

namespace gptoss::kernels {

/// out (T, nq * D) = attention of q (T, nq, D) at positions q_pos (T) over
/// the keys of every part (each k, v (S_i, nkv, D) at positions (S_i)), with
/// sinks (nq) and the given scale; window 0 means unlimited. The parts are
/// read where they are (no concatenated copy).
inline void sink_attention(cpu_fast, TensorView<const float, 3> q, VectorView<const index_t> q_pos,
                           std::span<const KeyValuePart> parts, VectorView<const float> sinks,
                           float scale, index_t window, MatrixView<float> out) {
  const index_t t_count = q.extent(0), nq = q.extent(1), d = q.extent(2);
  if (parts.empty()) throw ShapeError("sink_attention: no key/value parts");
  const index_t nkv = parts[0].k.extent(1);
  if (nkv == 0 || nq % nkv != 0 || q_pos.extent(0) != t_count || sinks.extent(0) != nq ||
      out.extent(0) != t_count || out.extent(1) != nq * d) {
    throw ShapeError("sink_attention: q " + shape_string(q.shape()) + ", k " +
                     shape_string(parts[0].k.shape()) + ", sinks " + shape_string(sinks.shape()) +
                     ", out " + shape_string(out.shape()) + " do not fit");
  }
  check_key_value_parts(parts, nkv, d, "sink_attention");
  const Isa isa = active_isa();
  const index_t group = nq / nkv;
  if (isa == Isa::scalar || group > 64 || t_count == 0 || d == 0) {
    sink_attention(cpu_reference{}, q, q_pos, parts, sinks, scale, window, out);
    return;
  }
  // Per part: whether its positions increase strictly (then each query
  // scans only its visible range), and the keys the last query sees.
  const std::size_t part_count = parts.size();
  std::vector<char> increasing(part_count, 1);
  int64_t keys_seen = 0;
  for (std::size_t r = 0; r < part_count; ++r) {
    const VectorView<const index_t> pos = parts[r].positions;
    const index_t n = pos.extent(0);
    for (index_t j = 1; j < n && increasing[r]; ++j) increasing[r] = pos[j - 1] < pos[j];
    keys_seen += increasing[r] && window > 0 ? std::min<int64_t>(n, window) : n;
  }
  const int64_t d16 = (d + 15) / 16 * 16;
  const std::size_t scratch_floats = static_cast<std::size_t>(d16 * 16 + group * d16 + group * 16);

  auto run_items = [&](int64_t first, int64_t last) {
    thread_local std::vector<float> scratch;
    thread_local std::vector<fast::KeyRange> ranges;
    if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
    ranges.resize(part_count);
    for (int64_t item = first; item < last; ++item) {
      // KV-head-major: a thread's range covers whole heads over all tokens, so
      // causal rows (later tokens see more keys) split evenly and each thread
      // reads only its heads' keys.
      const index_t kv = item / t_count, t = item % t_count;
      fast::AttentionGroup g;
      g.q = &q(t, kv * group, 0);
      g.position = q_pos[t];
      g.window = window;
      for (std::size_t r = 0; r < part_count; ++r) {
        const KeyValuePart& part = parts[r];
        const index_t s_count = part.k.extent(0);
        fast::KeyRange& kr = ranges[r];
        kr.k = part.k.data() + kv * d;
        kr.v = part.v.data() + kv * d;
        kr.kv_stride = nkv * d;
        kr.k_pos = part.positions.data();
        kr.begin = 0;
        kr.end = s_count;
        if (increasing[r] && s_count > 0) {
          kr.end = fast::first_after(kr.k_pos, s_count, g.position);
          if (window > 0) {
            kr.begin = std::min(kr.end, fast::first_after(kr.k_pos, s_count, g.position - window));
          }
        }
      }
      g.ranges = ranges.data();
      g.range_count = static_cast<int64_t>(part_count);
      g.sinks = sinks.data() + kv * group;
      g.scale = scale;
      g.heads = group;
      g.dim = d;
      g.out = &out(t, kv * group * d);
      switch (isa) {
#if GPTOSS_X86
        case Isa::avx512: fast::attend_group_avx512(g, scratch.data()); break;
        case Isa::avx2_fma: fast::attend_group_avx2(g, scratch.data()); break;
#endif
        default: fast::attend_group_portable(g); break;
      }
    }
  };
  const int64_t items = t_count * nkv;
  if (items * keys_seen * group * d >= (int64_t{1} << 18)) {
    thread_pool().parallel_for(0, items, 1, run_items);
  } else {
    run_items(0, items);
  }
}

/// out (T, nq * D) = attention of q (T, nq, D) at positions q_pos (T) over
/// keys k (S, nkv, D) and values v (S, nkv, D) at positions k_pos (S), with
/// sinks (nq) and the given scale; window 0 means unlimited.
inline void sink_attention(cpu_fast, TensorView<const float, 3> q, VectorView<const index_t> q_pos,
                           TensorView<const float, 3> k, TensorView<const float, 3> v,
                           VectorView<const index_t> k_pos, VectorView<const float> sinks,
                           float scale, index_t window, MatrixView<float> out) {
  // One part; the parts overload checks every shape as the reference does.
  const KeyValuePart part{k, v, k_pos};
  sink_attention(cpu_fast{}, q, q_pos, std::span<const KeyValuePart>(&part, 1), sinks, scale, window,
                 out);
}

}  // namespace gptoss::kernels
