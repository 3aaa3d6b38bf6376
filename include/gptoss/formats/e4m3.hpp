// E4M3 (OCP FP8 "e4m3fn"): the per-block scale of NVFP4. 1 sign, 4 exponent
// bits (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN; the
// largest finite magnitude is 448 = 1.75 * 2^8; subnormals are m/8 * 2^-6.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace gptoss::e4m3 {

inline constexpr int kBias = 7;
/// Largest finite magnitude, and its (positive) code.
inline constexpr float kMax = 448.0f;
inline constexpr std::uint8_t kMaxCode = 0x7e;
/// The positive NaN code (0xff is the negative one).
inline constexpr std::uint8_t kNaNCode = 0x7f;

/// The value of a code (NaN for 0x7f and 0xff).
inline float decode(std::uint8_t code) noexcept {
  const bool negative = (code & 0x80) != 0;
  const int e = (code >> 3) & 0x0f, m = code & 0x07;
  float a;
  if (e == 0x0f && m == 0x07) {
    a = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    a = std::ldexp(static_cast<float>(m), -9);  // m/8 * 2^-6
  } else {
    a = std::ldexp(static_cast<float>(8 + m), e - kBias - 3);  // (1 + m/8) 2^(e-7)
  }
  return negative ? -a : a;
}

/// The code nearest to x, ties to the even code (round-to-nearest-even),
/// saturating at +-448 (infinities included). The sign of zero is kept.
/// Requires: x is not NaN (callers reject NaN with a clear error first).
inline std::uint8_t encode(float x) noexcept {
  const std::uint8_t sign = (std::bit_cast<std::uint32_t>(x) >> 31) != 0 ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (!(a < kMax)) return sign | kMaxCode;  // 448 and above saturate (480 does not exist)
  // The quantum at a's binade: 2^(e-3) for normals (e = floor(log2 a) >= -6),
  // 2^-9 for subnormals; q = a / quantum, rounded to nearest, ties to even.
  int e = 0;
  std::frexp(a, &e);  // a = f 2^e, f in [0.5, 1): floor(log2 a) = e - 1
  const int exponent = a == 0.0f ? -6 : (e - 1 < -6 ? -6 : e - 1);
  const float q = std::ldexp(a, 3 - exponent);  // exact: a power-of-two scaling
  float n = std::floor(q);
  const float frac = q - n;
  if (frac > 0.5f || (frac == 0.5f && std::fmod(n, 2.0f) != 0.0f)) n += 1.0f;
  // n counts quanta from 0: below 8 the value is subnormal (exponent -6 only),
  // from 8 to 16 normal in this binade; 16 carries into the next binade.
  const int units = static_cast<int>(n);
  int field_e, field_m;
  if (exponent == -6 && units < 8) {
    field_e = 0;
    field_m = units;
  } else if (units == 16) {
    field_e = exponent + 1 + kBias;
    field_m = 0;
  } else {
    field_e = exponent + kBias;
    field_m = units - 8;
  }
  return static_cast<std::uint8_t>(sign | (field_e << 3) | field_m);
}

}  // namespace gptoss::e4m3
