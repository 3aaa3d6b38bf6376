// Device-side helpers shared by the CUDA kernels: bf16 widening, the MXFP4
// element table and scale decoding, warp reductions, and the launchers'
// host helpers. Include only from .cu files (needs nvcc).
#pragma once

#include <cstdint>

#include "gptoss/core/bf16.hpp"

namespace gptoss::cuda::device {

/// The bits of a bf16 array, as the kernels read them.
inline const std::uint16_t* bits(const bf16* p) { return reinterpret_cast<const std::uint16_t*>(p); }

/// Blocks of `per_block` items covering `items`.
inline unsigned blocks_for(long long items, int per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

inline constexpr int kWarp = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;

/// bf16 bits widened to float (exact).
__device__ __forceinline__ float bf16_to_float(std::uint16_t bits) {
  return __uint_as_float(static_cast<unsigned>(bits) << 16);
}

/// E2M1 code values; copied into shared memory by each block that decodes
/// (16 distinct words sit in 16 distinct banks: lookups never conflict).
static __constant__ float kE2M1[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f,
                                                 +4.0f, +6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                                 -2.0f, -3.0f, -4.0f, -6.0f};

/// 2^(s - 127) for an E8M0 byte: s = 0 is the float subnormal 2^-127,
/// s = 255 is +inf (the reference's ldexp(value, 128)).
__device__ __forceinline__ float e8m0_scale(std::uint8_t s) {
  if (s == 0) return __uint_as_float(0x00400000u);
  if (s == 255) return __uint_as_float(0x7f800000u);
  return __uint_as_float(static_cast<unsigned>(s) << 23);
}

/// code value times scale, as ldexp: a zero code stays (signed) zero even
/// under the infinite scale of byte 255.
__device__ __forceinline__ float scaled(float value, float scale, bool infinite_scale) {
  return infinite_scale && value == 0.0f ? value : value * scale;
}

/// Decodes `bytes` (n bytes of one MXFP4 block, gpt-oss order: byte j holds
/// elements 2j (low nibble) and 2j+1 (high)) into out[2n].
template <int NBytes>
__device__ __forceinline__ void decode_mxfp4_bytes(const std::uint32_t (&words)[NBytes / 4],
                                                   std::uint8_t scale_byte, const float* lut,
                                                   float (&out)[2 * NBytes]) {
  const float scale = e8m0_scale(scale_byte);
  const bool inf = scale_byte == 255;
#pragma unroll
  for (int b = 0; b < NBytes; ++b) {
    const unsigned byte = (words[b / 4] >> (8 * (b % 4))) & 0xffu;
    out[2 * b] = scaled(lut[byte & 0xfu], scale, inf);
    out[2 * b + 1] = scaled(lut[byte >> 4], scale, inf);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

}  // namespace gptoss::cuda::device
