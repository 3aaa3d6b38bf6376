// E8M0: the shared power-of-two block scale of MXFP4 (8 exponent bits,
// bias 127, no sign, no mantissa). Byte s encodes 2^(s - 127).
#pragma once

#include <cmath>
#include <cstdint>

namespace gptoss::e8m0 {

inline constexpr int kBias = 127;

/// The exponent s - 127 of a scale byte.
constexpr int exponent(std::uint8_t s) noexcept { return static_cast<int>(s) - kBias; }

/// value * 2^(s - 127), exactly as the reference's ldexp: byte 0 gives float
/// subnormals (0.5 * 2^-127 is representable), byte 255 gives +-inf for a
/// non-zero value and +-0 for zero.
inline float apply(float value, std::uint8_t s) noexcept { return std::ldexp(value, exponent(s)); }

/// Scale byte for a given exponent, clamped to the representable [-127, 127].
constexpr std::uint8_t from_exponent(int e) noexcept {
  e = e < -kBias ? -kBias : (e > kBias ? kBias : e);
  return static_cast<std::uint8_t>(e + kBias);
}

}  // namespace gptoss::e8m0
