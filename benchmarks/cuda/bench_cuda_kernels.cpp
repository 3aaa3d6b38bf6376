// CUDA kernels at real gpt-oss shapes (Google Benchmark, device time from
// CUDA events), each reported against the device's ceilings measured in the
// same run: a 1 GiB device-to-device copy (bandwidth) and a 8192^3 bf16
// GEMM (cuBLAS when available). Weights are rotated over copies larger than
// the L2 cache, so every figure streams from HBM.
//
// Counters: GBps (bytes the kernel must move per second), bw_frac (GBps /
// copy bandwidth), TFLOPs (2 N K rows per second), gemm_frac (TFLOPs / the
// bf16 GEMM rate).
#include <cstdint>
#include <cstdio>
#include <vector>

#include <benchmark/benchmark.h>

#include "gptoss/cuda/ceilings.hpp"
#include "gptoss/cuda/kernels.hpp"
#include "gptoss/cuda/runtime.hpp"

namespace gc = gptoss::cuda;
using gptoss::bf16;

namespace {

constexpr std::size_t kColdBytes = std::size_t{512} << 20;  // > 10x the 50 MB L2 of an H100

struct Ceilings {
  double bandwidth = 0.0;
  gc::GemmRate gemm;
};

const Ceilings& ceilings() {
  static const Ceilings c{gc::measure_copy_bandwidth(), gc::measure_bf16_gemm_rate()};
  return c;
}

void report(benchmark::State& state, double bytes, double flops) {
  const Ceilings& c = ceilings();
  const double n = static_cast<double>(state.iterations());
  state.counters["GBps"] = benchmark::Counter(bytes * n / 1e9, benchmark::Counter::kIsRate);
  state.counters["bw_frac"] = benchmark::Counter(bytes * n / c.bandwidth, benchmark::Counter::kIsRate);
  state.counters["TFLOPs"] = benchmark::Counter(flops * n / 1e12, benchmark::Counter::kIsRate);
  state.counters["gemm_frac"] = benchmark::Counter(flops * n / c.gemm.flop_per_s, benchmark::Counter::kIsRate);
}

/// Runs `step(i)` once per iteration, timed by CUDA events.
template <class Step>
void timed(benchmark::State& state, Step&& step) {
  gc::EventTimer timer;
  std::size_t i = 0;
  step(i++);  // warm-up
  for (auto _ : state) {
    timer.start();
    step(i++);
    state.SetIterationTime(timer.stop());
  }
}

// --- MXFP4 experts, decode: 4 routed experts of 32, matrix-vector -----------
void BM_mxfp4_experts_decode(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
  const int experts = 32, k = 4;
  const std::size_t groups = static_cast<std::size_t>(experts) * rows * cols / 32;
  const std::size_t copies = std::max<std::size_t>(1, kColdBytes / (groups * 17) + 1);
  gc::DeviceBuffer<std::uint8_t> blocks(copies * groups * 16), scales(copies * groups);
  gc::fill_random_mxfp4(blocks.data(), scales.data(), copies * groups, 1, 120);
  gc::DeviceBuffer<float> x(static_cast<std::size_t>(cols)), y(static_cast<std::size_t>(k) * rows);
  gc::fill_bytes(x.data(), 0, x.bytes());
  const std::vector<std::int32_t> chosen = {3, 11, 17, 30};
  const gc::DeviceBuffer<std::int32_t> ids{std::span<const std::int32_t>(chosen)};
  timed(state, [&](std::size_t i) {
    const std::size_t c = i % copies;
    const gc::DeviceMXFP4 w{blocks.data() + c * groups * 16, scales.data() + c * groups, rows, cols, experts};
    gc::expert_linear_vector(w, nullptr, ids.data(), k, x.data(), k, y.data());
  });
  report(state, k * static_cast<double>(rows) * cols * 17.0 / 32.0, 2.0 * k * rows * static_cast<double>(cols));
}
BENCHMARK(BM_mxfp4_experts_decode)->Args({5760, 2880})->Args({2880, 2880})->UseManualTime()->Unit(benchmark::kMicrosecond);

// --- MXFP4 experts, prefill: T tokens, top-4 of 32, grouped tensor-core GEMM
void BM_mxfp4_experts_prefill(benchmark::State& state) {
  const int tokens = static_cast<int>(state.range(0)), rows = 5760, cols = 2880, experts = 32, k = 4;
  const int entries = tokens * k;
  const std::size_t groups = static_cast<std::size_t>(experts) * rows * cols / 32;
  gc::DeviceBuffer<std::uint8_t> blocks(groups * 16), scales(groups);
  gc::fill_random_mxfp4(blocks.data(), scales.data(), groups, 2, 120);
  std::vector<std::int32_t> chosen(static_cast<std::size_t>(entries));
  for (int i = 0; i < entries; ++i) chosen[static_cast<std::size_t>(i)] = (i / k * 7 + i % k * 9) % experts;
  const gc::DeviceBuffer<std::int32_t> ids{std::span<const std::int32_t>(chosen)};
  gc::DeviceBuffer<float> x(static_cast<std::size_t>(tokens) * cols), y(static_cast<std::size_t>(entries) * rows);
  gc::fill_bytes(x.data(), 0, x.bytes());
  const int tiles = gc::expert_tile_bound(entries, experts);
  gc::DeviceBuffer<std::int32_t> sorted(entries), position(entries), te(tiles), tb(tiles), tend(tiles);
  const gc::ExpertGrouping g{sorted.data(), position.data(), te.data(), tb.data(), tend.data(), tiles};
  const gc::DeviceMXFP4 w{blocks.data(), scales.data(), rows, cols, experts};
  timed(state, [&](std::size_t) {
    gc::group_by_expert(ids.data(), entries, experts, g);
    gc::expert_linear_grouped(w, nullptr, g, entries, x.data(), true, k, y.data());
  });
  report(state, static_cast<double>(groups) * 17.0, 2.0 * entries * rows * static_cast<double>(cols));
}
BENCHMARK(BM_mxfp4_experts_prefill)->Arg(512)->Arg(2048)->Arg(4096)->UseManualTime()->Unit(benchmark::kMicrosecond);

// --- bf16 projections: QKV, out, unembedding --------------------------------
void BM_bf16_linear(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), cols = static_cast<int>(state.range(1));
  const int tokens = static_cast<int>(state.range(2));
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const std::size_t copies = std::max<std::size_t>(1, kColdBytes / (n * 2) + 1);
  gc::DeviceBuffer<bf16> w(copies * n);
  gc::fill_random(w.data(), w.size(), 3, -0.02f, 0.02f);
  gc::DeviceBuffer<float> x(static_cast<std::size_t>(tokens) * cols), y(static_cast<std::size_t>(tokens) * rows);
  gc::fill_bytes(x.data(), 0, x.bytes());
  const auto path = tokens >= 16 ? gc::LinearPath::tensor_core : gc::LinearPath::vector;
  timed(state, [&](std::size_t i) {
    gc::linear(gc::DeviceBF16{w.data() + (i % copies) * n, rows, cols}, nullptr, x.data(), tokens, nullptr,
               y.data(), path);
  });
  report(state, 2.0 * static_cast<double>(n), 2.0 * tokens * static_cast<double>(n));
}
BENCHMARK(BM_bf16_linear)
    ->Args({5120, 2880, 1})->Args({2880, 4096, 1})->Args({201088, 2880, 1})
    ->Args({5120, 2880, 2048})->Args({2880, 4096, 2048})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// --- attention: decode at a context, prefill of a prompt ---------------------
