// E2M1: the 4-bit float element of MXFP4 and NVFP4 (1 sign, 2 exponent,
// 1 mantissa bit; values 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives).
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace gptoss::e2m1 {

/// Decoded value of each 4-bit code; code 8 is -0.0.
inline constexpr std::array<float, 16> kValues = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f,
                                                  +4.0f, +6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                                  -2.0f, -3.0f, -4.0f, -6.0f};

/// Largest finite magnitude.
inline constexpr float kMax = 6.0f;
/// floor(log2(kMax)): the OCP "emax" of the element type.
inline constexpr int kEmax = 2;

constexpr float decode(std::uint8_t code) noexcept { return kValues[code & 0x0f]; }

/// The E2M1 code nearest to x, ties to the even code (round-to-nearest-even),
/// saturating at +-6 (infinities included). The sign of zero is kept.
/// Requires: x is not NaN (callers reject NaN with a clear error first).
constexpr std::uint8_t encode(float x) noexcept {
  const bool negative = (std::bit_cast<std::uint32_t>(x) >> 31) != 0;
  const std::uint8_t sign = negative ? 0x8 : 0x0;
  const float a = negative ? -x : x;
  std::uint8_t code;
  if (a <= 0.25f) code = 0;        // tie 0.25 -> 0 (even)
  else if (a < 0.75f) code = 1;    // tie 0.75 -> 1.0
  else if (a <= 1.25f) code = 2;   // tie 1.25 -> 1.0
  else if (a < 1.75f) code = 3;    // tie 1.75 -> 2.0
  else if (a <= 2.5f) code = 4;    // tie 2.5 -> 2.0
  else if (a < 3.5f) code = 5;     // tie 3.5 -> 4.0
  else if (a <= 5.0f) code = 6;    // tie 5 -> 4.0
  else code = 7;                   // saturate
  return sign | code;
}

}  // namespace gptoss::e2m1
