// The memory read bandwidth probe that every bandwidth fraction is measured
// against (`gptoss bench`, the Google Benchmark programs): each thread of a
// pool sums its own contiguous part of a buffer far larger than the caches
// with the widest vector loads the CPU has, as the matrix-vector kernels
// stream their rows, and the best of a few passes is the machine's rate.
//
// The buffer gets huge pages where the weights get them (core/huge_pages.hpp),
// so a bound is what this machine reads at best, not the slower 4 KiB-page
// rate. Each thread first-touches the part it later reads.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/simd.hpp"

namespace gptoss::kernels::fast {

namespace detail {

#if GPTOSS_X86
#include "gptoss/kernels/fast/intrinsic_warnings_off.hpp"

/// Sum of p[0, n) (n a multiple of 64, p 64-byte aligned).
GPTOSS_TARGET_AVX512 inline float sum_floats_avx512(const float* p, std::size_t n) noexcept {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i < n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return hsum_avx512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/// Sum of p[0, n) (n a multiple of 64, p 32-byte aligned).
GPTOSS_TARGET_AVX2 inline float sum_floats_avx2(const float* p, std::size_t n) noexcept {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i < n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  return hsum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

#include "gptoss/kernels/fast/intrinsic_warnings_on.hpp"
#endif

/// Sum of p[0, n) (n a multiple of 8) in eight independent lanes.
inline float sum_floats_portable(const float* p, std::size_t n) noexcept {
  float a[8] = {};
  for (std::size_t i = 0; i < n; i += 8) {
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  }
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

/// Sum of p[0, n) on the widest tier this CPU has (n a multiple of 64, p
/// 64-byte aligned).
inline float sum_floats(const float* p, std::size_t n) noexcept {
  switch (detected_isa()) {
#if GPTOSS_X86
    case Isa::avx512: return sum_floats_avx512(p, n);
    case Isa::avx2_fma: return sum_floats_avx2(p, n);
#endif
    default: return sum_floats_portable(p, n);
  }
}

}  // namespace detail

/// Read bandwidth in bytes per second of all threads of `pool` streaming a
/// buffer of about `bytes` (each thread its own contiguous part), the best
/// of `passes` passes. Throws std::invalid_argument when the buffer leaves
/// a thread less than one 64-float block or `passes` is not positive.
inline double measure_read_bandwidth(ThreadPool& pool, std::size_t bytes = std::size_t{1} << 30,
                                     int passes = 4) {
  const std::size_t threads = static_cast<std::size_t>(pool.size());
  const std::size_t part = bytes / sizeof(float) / threads / 64 * 64;  // floats per thread
  if (part == 0 || passes <= 0) {
    throw std::invalid_argument("measure_read_bandwidth: " + std::to_string(bytes) + " bytes over " +
                                std::to_string(threads) + " threads and " + std::to_string(passes) +
                                " passes: need at least 256 bytes per thread and one pass");
  }
  const LargeBuffer storage = allocate_large_bytes(part * threads * sizeof(float));
  float* const buffer = reinterpret_cast<float*>(storage.get());
  const int tasks = static_cast<int>(threads);
  pool.run(tasks, [&](int t) { std::fill_n(buffer + part * static_cast<std::size_t>(t), part, 0.5f); });
  std::vector<float> sums(threads);
  double best = 0.0;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    pool.run(tasks, [&](int t) {
      sums[static_cast<std::size_t>(t)] = detail::sum_floats(buffer + part * static_cast<std::size_t>(t), part);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(part * threads * sizeof(float)) / seconds);
  }
  // The sums are data the caller could see: keep them (and the reads) alive.
  volatile float sink = 0.0f;
  for (float s : sums) sink = sink + s;
  return best;
}

}  // namespace gptoss::kernels::fast