void BM_attention(benchmark::State& state) {
  const int context = static_cast<int>(state.range(0)), tokens = static_cast<int>(state.range(1));
  const int window = static_cast<int>(state.range(2));
  const int nq = 64, nkv = 8, d = 64;
  const std::size_t cache = static_cast<std::size_t>(context) * nkv * d;
  gc::DeviceBuffer<float> q(static_cast<std::size_t>(tokens) * nq * d), k(cache), v(cache), out(q.size());
  gc::fill_bytes(q.data(), 0, q.bytes());
  gc::fill_bytes(k.data(), 0, k.bytes());
  gc::fill_bytes(v.data(), 0, v.bytes());
  gc::DeviceBuffer<bf16> sinks(static_cast<std::size_t>(nq));
  gc::fill_random(sinks.data(), sinks.size(), 4, -1.0f, 1.0f);
  const int first = context - tokens;
  timed(state, [&](std::size_t) {
    gc::sink_attention(q.data(), k.data(), v.data(), first, tokens, nq, nkv, d, sinks.data(), 0.125f, window,
                       out.data());
  });
  // keys each query sees; K and V read once per KV head (decode)
  double visible = 0.0;
  for (int t = 0; t < tokens; ++t) visible += window > 0 ? std::min(window, first + t + 1) : first + t + 1;
  const double bytes = tokens == 1 ? visible * nkv * d * 4.0 * 2.0 : static_cast<double>(cache) * 4.0 * 2.0;
  report(state, bytes, 4.0 * visible * nq * d);
}
BENCHMARK(BM_attention)
    ->Args({4096, 1, 0})->Args({32768, 1, 0})->Args({32768, 1, 128})
    ->Args({2048, 2048, 0})->Args({2048, 2048, 128})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (gc::device_count() == 0) {
    std::puts("no CUDA device: nothing to measure");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  const gc::DeviceInfo info = gc::device_info();
  const Ceilings& c = ceilings();
  std::printf("%s: copy bandwidth %.1f GB/s, %s %.1f TFLOP/s\n", info.name.c_str(), c.bandwidth / 1e9,
              c.gemm.source.c_str(), c.gemm.flop_per_s / 1e12);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
