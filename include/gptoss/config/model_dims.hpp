// Model hyper-parameters as a plain constexpr aggregate (ModelDims), the
// per-layer parameter structs derived from it, and the validity rules that
// the reference implementation asserts. A config *type* wraps a ModelDims in
// `static constexpr ModelDims value` and is checked at compile time
// (FixedModelConfig); `DynamicConfig` marks dimensions supplied at run time
// (e.g. parsed from config.json), checked by validate().
#pragma once

#include <cmath>
#include <concepts>
#include <limits>
#include <type_traits>
#include <numbers>
#include <string>

#include "gptoss/core/error.hpp"

namespace gptoss {

namespace detail {
/// Natural log usable in constant expressions (std::log is not constexpr in
/// C++20 on every compiler); at run time it is std::log.
constexpr double log(double x) noexcept {
  if (!std::is_constant_evaluated()) return std::log(x);
  // Special values as std::log (an infinite x would never leave the loop below).
  if (x != x || x == std::numeric_limits<double>::infinity()) return x;
  if (x < 0.0) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0.0) return -std::numeric_limits<double>::infinity();
  // x = m * 2^exponent with m in [sqrt(1/2), sqrt(2)): x near 1 keeps
  // exponent 0, so ln(x) is not the difference of two nearly equal terms.
  int exponent = 0;
  while (x >= std::numbers::sqrt2) { x /= 2.0; ++exponent; }
  while (x < std::numbers::sqrt2 / 2.0) { x *= 2.0; --exponent; }
  const double z = (x - 1.0) / (x + 1.0), z2 = z * z;
  double term = z, sum = 0.0;  // ln(m) = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...)
  for (int k = 1; k < 200; k += 2) { sum += term / k; term *= z2; }
  return 2.0 * sum + exponent * std::numbers::ln2;
}
/// floor() usable in constant expressions. NaN, infinities and |x| >= 2^62
/// (already integral) come back unchanged, so no cast is out of range.
constexpr double floor(double x) noexcept {
  if (!(x > -0x1p62 && x < 0x1p62)) return x;
  const auto i = static_cast<long long>(x);
  return static_cast<double>(x < 0 && static_cast<double>(i) != x ? i - 1 : i);
}
}  // namespace detail

/// YaRN rotary-embedding parameters (names follow the gpt-oss config.json).
struct RopeParams {
  int head_dim = 64;
  double theta = 150000.0;           // rope_theta
  double scaling_factor = 32.0;      // rope_scaling_factor; <= 1 means plain RoPE
  double initial_context = 4096.0;   // initial_context_length
  double ntk_alpha = 1.0;            // rope_ntk_alpha: sets the high ramp bound
  double ntk_beta = 32.0;            // rope_ntk_beta: sets the low ramp bound
  bool truncate = false;             // round the bounds (floor low, ceil high), as
                                     // Hugging Face configs ask unless "truncate": false

  /// YaRN ramp bounds (in rotary-pair index units). The gpt-oss reference
  /// does not round them; with `truncate` they are floored / ceiled.
  constexpr double low() const noexcept {
    const double b = head_dim / 2.0 * detail::log(initial_context / (ntk_beta * 2 * std::numbers::pi)) /
                     detail::log(theta);
    return truncate ? detail::floor(b) : b;
  }
  constexpr double high() const noexcept {
    const double b = head_dim / 2.0 * detail::log(initial_context / (ntk_alpha * 2 * std::numbers::pi)) /
                     detail::log(theta);
    return truncate ? -detail::floor(-b) : b;
  }
  /// Attention "concentration" multiplied into cos and sin: 0.1 ln(s) + 1.
  constexpr double concentration() const noexcept {
    return scaling_factor > 1.0 ? 0.1 * detail::log(scaling_factor) + 1.0 : 1.0;
  }
  /// The reference asserts 0 < low < high < head_dim/2 - 1 when scaling.
  constexpr bool valid() const noexcept {
    if (head_dim <= 0 || head_dim % 2 != 0 || !(theta > 1.0)) return false;
    if (!(scaling_factor > 1.0)) return true;
    return 0.0 < low() && low() < high() && high() < head_dim / 2.0 - 1.0;
  }
};

