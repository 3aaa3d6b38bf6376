// Shared pieces of the Google Benchmark programs: machine probes measured in
// the same process (read bandwidth, fp32 FMA peak), a validate-then-time
// helper, fast deterministic fills and the counters every benchmark reports.
//
// Counters (from the mean wall time per iteration):
//   weight_GBps  GB of weights streamed per second
//   bw_frac      weight_GBps / the read bandwidth probed with the same
//                thread count
//   GFLOPs       useful flops per second (2 N K T for a linear layer)
//   peak_frac    GFLOPs / (probed fp32 FMA peak per core * threads)
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/read_bandwidth.hpp"
#include "gptoss/kernels/fast/simd.hpp"

namespace gptoss::bench {

// ---- deterministic fills (xorshift: a gigabyte in a second) ----------------

class FastRandom {
 public:
  explicit FastRandom(std::uint64_t seed) : state_(seed * 0x9e3779b97f4a7c15ull + 1) {}
  std::uint64_t next() noexcept {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  /// Uniform in [-amplitude, amplitude).
  float uniform(float amplitude) noexcept {
    return amplitude * (static_cast<float>(next() >> 40) * 0x1p-23f - 1.0f);
  }

 private:
  std::uint64_t state_;
};

inline void fill_bytes(std::uint8_t* p, std::size_t n, std::uint64_t seed) {
  FastRandom rng(seed);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t v = rng.next();
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<std::uint8_t>(rng.next());
}

inline void fill_uniform(float* p, std::size_t n, float amplitude, std::uint64_t seed) {
  FastRandom rng(seed);
  for (std::size_t i = 0; i < n; ++i) p[i] = rng.uniform(amplitude);
}

inline void fill_uniform(bf16* p, std::size_t n, float amplitude, std::uint64_t seed) {
  FastRandom rng(seed);
  for (std::size_t i = 0; i < n; ++i) p[i] = bf16::from_float(rng.uniform(amplitude));
}

// ---- probes ------------------------------------------------------------------

namespace detail {

#if GPTOSS_X86
/// Seconds for `iterations` rounds of 24 independent zmm FMAs.
GPTOSS_TARGET_AVX512 inline double fma_seconds_avx512(long iterations, float* sink) {
  __m512 a[24];
  for (int i = 0; i < 24; ++i) a[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-4f);
  const auto start = std::chrono::steady_clock::now();
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  __m512 s = a[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, a[i]);
  *sink = gptoss::kernels::fast::hsum_avx512(s);
  return seconds;
}

GPTOSS_TARGET_AVX2 inline double fma_seconds_avx2(long iterations, float* sink) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-4f);
  const auto start = std::chrono::steady_clock::now();
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  *sink = gptoss::kernels::fast::hsum_avx2(s);
  return seconds;
}
#endif

}  // namespace detail

/// Read bandwidth in GB/s of `threads` threads streaming a 1 GiB buffer
/// (kernels/fast/read_bandwidth.hpp, the probe `gptoss bench` uses), best
/// of `repeats`. Cached per thread count for the process.
inline double read_bandwidth_gbps(int threads, int repeats = 7) {
  static std::map<int, double> cache;
  if (auto it = cache.find(threads); it != cache.end()) return it->second;
  ThreadPool pool(threads);
  const double gbps = kernels::fast::measure_read_bandwidth(pool, std::size_t{1} << 30, repeats) / 1e9;
  cache[threads] = gbps;
  return gbps;
}

/// fp32 FMA peak of one core in GFLOP/s (2 flops per lane per FMA) on the
/// widest tier, best of a few runs. Cached.
inline double fma_peak_gflops_per_core() {
  static const double peak = [] {
    double best = 0.0;
    float sink = 0.0f;
    for (int r = 0; r < 5; ++r) {
      double flops = 0.0, seconds = 1.0;
      switch (detected_isa()) {
#if GPTOSS_X86
        case Isa::avx512: {
          const long it = 20'000'000;
          seconds = detail::fma_seconds_avx512(it, &sink);
          flops = 2.0 * 16 * 24 * static_cast<double>(it);
          break;
        }
        case Isa::avx2_fma: {
          const long it = 20'000'000;
          seconds = detail::fma_seconds_avx2(it, &sink);
          flops = 2.0 * 8 * 12 * static_cast<double>(it);
          break;
        }
#endif
        default: break;
      }
      if (flops > 0.0) best = std::max(best, flops / seconds / 1e9);
    }
    benchmark::DoNotOptimize(sink);
    return best;
  }();
  return peak;
}

// ---- counters ------------------------------------------------------------------

/// Sets weight_GBps, bw_frac, GFLOPs and peak_frac for a run that streamed
/// `weight_bytes` and did `flops` per iteration, taking `seconds` per
/// iteration, with `threads` threads.
inline void set_throughput_counters(benchmark::State& state, double weight_bytes, double flops,
                                    double seconds, int threads) {
  const double gbps = weight_bytes / seconds / 1e9, gflops = flops / seconds / 1e9;
  state.counters["weight_GBps"] = gbps;
  state.counters["bw_frac"] = gbps / read_bandwidth_gbps(threads);
  state.counters["GFLOPs"] = gflops;
  const double peak = fma_peak_gflops_per_core() * threads;
  if (peak > 0.0) state.counters["peak_frac"] = gflops / peak;
}

/// Times the benchmark loop: calls body() once per iteration and returns the
/// mean wall seconds per iteration (the kernels run on a thread pool, so
/// wall time is what counts).
template <class Body>
double timed_loop(benchmark::State& state, Body&& body) {
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    body();
    benchmark::ClobberMemory();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return seconds / static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
}

/// max |a - e| / bound over two float arrays, with bound[i] the allowed error
/// of element i; > 1 means the validation failed.
inline double worst_error_ratio(const float* actual, const float* expected, const double* bound,
                                std::size_t n) {
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const double ratio = std::isnan(err) ? INFINITY : err / bound[i];
    worst = std::max(worst, ratio);
  }
  return worst;
}

/// Statistics over repetitions (--benchmark_repetitions): the spread that
/// docs/performance.md reports next to the best run. Applied to times and
/// counters alike: the best run is the time "min" and the rate "max".
inline double minimum(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
inline double maximum(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

/// Adds machine context to the benchmark output's header.
inline void add_machine_context() {
  benchmark::AddCustomContext("gptoss_isa", std::string(isa_name(active_isa())));
  benchmark::AddCustomContext("avx512_bf16", cpu_features().avx512bf16 ? "yes" : "no");
  for (int threads : {1, 2}) {
    benchmark::AddCustomContext("read_GBps_" + std::to_string(threads) + "_threads",
                                std::to_string(read_bandwidth_gbps(threads)));
  }
  benchmark::AddCustomContext("fp32_fma_peak_GFLOPs_per_core",
                              std::to_string(fma_peak_gflops_per_core()));
}

/// The settings every benchmark here uses: microseconds, wall time, and the
/// best and worst of the repetitions.
inline void timed_in_microseconds(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMicrosecond)->UseRealTime()->ComputeStatistics("min", minimum)->ComputeStatistics("max", maximum);
}

/// main() of a benchmark program: parses the flags, adds the machine
/// context, registers the benchmarks and runs them.
template <class Register>
int run_main(int argc, char** argv, Register&& register_benchmarks) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  add_machine_context();
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace gptoss::bench
