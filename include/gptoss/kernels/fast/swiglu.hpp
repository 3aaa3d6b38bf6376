// cpu_fast clipped SwiGLU of gpt-oss: out (T, I) from x (T, 2I) with
// interleaved (gate, linear) columns: glu = min(gate, limit), linear clamped
// to +-limit, out = glu * sigmoid(alpha glu) * (linear + 1), in fp32 lanes
// (the reference computes in float64; the exp is accurate to about 1 ulp).
// NaN propagates as in the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/simd.hpp"
#include "gptoss/kernels/reference/swiglu.hpp"

#if __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#endif

namespace gptoss::kernels::fast {

/// One element pair in fp32, with the reference's clamps and NaN behaviour.
inline float swiglu_pair_f32(float glu, float linear, float alpha, float limit) noexcept {
  glu = std::min(glu, limit);
  linear = std::clamp(linear, -limit, limit);
  return glu / (1.0f + std::exp(-alpha * glu)) * (linear + 1.0f);
}

/// n outputs from 2n interleaved inputs, portable.
inline void swiglu_row_portable(const float* x, int64_t n, float alpha, float limit, float* out) {
  int64_t i = 0;
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
  using batch = xsimd::batch<float>;
  constexpr int64_t L = static_cast<int64_t>(batch::size);
  alignas(64) float gate[L], linear[L];
  const batch lim(limit), neg_lim(-limit), one(1.0f), neg_alpha(-alpha);
  for (; i + L <= n; i += L) {
    for (int64_t l = 0; l < L; ++l) {
      gate[l] = x[2 * (i + l)];
      linear[l] = x[2 * (i + l) + 1];
    }
    const batch g0 = batch::load_aligned(gate), v0 = batch::load_aligned(linear);
    // select keeps NaN where the reference's std::min / std::clamp keep it.
    const batch g = xsimd::select(g0 > lim, lim, g0);
    const batch v = xsimd::select(v0 > lim, lim, xsimd::select(v0 < neg_lim, neg_lim, v0));
    (g / (one + xsimd::exp(neg_alpha * g)) * (v + one)).store_unaligned(out + i);
  }
#endif
  for (; i < n; ++i) out[i] = swiglu_pair_f32(x[2 * i], x[2 * i + 1], alpha, limit);
}

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

GPTOSS_TARGET_AVX512 inline void swiglu_row_avx512(const float* x, int64_t n, float alpha,
                                                   float limit, float* out) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 lim = _mm512_set1_ps(limit), neg_lim = _mm512_set1_ps(-limit);
  const __m512 one = _mm512_set1_ps(1.0f), neg_alpha = _mm512_set1_ps(-alpha);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t count = std::min<int64_t>(16, n - i);
    const __m512 a = _mm512_maskz_loadu_ps(first_lanes16(2 * count), x + 2 * i);
    const __m512 b = _mm512_maskz_loadu_ps(first_lanes16(2 * count - 16), x + 2 * i + 16);
    // min/max return the second operand when one is NaN: keep x second.
    const __m512 g = _mm512_min_ps(lim, _mm512_permutex2var_ps(a, even, b));
    const __m512 v = _mm512_max_ps(neg_lim, _mm512_min_ps(lim, _mm512_permutex2var_ps(a, odd, b)));
    const __m512 sig = _mm512_add_ps(one, exp_avx512(_mm512_mul_ps(neg_alpha, g)));
    const __m512 result = _mm512_mul_ps(_mm512_div_ps(g, sig), _mm512_add_ps(v, one));
    _mm512_mask_storeu_ps(out + i, first_lanes16(count), result);
  }
}

GPTOSS_TARGET_AVX2 inline void swiglu_row_avx2(const float* x, int64_t n, float alpha, float limit,
                                               float* out) {
  const __m256 lim = _mm256_set1_ps(limit), neg_lim = _mm256_set1_ps(-limit);
  const __m256 one = _mm256_set1_ps(1.0f), neg_alpha = _mm256_set1_ps(-alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + 2 * i), b = _mm256_loadu_ps(x + 2 * i + 8);
    // shuffle_ps interleaves 128-bit halves; permute4x64 puts them in order.
    const __m256 gate = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    const __m256 linear = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
    const __m256 g = _mm256_min_ps(lim, gate);
    const __m256 v = _mm256_max_ps(neg_lim, _mm256_min_ps(lim, linear));
    const __m256 sig = _mm256_add_ps(one, exp_avx2(_mm256_mul_ps(neg_alpha, g)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, sig), _mm256_add_ps(v, one)));
  }
  for (; i < n; ++i) out[i] = swiglu_pair_f32(x[2 * i], x[2 * i + 1], alpha, limit);
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast

namespace gptoss::kernels {

/// out (T, I) = swiglu(x (T, 2I)) with interleaved (gate, linear) columns.
inline void swiglu(cpu_fast, MatrixView<const float> x, float alpha, float limit,
                   MatrixView<float> out) {
  if (x.extent(1) % 2 != 0 || out.extent(0) != x.extent(0) || out.extent(1) * 2 != x.extent(1)) {
    throw ShapeError("swiglu: input " + shape_string(x.shape()) + " and output " +
                     shape_string(out.shape()) + " do not fit (expected (T, 2I) -> (T, I))");
  }
  const Isa isa = active_isa();
  const index_t t_count = x.extent(0), n = out.extent(1);
  if (isa == Isa::scalar || n == 0) {
    swiglu(cpu_reference{}, x, alpha, limit, out);
    return;
  }
  auto rows = [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const float* xr = x.data() + t * 2 * n;
      float* yr = out.data() + t * n;
      switch (isa) {
#if GPTOSS_X86
        case Isa::avx512: fast::swiglu_row_avx512(xr, n, alpha, limit, yr); break;
        case Isa::avx2_fma: fast::swiglu_row_avx2(xr, n, alpha, limit, yr); break;
#endif
        default: fast::swiglu_row_portable(xr, n, alpha, limit, yr); break;
      }
    }
  };
  if (t_count * n >= (int64_t{1} << 16)) {
    thread_pool().parallel_for(0, t_count, 1, rows);
  } else {
    rows(0, t_count);
  }
}

}  // namespace gptoss::kernels
