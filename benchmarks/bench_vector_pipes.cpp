// Which execution pipes the AVX-512 instructions of the MXFP4 row kernels
// share, and how close the kernels come to the floor their instruction mix
// sets. Each pipe benchmark keeps 24 independent registers busy, 12 with one
// instruction class and 12 with another (or the same class twice), one
// instruction per register per loop: two classes on disjoint pairs of pipes
// retire about 3.5-4 per cycle together, two on the same pair about 2, two
// that share one pipe about 2.5. The kernel benchmarks run the bf16 and fp32
// micro-kernels (4 rows, one token) on 16 rows of 2880 weights held in L1,
// and report cycles per row and 64-byte chunk.
//
//   gptoss_bench_vector_pipes --benchmark_repetitions=3
//
// Counters: instr_per_cycle (pipe benchmarks), cycles_per_row_chunk and
// weight_GBps (kernel benchmarks), all against the core clock measured in
// the same process (a chain of dependent integer adds, one per cycle).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/formats/e2m1.hpp"
#include "gptoss/kernels/fast/linear_avx512.hpp"
#include "gptoss/kernels/fast/simd.hpp"

#if GPTOSS_X86
#include <immintrin.h>

#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

namespace {

using namespace gptoss;
using kernels::fast::Mxfp4Rows;

/// Core clock in Hz: dependent 64-bit adds retire one per cycle.
double measured_clock_hz() {
  static const double hz = [] {
    constexpr long kAdds = 200'000'000;
    std::uint64_t x = 0;
    const std::uint64_t one = 1;
    double best = 0.0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      const auto t0 = std::chrono::steady_clock::now();
      for (long i = 0; i < kAdds; i += 8) {
        asm volatile(
            "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
            "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
            : "+r"(x)
            : "r"(one));
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, static_cast<double>(kAdds) / s);
    }
    benchmark::DoNotOptimize(x);
    return best;
  }();
  return hz;
}

// ---- instruction classes: one instruction on a register, in place ----
// (Inline assembly, one instruction per statement: the compiler may neither
// merge the steps nor drop them, and volatile keeps them in program order.)

struct PermuteWords {  // vpermw: s = c[s]
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i c, __m512i) {
    asm volatile("vpermw %1, %0, %0" : "+v"(s) : "v"(c));
  }
};
struct PermuteFloats {  // vpermps
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i c, __m512i) {
    asm volatile("vpermps %1, %0, %0" : "+v"(s) : "v"(c));
  }
};
struct ShuffleBytes {  // vpshufb
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i c, __m512i) {
    asm volatile("vpshufb %1, %0, %0" : "+v"(s) : "v"(c));
  }
};
struct ShiftWords {  // vpsrlw
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i, __m512i) {
    asm volatile("vpsrlw $4, %0, %0" : "+v"(s));
  }
};
struct ShiftDwords {  // vpslld
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i, __m512i) {
    asm volatile("vpslld $7, %0, %0" : "+v"(s));
  }
};
struct DotBf16 {  // vdpbf16ps: s += a . b
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i a, __m512i b) {
    asm volatile("vdpbf16ps %2, %1, %0" : "+v"(s) : "v"(a), "v"(b));
  }
};
struct FusedMultiplyAdd {  // vfmadd231ps: s += a b
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i a, __m512i b) {
    asm volatile("vfmadd231ps %2, %1, %0" : "+v"(s) : "v"(a), "v"(b));
  }
};
struct AndBits {  // vpandq
  GPTOSS_TARGET_AVX512 __attribute__((always_inline)) static void step(__m512i& s, __m512i c, __m512i) {
    asm volatile("vpandq %1, %0, %0" : "+v"(s) : "v"(c));
  }
};

constexpr int kRegistersPerClass = 12;

/// `loops` passes of one A step and one B step on each of 12 + 12 registers
/// (named, not an array: the compiler keeps every one in a register).
template <class A, class B>
GPTOSS_TARGET_AVX512 __attribute__((noinline)) void run_classes(std::int64_t loops) {
  const __m512i c0 = _mm512_set1_epi32(0x00030001), c1 = _mm512_set1_epi32(0x3f803f80);  // bf16 1.0 pairs
  __m512i a0 = c1, a1 = c1, a2 = c1, a3 = c1, a4 = c1, a5 = c1, a6 = c1, a7 = c1, a8 = c1, a9 = c1, a10 = c1,
          a11 = c1;
  __m512i b0 = c1, b1 = c1, b2 = c1, b3 = c1, b4 = c1, b5 = c1, b6 = c1, b7 = c1, b8 = c1, b9 = c1, b10 = c1,
          b11 = c1;
  for (std::int64_t l = 0; l < loops; ++l) {
    A::step(a0, c0, c1), B::step(b0, c0, c1), A::step(a1, c0, c1), B::step(b1, c0, c1);
    A::step(a2, c0, c1), B::step(b2, c0, c1), A::step(a3, c0, c1), B::step(b3, c0, c1);
    A::step(a4, c0, c1), B::step(b4, c0, c1), A::step(a5, c0, c1), B::step(b5, c0, c1);
    A::step(a6, c0, c1), B::step(b6, c0, c1), A::step(a7, c0, c1), B::step(b7, c0, c1);
    A::step(a8, c0, c1), B::step(b8, c0, c1), A::step(a9, c0, c1), B::step(b9, c0, c1);
    A::step(a10, c0, c1), B::step(b10, c0, c1), A::step(a11, c0, c1), B::step(b11, c0, c1);
  }
  for (const __m512i& v : {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, b0, b1, b2, b3, b4, b5, b6, b7, b8,
                           b9, b10, b11}) {
    benchmark::DoNotOptimize(v);
  }
}

