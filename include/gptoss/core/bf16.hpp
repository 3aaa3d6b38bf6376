// Storage-only 16-bit float types: bfloat16 (checkpoint weights) and IEEE
// half (accepted by the safetensors reader). Arithmetic is done in float;
// these types only convert.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace gptoss {

/// bfloat16: the upper 16 bits of an IEEE float32.
struct bf16 {
  std::uint16_t bits = 0;

  /// Exact widening conversion.
  constexpr float to_float() const noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }

  /// Round-to-nearest-even narrowing; NaN stays a (quiet) NaN.
  static constexpr bf16 from_float(float f) noexcept {
    std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      return bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return bf16{static_cast<std::uint16_t>(u >> 16)};
  }

  friend constexpr bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};
static_assert(sizeof(bf16) == 2);

/// IEEE 754 binary16.
struct f16 {
  std::uint16_t bits = 0;

  /// Exact widening conversion (subnormals, infinities and NaN included).
  float to_float() const noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const int exponent = (bits >> 10) & 0x1f;
    const std::uint32_t mantissa = bits & 0x3ffu;
    float magnitude;
    if (exponent == 0) {
      magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    } else if (exponent == 31) {
      magnitude = mantissa ? std::numeric_limits<float>::quiet_NaN()
                           : std::numeric_limits<float>::infinity();
    } else {
      magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), exponent - 25);
    }
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
  }
};
static_assert(sizeof(f16) == 2);

}  // namespace gptoss
