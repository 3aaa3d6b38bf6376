// Building blocks of the fast kernels: the target attributes that let one
// translation unit, compiled without -march flags, hold AVX-512 and AVX2 code
// next to baseline code (run-time dispatch on active_isa()), and the vector
// helpers the tiers share (horizontal sums, exp).
//
// Rules for code in a target region: every function that uses intrinsics
// carries the matching attribute (lambdas do not inherit it), functions take
// and return only pointers and scalars across tiers (vector arguments would
// change the ABI of untargeted callers), and fixed-count loops are unrolled
// with `#pragma GCC unroll` so accumulator arrays live in registers at -O2.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GPTOSS_X86 1
#else
#define GPTOSS_X86 0
#endif

// The three code-generation targets of the fast kernels. Attributes must be
// written out at each function; these macros keep the feature lists in one
// place. AVX-512 code never needs BF16 or VNNI unless it says so: those
// targets are used only behind has_avx512_bf16() and has_avx512_vnni().
#if GPTOSS_X86
#define GPTOSS_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2,f16c,popcnt")))
#define GPTOSS_TARGET_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,bmi,bmi2,f16c,popcnt")))
#define GPTOSS_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,bmi,bmi2,f16c,popcnt")))
#define GPTOSS_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,f16c,popcnt")))
#endif

namespace gptoss::kernels::fast {

using std::int64_t;

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

// ---- AVX-512 -------------------------------------------------------------

/// e^x for 16 lanes, about 1 ulp (Cephes polynomial); exp(-inf) = 0,
/// exp(+inf) = inf, NaN stays NaN.
GPTOSS_TARGET_AVX512 inline __m512 exp_avx512(__m512 x) noexcept {
  // max/min return their second operand when one is NaN: keep x second.
  x = _mm512_min_ps(_mm512_set1_ps(88.8f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);  // p * 2^n, exact, with graceful under/overflow
}

GPTOSS_TARGET_AVX512 inline float hsum_avx512(__m512 v) noexcept {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

GPTOSS_TARGET_AVX512 inline float hmax_avx512(__m512 v) noexcept {
  const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

/// Lane mask of the first `count` lanes (none for count <= 0, all for >= 16).
inline std::uint16_t first_lanes16(int64_t count) noexcept {
  if (count <= 0) return 0;
  return count >= 16 ? std::uint16_t{0xffff} : static_cast<std::uint16_t>((1u << count) - 1u);
}
/// Lane mask of the first `count` (0..32) 16-bit lanes.
inline std::uint32_t first_lanes32(int64_t count) noexcept {
  if (count <= 0) return 0;
  return count >= 32 ? 0xffffffffu : (1u << count) - 1u;
}

// ---- AVX2 ----------------------------------------------------------------

/// e^x for 8 lanes, about 1 ulp; results below 2^-126 flush to 0,
/// exp(+inf) = inf, NaN stays NaN.
GPTOSS_TARGET_AVX2 inline __m256 exp_avx2(__m256 x) noexcept {
  const __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  const __m256 too_small = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  const __m256 too_large = _mm256_cmp_ps(x, _mm256_set1_ps(88.72f), _CMP_GT_OQ);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n for n in [-126, 128]: n = 128 (x near 88.7) is done as 2 * 2^127.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n_low = _mm256_min_epi32(ni, _mm256_set1_epi32(127));
  const __m256 pow_low = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(n_low, _mm256_set1_epi32(127)), 23));
  const __m256 extra = _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_add_epi32(_mm256_sub_epi32(ni, n_low), _mm256_set1_epi32(127)), 23));
  __m256 result = _mm256_mul_ps(_mm256_mul_ps(p, pow_low), extra);
  result = _mm256_blendv_ps(result, _mm256_setzero_ps(), too_small);
  result = _mm256_blendv_ps(result, _mm256_set1_ps(__builtin_inff()), too_large);
  return _mm256_blendv_ps(result, x, is_nan);
}

GPTOSS_TARGET_AVX2 inline float hsum_avx2(__m256 v) noexcept {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

GPTOSS_TARGET_AVX2 inline float hmax_avx2(__m256 v) noexcept {
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

/// Load mask (all-ones lanes) for the first `count` (0..8) of 8 lanes.
GPTOSS_TARGET_AVX2 inline __m256i first_lanes8_avx2(int64_t count) noexcept {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), index);
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast
