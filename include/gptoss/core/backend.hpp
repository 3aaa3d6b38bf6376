// Backend tags. A layer's Backend template parameter selects which kernel
// overloads it calls; the tag hierarchy gives the fallback, as xsimd's
// architecture tags do. cpu_reference is the plain-loop oracle that every
// fast path is tested against.
#pragma once

namespace gptoss {

/// Plain loops, float64 accumulation where it matters: the oracle.
struct cpu_reference {
  static constexpr const char* name = "cpu_reference";
};

/// The fast CPU path: SIMD kernels chosen at run time by ISA (AVX-512,
/// AVX2+FMA, portable xsimd, scalar) and split across threads. Kernels
/// without a fast overload fall back to cpu_reference through inheritance.
struct cpu_fast : cpu_reference {
  static constexpr const char* name = "cpu_fast";
};

/// The backend models use unless told otherwise. Layer types default to
/// cpu_reference, the oracle; a Transformer defaults to this.
using default_backend = cpu_fast;

}  // namespace gptoss
