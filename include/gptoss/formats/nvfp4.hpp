// NVFP4: E2M1 elements in 16-element blocks, one E4M3 scale per block, and
// one float32 scale g per tensor. Element i of a block decodes to
//   e2m1(code_i) * e4m3(scale) * g     (evaluated in that order, in float).
// Storage per (rows, cols) matrix: blocks (rows, cols/16, 8) bytes (element
// 2j in the low nibble, 2j+1 in the high, as in MXFP4 checkpoints), scales
// (rows, cols/16) E4M3 bytes, and g. This header defines the format's traits;
// FP4TensorView / FP4Tensor (fp4_tensor.hpp) hold and quantize the data.
#pragma once

#include <cmath>
#include <cstdint>

#include "gptoss/formats/e2m1.hpp"
#include "gptoss/formats/e4m3.hpp"
#include "gptoss/formats/fp4_rules.hpp"

namespace gptoss {

struct NVFP4 {
  static constexpr int kBlockSize = 16;
  static constexpr int kBytesPerBlock = kBlockSize / 2;
  static constexpr bool kHasGlobalScale = true;
  static constexpr const char* kName = "nvfp4";

  static constexpr void unpack(const std::uint8_t* bytes, std::uint8_t* codes) noexcept {
    for (int j = 0; j < kBytesPerBlock; ++j) {
      codes[2 * j] = bytes[j] & 0x0f;
      codes[2 * j + 1] = bytes[j] >> 4;
    }
  }
  static constexpr void pack(const std::uint8_t* codes, std::uint8_t* bytes) noexcept {
    for (int j = 0; j < kBytesPerBlock; ++j) {
      bytes[j] = static_cast<std::uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
    }
  }

  /// The decoded element: value * e4m3(scale) * global (value * scale is exact).
  static float apply(float value, std::uint8_t scale, float global) noexcept {
    return value * e4m3::decode(scale) * global;
  }
  /// What elements are divided by before rounding to E2M1.
  static float divisor(std::uint8_t scale, float global) noexcept { return e4m3::decode(scale) * global; }

  /// The per-tensor scale for a tensor whose largest magnitude is amax
  /// (finite): amax / (448 * 6), or its power-of-two ceiling; 1 when that is 0.
  static float global_scale_for(float amax, GlobalScale rule) noexcept {
    float g = amax / (e4m3::kMax * e2m1::kMax);
    if (!(g > 0.0f)) return 1.0f;
    if (rule == GlobalScale::power_of_two) {
      int e = 0;
      const float f = std::frexp(g, &e);  // g = f 2^e, f in [0.5, 1)
      g = std::ldexp(1.0f, f == 0.5f ? e - 1 : e);
    }
    return g;
  }

  /// Candidate scale codes for a block whose largest magnitude is amax, the
  /// standard one first; returns how many were written (at most 3).
  static int scale_candidates(float amax, float global, ScaleRule rule, std::uint8_t* out) noexcept {
    const std::uint8_t s = e4m3::encode(amax / (e2m1::kMax * global));
    int n = 0;
    out[n++] = s;
    if (rule == ScaleRule::search) {
      if (s < e4m3::kMaxCode) out[n++] = static_cast<std::uint8_t>(s + 1);
      if (s > 0) out[n++] = static_cast<std::uint8_t>(s - 1);
    }
    return n;
  }
};

}  // namespace gptoss
