// How the thread pool's work split affects row streaming: a 1 GiB buffer of
// 6 KiB rows read as a sequence of products (4 MiB and 32 MiB, the sizes of
// an MXFP4 expert matrix and of a QKV projection), each product's rows split
// across the threads with ThreadPool::parallel_for (one contiguous range per
// thread, the baseline) and with parallel_for_stealing (the same ranges,
// claimed 64 rows at a time, the tail rebalanced; what the fast linear
// products use). Each thread sums the rows it is given with the library's
// vector read loop, so the run measures the split and not arithmetic. The
// first pass is validated (every row read exactly once) before timing.
//
//   gptoss_bench_thread_pool --benchmark_repetitions=5
//
// Counters: weight_GBps (bytes read per second) and bw_frac against the
// probed read bandwidth of the same thread count.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/kernels/fast/read_bandwidth.hpp"

namespace {

using namespace gptoss;

constexpr std::int64_t kRowFloats = 1536;                         // 6 KiB rows
constexpr std::int64_t kBufferRows = (std::int64_t{1} << 30) / (kRowFloats * 4);  // 1 GiB
constexpr std::int64_t kChunkRows = 64;                           // as the fast linear products claim

enum class Split { contiguous, stealing };

const float* buffer() {
  static const LargeBuffer storage = [] {
    LargeBuffer b = allocate_large_bytes(static_cast<std::size_t>(kBufferRows * kRowFloats) * sizeof(float));
    std::fill_n(reinterpret_cast<float*>(b.get()), kBufferRows * kRowFloats, 0.5f);
    return b;
  }();
  return reinterpret_cast<const float*>(storage.get());
}

/// Reads the whole buffer as products of `product_rows` rows; returns the
/// sum of every element read (0.5 each when every row is read once).
double read_pass(ThreadPool& pool, Split split, std::int64_t product_rows) {
  const float* data = buffer();
  std::atomic<double> total{0.0};
  auto rows = [&](std::int64_t first, std::int64_t last) {
    const float s = kernels::fast::detail::sum_floats(data + first * kRowFloats,
                                                      static_cast<std::size_t>((last - first) * kRowFloats));
    total.fetch_add(s, std::memory_order_relaxed);
  };
  for (std::int64_t p = 0; p + product_rows <= kBufferRows; p += product_rows) {
    if (split == Split::contiguous) {
      pool.parallel_for(p, p + product_rows, 16, rows);
    } else {
      pool.parallel_for_stealing(p, p + product_rows, 16, kChunkRows / 16, rows);
    }
  }
  return total.load();
}

void bm_split(benchmark::State& state, Split split, std::int64_t product_rows, int threads) {
  ThreadPool pool(threads);
  const std::int64_t read_rows = kBufferRows / product_rows * product_rows;
  const double expected = 0.5 * static_cast<double>(read_rows * kRowFloats);
  if (const double got = read_pass(pool, split, product_rows); got != expected) {
    state.SkipWithError(("sum of the rows read " + std::to_string(got) + ", expected " +
                         std::to_string(expected) + ": some row was read twice or not at all")
                            .c_str());
    return;
  }
  const double seconds = bench::timed_loop(state, [&] { benchmark::DoNotOptimize(read_pass(pool, split, product_rows)); });
  bench::set_throughput_counters(state, static_cast<double>(read_rows * kRowFloats) * sizeof(float), 0.0, seconds,
                                 threads);
  state.counters.erase("GFLOPs");
  state.counters.erase("peak_frac");
}

void register_benchmarks() {
  for (std::int64_t mib : {4, 32}) {
    const std::int64_t product_rows = mib * (1 << 20) / (kRowFloats * 4);
    for (int threads : {1, 2}) {
      for (Split split : {Split::contiguous, Split::stealing}) {
        const std::string name = "split/product:" + std::to_string(mib) + "MiB/" +
                                 (split == Split::contiguous ? "contiguous" : "stealing") +
                                 "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), bm_split, split, product_rows, threads)
            ->Apply(bench::timed_in_microseconds);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return gptoss::bench::run_main(argc, argv, register_benchmarks); }