template <class A, class B>
void BM_pipes(benchmark::State& state) {
  if (!has_avx512_bf16()) {
    state.SkipWithError("needs AVX512_BF16");
    return;
  }
  constexpr std::int64_t kLoops = 100'000;
  const double hz = measured_clock_hz();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) run_classes<A, B>(kLoops);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double instructions = static_cast<double>(2 * kRegistersPerClass * kLoops) * static_cast<double>(state.iterations());
  state.counters["instr_per_cycle"] = instructions / (seconds * hz);
  state.counters["clock_GHz"] = hz * 1e-9;
}

// ---- the MXFP4 row micro-kernels on rows in L1 ----

enum class KernelPrecision { bf16, fp32 };

template <KernelPrecision P>
void BM_mxfp4_row_kernel(benchmark::State& state) {
  if (P == KernelPrecision::bf16 ? !has_avx512_bf16() : active_isa() != Isa::avx512) {
    state.SkipWithError(P == KernelPrecision::bf16 ? "needs AVX512_BF16" : "needs AVX-512");
    return;
  }
  constexpr std::int64_t kRows = 16, kCols = 2880, kBlocks = kCols / 32, kChunks = (kBlocks + 3) / 4;
  std::vector<std::uint8_t> blocks(static_cast<std::size_t>(kRows * kBlocks * 16));
  std::vector<std::uint8_t> scales(static_cast<std::size_t>(kRows * kBlocks), 127);
  bench::fill_bytes(blocks.data(), blocks.size(), 11);
  const Mxfp4Rows w{blocks.data(), scales.data(), kRows, kBlocks};
  std::vector<float> x_f32(static_cast<std::size_t>(kChunks * 128), 0.5f);
  std::vector<std::uint16_t> x_bf16(static_cast<std::size_t>(kChunks * 128), 0x3f00);  // 0.5
  std::vector<float> acc(4 * 16);
  const auto run_group = [&](std::int64_t row) {
    if constexpr (P == KernelPrecision::bf16) {
      kernels::fast::mxfp4_bf16_tile_avx512<4, 1, false>(w, row, 0, kChunks, x_bf16.data(), 0, acc.data());
    } else {
      kernels::fast::mxfp4_f32_tile_avx512<4, 1>(w, row, 0, kChunks, x_f32.data(), 0, acc.data());
    }
  };
  // Validated once: each row's lanes add up to 0.5 x the sum of its E2M1
  // values (scale byte 127: 1), summed here from the bytes.
  run_group(0);
  for (int r = 0; r < 4; ++r) {
    double expected = 0.0, got = 0.0;
    for (std::int64_t b = 0; b < kBlocks * 16; ++b) {
      const std::uint8_t byte = blocks[static_cast<std::size_t>(r * kBlocks * 16 + b)];
      expected += 0.5 * (e2m1::kValues[byte & 15] + e2m1::kValues[byte >> 4]);
    }
    for (int lane = 0; lane < 16; ++lane) got += acc[static_cast<std::size_t>(r * 16 + lane)];
    if (std::abs(got - expected) > 1e-4 * (1.0 + std::abs(expected))) {
      state.SkipWithError("micro-kernel result differs from the scalar sum");
      return;
    }
  }
  const double hz = measured_clock_hz();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    for (std::int64_t row = 0; row < kRows; row += 4) run_group(row);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double runs = static_cast<double>(state.iterations());
  const double row_chunks = static_cast<double>(kRows * kCols) / 128.0 * runs;
  state.counters["cycles_per_row_chunk"] = seconds * hz / row_chunks;
  state.counters["weight_GBps"] = static_cast<double>(blocks.size() + scales.size()) * runs / seconds * 1e-9;
}

}  // namespace

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"

BENCHMARK_TEMPLATE(BM_pipes, PermuteWords, PermuteWords);
BENCHMARK_TEMPLATE(BM_pipes, ShiftWords, ShiftWords);
BENCHMARK_TEMPLATE(BM_pipes, DotBf16, DotBf16);
BENCHMARK_TEMPLATE(BM_pipes, AndBits, AndBits);
BENCHMARK_TEMPLATE(BM_pipes, DotBf16, FusedMultiplyAdd);
BENCHMARK_TEMPLATE(BM_pipes, DotBf16, PermuteWords);
BENCHMARK_TEMPLATE(BM_pipes, DotBf16, ShuffleBytes);
BENCHMARK_TEMPLATE(BM_pipes, DotBf16, ShiftWords);
BENCHMARK_TEMPLATE(BM_pipes, DotBf16, ShiftDwords);
BENCHMARK_TEMPLATE(BM_pipes, PermuteWords, ShiftWords);
BENCHMARK_TEMPLATE(BM_pipes, PermuteWords, ShiftDwords);
BENCHMARK_TEMPLATE(BM_pipes, PermuteFloats, ShiftWords);
BENCHMARK_TEMPLATE(BM_pipes, ShuffleBytes, ShiftWords);
BENCHMARK_TEMPLATE(BM_pipes, FusedMultiplyAdd, PermuteFloats);
BENCHMARK_TEMPLATE(BM_pipes, PermuteWords, AndBits);
BENCHMARK_TEMPLATE(BM_pipes, ShiftWords, AndBits);
BENCHMARK_TEMPLATE(BM_mxfp4_row_kernel, KernelPrecision::bf16);
BENCHMARK_TEMPLATE(BM_mxfp4_row_kernel, KernelPrecision::fp32);

#endif  // GPTOSS_X86

BENCHMARK_MAIN();
