// cpu_fast rotary embedding: rotates x (T, H, D) in place with cos/sin
// (T, D/2), half-split as the reference: out = [x1 c - x2 s, x2 c + x1 s].
// Same float operations as the reference (in SIMD lanes; in the AVX tiers
// the compiler may fuse a product and a sum into one FMA, rounding once).
#pragma once

#include <cstdint>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/simd.hpp"
#include "gptoss/kernels/reference/rope.hpp"

#if __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#endif

namespace gptoss::kernels::fast {

/// Rotates `heads` rows of 2 * half floats (row stride 2 * half) with one
/// token's cos/sin (half each).
inline void rotate_heads_portable(float* x, int64_t heads, int64_t half, const float* cos,
                                  const float* sin) {
  int64_t vec_end = 0;
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
  using batch = xsimd::batch<float>;
  constexpr int64_t L = static_cast<int64_t>(batch::size);
  vec_end = half / L * L;
  for (int64_t h = 0; h < heads; ++h) {
    float* x1 = x + h * 2 * half;
    float* x2 = x1 + half;
    for (int64_t i = 0; i < vec_end; i += L) {
      const batch a = batch::load_unaligned(x1 + i), b = batch::load_unaligned(x2 + i);
      const batch c = batch::load_unaligned(cos + i), s = batch::load_unaligned(sin + i);
      const batch ac = a * c, bs = b * s, bc = b * c, as = a * s;
      (ac - bs).store_unaligned(x1 + i);
      (bc + as).store_unaligned(x2 + i);
    }
  }
#endif
  for (int64_t h = 0; h < heads; ++h) {
    float* x1 = x + h * 2 * half;
    float* x2 = x1 + half;
    for (int64_t i = vec_end; i < half; ++i) {
      const float a = x1[i], b = x2[i];
      const float ac = a * cos[i], bs = b * sin[i], bc = b * cos[i], as = a * sin[i];
      x1[i] = ac - bs;
      x2[i] = bc + as;
    }
  }
}

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

GPTOSS_TARGET_AVX512 inline void rotate_heads_avx512(float* x, int64_t heads, int64_t half,
                                                     const float* cos, const float* sin) {
  for (int64_t i = 0; i < half; i += 16) {
    const std::uint16_t mask = first_lanes16(half - i);
    const __m512 c = _mm512_maskz_loadu_ps(mask, cos + i), s = _mm512_maskz_loadu_ps(mask, sin + i);
    for (int64_t h = 0; h < heads; ++h) {
      float* x1 = x + h * 2 * half + i;
      float* x2 = x1 + half;
      const __m512 a = _mm512_maskz_loadu_ps(mask, x1), b = _mm512_maskz_loadu_ps(mask, x2);
      _mm512_mask_storeu_ps(x1, mask, _mm512_sub_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(b, s)));
      _mm512_mask_storeu_ps(x2, mask, _mm512_add_ps(_mm512_mul_ps(b, c), _mm512_mul_ps(a, s)));
    }
  }
}

GPTOSS_TARGET_AVX2 inline void rotate_heads_avx2(float* x, int64_t heads, int64_t half,
                                                 const float* cos, const float* sin) {
  for (int64_t i = 0; i < half; i += 8) {
    const __m256i mask = first_lanes8_avx2(half - i);
    const __m256 c = _mm256_maskload_ps(cos + i, mask), s = _mm256_maskload_ps(sin + i, mask);
    for (int64_t h = 0; h < heads; ++h) {
      float* x1 = x + h * 2 * half + i;
      float* x2 = x1 + half;
      const __m256 a = _mm256_maskload_ps(x1, mask), b = _mm256_maskload_ps(x2, mask);
      _mm256_maskstore_ps(x1, mask, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
      _mm256_maskstore_ps(x2, mask, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
    }
  }
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif  // GPTOSS_X86

}  // namespace gptoss::kernels::fast

namespace gptoss::kernels {

/// Rotates x (T, H, D) in place; cos and sin are (T, D/2), already scaled by
/// the YaRN concentration.
inline void apply_rotary(cpu_fast, TensorView<float, 3> x, MatrixView<const float> cos,
                         MatrixView<const float> sin) {
  const index_t t_count = x.extent(0), heads = x.extent(1), half = x.extent(2) / 2;
  check_rotary_shapes(x, cos, sin);
  const Isa isa = active_isa();
  if (isa == Isa::scalar || half == 0) {
    apply_rotary(cpu_reference{}, x, cos, sin);
    return;
  }
  auto tokens = [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      float* xt = x.data() + t * heads * 2 * half;
      const float* c = cos.data() + t * half;
      const float* s = sin.data() + t * half;
      switch (isa) {
#if GPTOSS_X86
        case Isa::avx512: fast::rotate_heads_avx512(xt, heads, half, c, s); break;
        case Isa::avx2_fma: fast::rotate_heads_avx2(xt, heads, half, c, s); break;
#endif
        default: fast::rotate_heads_portable(xt, heads, half, c, s); break;
      }
    }
  };
  if (t_count * heads * half >= (int64_t{1} << 16)) {
    thread_pool().parallel_for(0, t_count, 1, tokens);
  } else {
    tokens(0, t_count);
  }
}

}  // namespace gptoss::kernels
