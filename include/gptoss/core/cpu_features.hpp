// Run-time instruction-set detection for the fast CPU kernels, and the tier
// they dispatch on. The library is compiled without -march flags: every tier
// lives in the same translation unit (function multiversioning through
// target attributes) and active_isa() picks one when a kernel runs.
//
// Tiers, best first:
//   avx512    AVX-512 F+BW+VL+DQ with FMA (BF16 dot products used when the CPU
//             also has AVX512_BF16, see has_avx512_bf16());
//   avx2_fma  AVX2 with FMA3;
//   portable  xsimd with the build's default architecture (SSE2 on a plain
//             x86-64 build);
//   scalar    the cpu_reference kernels.
//
// Tests and benchmarks lower the tier with set_isa_limit() (or ScopedIsaLimit),
// or for a whole process with the environment variable GPTOSS_ISA=scalar|
// portable|avx2_fma|avx512, read once at the first query.
#pragma once

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace gptoss {

enum class Isa : int { scalar = 0, portable = 1, avx2_fma = 2, avx512 = 3 };

inline constexpr Isa kAllIsas[] = {Isa::scalar, Isa::portable, Isa::avx2_fma, Isa::avx512};

constexpr std::string_view isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::portable: return "portable";
    case Isa::avx2_fma: return "avx2_fma";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

/// The tier named `name` (as isa_name spells it); nullopt when unknown.
constexpr std::optional<Isa> parse_isa(std::string_view name) noexcept {
  for (Isa isa : kAllIsas) {
    if (isa_name(isa) == name) return isa;
  }
  return std::nullopt;
}

/// What the CPU (and the OS, which must save the wider registers) supports.
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;
  bool avx512vbmi = false;
};

namespace detail {

inline CpuFeatures detect_cpu_features() noexcept {
  CpuFeatures f;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS enabled the AVX / AVX-512
  // register state (XCR0), so a "true" here is safe to execute.
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
#endif
  return f;
}

/// The limit set by set_isa_limit, or -1 for "not set: use GPTOSS_ISA".
inline std::atomic<int>& isa_limit_override() noexcept {
  static std::atomic<int> limit{-1};
  return limit;
}

inline Isa isa_limit_from_environment() noexcept {
  static const Isa limit = [] {
    const char* value = std::getenv("GPTOSS_ISA");
    if (value == nullptr) return Isa::avx512;
    return parse_isa(value).value_or(Isa::avx512);
  }();
  return limit;
}

}  // namespace detail

/// The CPU's features, detected once.
inline const CpuFeatures& cpu_features() noexcept {
  static const CpuFeatures features = detail::detect_cpu_features();
  return features;
}

/// The best tier this CPU runs, ignoring any limit.
inline Isa detected_isa() noexcept {
  static const Isa best = [] {
    const CpuFeatures& f = cpu_features();
    if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma) return Isa::avx512;
    if (f.avx2 && f.fma) return Isa::avx2_fma;
#if defined(__x86_64__) || defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__)
    return Isa::portable;
#else
    return Isa::scalar;
#endif
  }();
  return best;
}

/// The highest tier the kernels may use: set_isa_limit's value, else
/// GPTOSS_ISA's, else no limit (Isa::avx512).
inline Isa isa_limit() noexcept {
  const int limit = detail::isa_limit_override().load(std::memory_order_relaxed);
  return limit < 0 ? detail::isa_limit_from_environment() : static_cast<Isa>(limit);
}

/// Caps the tier for every later kernel call (all threads). Not meant to be
/// changed while kernels run on other threads.
inline void set_isa_limit(Isa limit) noexcept {
  detail::isa_limit_override().store(static_cast<int>(limit), std::memory_order_relaxed);
}

/// Back to GPTOSS_ISA's limit, or none.
inline void clear_isa_limit() noexcept {
  detail::isa_limit_override().store(-1, std::memory_order_relaxed);
}

/// The tier kernels dispatch on now: the detected one, capped by the limit.
inline Isa active_isa() noexcept {
  const Isa best = detected_isa(), limit = isa_limit();
  return static_cast<int>(limit) < static_cast<int>(best) ? limit : best;
}

/// True when the active tier is avx512 and the CPU has AVX512_BF16
/// (vdpbf16ps), which the bf16 matmul precisions use.
inline bool has_avx512_bf16() noexcept {
  return active_isa() == Isa::avx512 && cpu_features().avx512bf16;
}

/// True when the active tier is avx512 and the CPU has AVX512_VNNI
/// (vpdpbusd), which the int8 matmul precision uses.
inline bool has_avx512_vnni() noexcept {
  return active_isa() == Isa::avx512 && cpu_features().avx512vnni;
}

/// Limits the tier for the lifetime of the object, then restores the
/// previous setting (tests: run a kernel on every tier).
class ScopedIsaLimit {
 public:
  explicit ScopedIsaLimit(Isa limit) noexcept
      : previous_(detail::isa_limit_override().load(std::memory_order_relaxed)) {
    set_isa_limit(limit);
  }
  ~ScopedIsaLimit() { detail::isa_limit_override().store(previous_, std::memory_order_relaxed); }
  ScopedIsaLimit(const ScopedIsaLimit&) = delete;
  ScopedIsaLimit& operator=(const ScopedIsaLimit&) = delete;

 private:
  int previous_;
};

}  // namespace gptoss
