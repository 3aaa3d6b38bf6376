// cpu_fast RMSNorm: out = x / sqrt(mean(x^2) + eps) * scale per row, as the
// reference: the mean of squares and the scaling are done in float64 lanes,
// so results match the reference to the last bit or one ulp. Rows are split
// across the thread pool when there are many.
#pragma once

#include <cmath>
#include <cstdint>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/simd.hpp"
#include "gptoss/kernels/reference/rms_norm.hpp"

namespace gptoss::kernels::fast {

/// One row, portable (plain loops the compiler vectorizes for the build's
/// baseline): float64 sum, float64 scaling, as the reference.
inline void rms_norm_row_portable(const float* x, const bf16* scale, int64_t d, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < d; ++i) sum += static_cast<double>(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(sum / static_cast<double>(d) + eps);
  for (int64_t i = 0; i < d; ++i) out[i] = static_cast<float>(x[i] * inv * scale[i].to_float());
}

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

/// 16 bf16 (masked) widened to fp32.
GPTOSS_TARGET_AVX512 inline __m512 load_bf16x16_avx512(const bf16* p, std::uint16_t mask) noexcept {
  const __m256i raw = _mm256_maskz_loadu_epi16(mask, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

GPTOSS_TARGET_AVX512 inline void rms_norm_row_avx512(const float* x, const bf16* scale, int64_t d,
                                                     float eps, float* out) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < d; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(first_lanes16(d - i), x + i);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    s0 = _mm512_fmadd_pd(lo, lo, s0);
    s1 = _mm512_fmadd_pd(hi, hi, s1);
  }
  const double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  const __m512d inv = _mm512_set1_pd(1.0 / std::sqrt(sum / static_cast<double>(d) + eps));
  for (int64_t i = 0; i < d; i += 16) {
    const std::uint16_t mask = first_lanes16(d - i);
    const __m512 v = _mm512_maskz_loadu_ps(mask, x + i);
    const __m512 g = load_bf16x16_avx512(scale + i, mask);
    const __m512d lo = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), inv),
                                     _mm512_cvtps_pd(_mm512_castps512_ps256(g)));
    const __m512d hi = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), inv),
                                     _mm512_cvtps_pd(_mm512_extractf32x8_ps(g, 1)));
    const __m512 result = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)),
                                             _mm512_cvtpd_ps(hi), 1);
    _mm512_mask_storeu_ps(out + i, mask, result);
  }
}

GPTOSS_TARGET_AVX2 inline void rms_norm_row_avx2(const float* x, const bf16* scale, int64_t d,
                                                 float eps, float* out) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  const int64_t vec_end = d / 8 * 8;
  for (int64_t i = 0; i < vec_end; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    s0 = _mm256_fmadd_pd(lo, lo, s0);
    s1 = _mm256_fmadd_pd(hi, hi, s1);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (int64_t i = vec_end; i < d; ++i) sum += static_cast<double>(x[i]) * x[i];
  const double inv_scalar = 1.0 / std::sqrt(sum / static_cast<double>(d) + eps);
  const __m256d inv = _mm256_set1_pd(inv_scalar);
  for (int64_t i = 0; i < vec_end; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scale + i));
    const __m256 g = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    const __m256d lo = _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), inv),
                                     _mm256_cvtps_pd(_mm256_castps256_ps128(g)));
    const __m256d hi = _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), inv),
                                     _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)));
    _mm256_storeu_ps(out + i, _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo)));
  }
  for (int64_t i = vec_end; i < d; ++i) {
    out[i] = static_cast<float>(x[i] * inv_scalar * scale[i].to_float());
  }
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast

namespace gptoss::kernels {

/// out (T, D) = rmsnorm(x (T, D)) * scale (D). out may alias x.
inline void rms_norm(cpu_fast, MatrixView<const float> x, VectorView<const bf16> scale, float eps,
                     MatrixView<float> out) {
  const index_t t_count = x.extent(0), d = x.extent(1);
  check_rms_norm_shapes(x, scale, out);
  const Isa isa = active_isa();
  if (isa == Isa::scalar || d == 0) {
    rms_norm(cpu_reference{}, x, scale, eps, out);
    return;
  }
  auto rows = [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const float* xr = x.data() + t * d;
      float* yr = out.data() + t * d;
      switch (isa) {
#if GPTOSS_X86
        case Isa::avx512: fast::rms_norm_row_avx512(xr, scale.data(), d, eps, yr); break;
        case Isa::avx2_fma: fast::rms_norm_row_avx2(xr, scale.data(), d, eps, yr); break;
#endif
        default: fast::rms_norm_row_portable(xr, scale.data(), d, eps, yr); break;
      }
    }
  };
  if (t_count * d >= (int64_t{1} << 16)) {
    thread_pool().parallel_for(0, t_count, 1, rows);
  } else {
    rows(0, t_count);
  }
}

}  // namespace gptoss::kernels