/// Every hyper-parameter of a gpt-oss model.
struct ModelDims {
  int num_layers = 24;
  int num_experts = 32;
  int experts_per_token = 4;
  int vocab = 201088;
  int hidden = 2880;
  int intermediate = 2880;
  int head_dim = 64;
  int num_heads = 64;
  int num_kv_heads = 8;
  int sliding_window = 128;
  int initial_context = 4096;
  double rope_theta = 150000.0;
  double rope_scaling_factor = 32.0;
  double rope_ntk_alpha = 1.0;
  double rope_ntk_beta = 32.0;
  bool rope_truncate = false;  // see RopeParams::truncate
  float swiglu_limit = 7.0f;
  float rms_eps = 1e-5f;

  constexpr RopeParams rope() const noexcept {
    return {head_dim, rope_theta, rope_scaling_factor, static_cast<double>(initial_context),
            rope_ntk_alpha, rope_ntk_beta, rope_truncate};
  }
  /// Width of the merged QKV projection: hd * (nq + 2 nkv).
  constexpr int qkv_dim() const noexcept { return head_dim * (num_heads + 2 * num_kv_heads); }
  /// Even layers use the sliding window, odd layers attend to the full context.
  static constexpr bool is_sliding_layer(int layer) noexcept { return layer % 2 == 0; }

  /// The first rule this config breaks, or an empty string when valid.
  constexpr const char* first_violation() const noexcept {
    if (num_layers <= 0) return "num_layers must be positive";
    if (num_experts <= 0) return "num_experts must be positive";
    if (experts_per_token <= 0 || experts_per_token > num_experts)
      return "experts_per_token must be in [1, num_experts]";
    if (vocab <= 0) return "vocab_size must be positive";
    if (hidden <= 0 || hidden % 32 != 0) return "hidden_size must be a positive multiple of 32 (MXFP4 blocks)";
    if (intermediate <= 0 || intermediate % 32 != 0)
      return "intermediate_size must be a positive multiple of 32 (MXFP4 blocks)";
    if (head_dim <= 0 || head_dim % 2 != 0) return "head_dim must be positive and even";
    if (num_heads <= 0 || num_kv_heads <= 0) return "head counts must be positive";
    if (num_heads % num_kv_heads != 0) return "num_attention_heads must be divisible by num_key_value_heads";
    // Even layers slide (is_sliding_layer), so every model needs a window.
    if (sliding_window <= 0) return "sliding_window must be positive";
    if (initial_context <= 0) return "initial_context_length must be positive";
    // Upper bounds far above any model of this architecture (gpt-oss-120b:
    // 36 layers, 128 experts, 64 heads of 64, vocabulary 201088). They keep
    // every product of sizes in range (the QKV width, the YaRN tables, the
    // parameter counts) and refuse an absurd config before a layer is built
    // or any memory is allocated for it.
    if (num_layers > 4096) return "num_layers must be at most 4096";
    if (num_experts > 65536) return "num_experts must be at most 65536";
    if (vocab > (1 << 24)) return "vocab_size must be at most 2^24";
    if (hidden > (1 << 20) || intermediate > (1 << 20)) {
      return "hidden_size and intermediate_size must be at most 2^20";
    }
    if (head_dim > 1024) return "head_dim must be at most 1024";
    if (num_heads > 4096) return "num_attention_heads must be at most 4096";
    if (sliding_window > (1 << 24) || initial_context > (1 << 24)) {
      return "sliding_window and initial_context_length must be at most 2^24";
    }
    if (!(swiglu_limit > 0.0f)) return "swiglu_limit must be positive";
    if (!(rms_eps > 0.0f)) return "rms_eps must be positive";
    if (!rope().valid()) return "YaRN bounds must satisfy 0 < low < high < head_dim/2 - 1";
    return "";
  }
  constexpr bool valid() const noexcept { return first_violation()[0] == '\0'; }

  friend constexpr bool operator==(const ModelDims&, const ModelDims&) = default;
};

/// Throws ConfigError naming the broken rule.
inline void validate(const ModelDims& dims) {
  if (!dims.valid()) throw ConfigError(std::string("invalid model config: ") + dims.first_violation());
}

/// A config type whose dimensions are fixed at compile time and checked there.
template <class C>
concept FixedModelConfig = requires {
  { C::value } -> std::convertible_to<ModelDims>;
} && (C::value.valid());

/// Marker config: dimensions are supplied at run time (config.json).
struct DynamicConfig {};

template <class C>
concept ModelConfig = FixedModelConfig<C> || std::same_as<C, DynamicConfig>;

}  // namespace gptoss
