// Sink attention on gpt-oss shapes (64 query heads, 8 KV heads, head dim
// 64): one decode step (T = 1 at the last position) against a KV cache of
// 128, 4096 and 32768 positions, with full attention and with the 128-token
// sliding window, plus one prefill (T = S = 512); reference vs cpu_fast on 1
// and 2 threads. Each fast run is validated against the reference first.
// The decode_cached cases are a decode step as the layer runs it, keys in two
// parts (the cache's S - 1, then the new token's): read in place (parts)
// against the copy of both into one tensor first (concat, the baseline).
//
//   gptoss_bench_attention --benchmark_filter='decode.*32768'
//
// Counters: kv_GBps (keys and values of the visible positions read per
// second) and bw_frac against the probed read bandwidth; GFLOPs (4 nq D per
// visible key: q.k and p v) and peak_frac against the probed FMA peak.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/kernels/fast/attention.hpp"
#include "gptoss/kernels/reference/attention.hpp"

namespace {

using namespace gptoss;

constexpr index_t kQueryHeads = 64, kKvHeads = 8, kHeadDim = 64;

struct Case {
  index_t t_count, s_count, window;
};

struct Inputs {
  Tensor<float, 3> q, k, v;
  Tensor<index_t, 1> q_pos, k_pos;
  Tensor<float, 1> sinks;
};

Inputs make_inputs(const Case& c) {
  Inputs in{Tensor<float, 3>({c.t_count, kQueryHeads, kHeadDim}),
            Tensor<float, 3>({c.s_count, kKvHeads, kHeadDim}),
            Tensor<float, 3>({c.s_count, kKvHeads, kHeadDim}), Tensor<index_t, 1>({c.t_count}),
            Tensor<index_t, 1>({c.s_count}), Tensor<float, 1>({kQueryHeads})};
  bench::fill_uniform(in.q.data(), static_cast<std::size_t>(in.q.size()), 1.0f, 31);
  bench::fill_uniform(in.k.data(), static_cast<std::size_t>(in.k.size()), 1.0f, 32);
  bench::fill_uniform(in.v.data(), static_cast<std::size_t>(in.v.size()), 1.0f, 33);
  bench::fill_uniform(in.sinks.data(), static_cast<std::size_t>(kQueryHeads), 2.0f, 34);
  for (index_t t = 0; t < c.t_count; ++t) in.q_pos(t) = c.s_count - c.t_count + t;
  for (index_t j = 0; j < c.s_count; ++j) in.k_pos(j) = j;
  return in;
}

template <class Backend>
void run(const Inputs& in, const Case& c, Tensor<float, 2>& out) {
  kernels::sink_attention(Backend{}, in.q.view(), in.q_pos.view(), in.k.view(), in.v.view(),
                          in.k_pos.view(), in.sinks.view(), 0.125f, c.window, out.view());
}

/// Keys visible to all queries, summed over the queries.
double visible_keys(const Case& c) {
  double total = 0.0;
  for (index_t t = 0; t < c.t_count; ++t) {
    const index_t p = c.s_count - c.t_count + t;
    total += static_cast<double>(c.window > 0 ? std::min(c.window, p + 1) : p + 1);
  }
  return total;
}

/// Sets err_ratio (max error over 1e-5 of the reference's largest value, at
/// least 1) and skips the benchmark with an error when it exceeds 1.
bool matches_reference(benchmark::State& state, const Tensor<float, 2>& out, const Tensor<float, 2>& ref) {
  double worst = 0.0, largest = 1.0;
  for (index_t i = 0; i < ref.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(out.data()[i] - ref.data()[i])));
    largest = std::max(largest, static_cast<double>(std::fabs(ref.data()[i])));
  }
  state.counters["err_ratio"] = worst / (1e-5 * largest);
  if (!(worst <= 1e-5 * largest)) {
    state.SkipWithError("result differs from the reference beyond 1e-5 of its largest value");
    return false;
  }
  return true;
}

void bm_attention(benchmark::State& state, const Case c, const bool fast, const int threads) {
  set_num_threads(threads);
  const Inputs in = make_inputs(c);
  Tensor<float, 2> out({c.t_count, kQueryHeads * kHeadDim});
  if (fast) {
    Tensor<float, 2> ref({c.t_count, kQueryHeads * kHeadDim});
    run<cpu_reference>(in, c, ref);
    run<cpu_fast>(in, c, out);
    if (!matches_reference(state, out, ref)) return;
  }
  const double seconds = bench::timed_loop(state, [&] {
    if (fast) {
      run<cpu_fast>(in, c, out);
    } else {
      run<cpu_reference>(in, c, out);
    }
  });
  const double keys = visible_keys(c);
  // K and V rows of all KV heads for every visible key of one query (the
  // prefill reads them once per query from cache; decode from memory).
  const double kv_bytes = 2.0 * keys * kKvHeads * kHeadDim * sizeof(float);
  const double flops = 4.0 * keys * kQueryHeads * kHeadDim;
  bench::set_throughput_counters(state, kv_bytes, flops, seconds, threads);
  state.counters["kv_GBps"] = state.counters["weight_GBps"];
  state.counters.erase("weight_GBps");
}

/// One decode step over a cache of S - 1 keys plus the new token's key, on
/// the fast kernel: parts read in place, or (concat) copied into one
/// tensor first.
void bm_cached_decode(benchmark::State& state, const Case c, const bool concat, const int threads) {
  set_num_threads(threads);
  const Inputs in = make_inputs(c);
  const index_t held = c.s_count - 1, row = kKvHeads * kHeadDim;
  const std::array parts{
      kernels::KeyValuePart{TensorView<const float, 3>(in.k.data(), {held, kKvHeads, kHeadDim}),
                            TensorView<const float, 3>(in.v.data(), {held, kKvHeads, kHeadDim}),
                            VectorView<const index_t>(in.k_pos.data(), {held})},
      kernels::KeyValuePart{TensorView<const float, 3>(in.k.data() + held * row, {1, kKvHeads, kHeadDim}),
                            TensorView<const float, 3>(in.v.data() + held * row, {1, kKvHeads, kHeadDim}),
                            VectorView<const index_t>(in.k_pos.data() + held, {1})}};
  Tensor<float, 2> out({1, kQueryHeads * kHeadDim}), ref({1, kQueryHeads * kHeadDim});
  auto step = [&] {
    if (!concat) {
      kernels::sink_attention(cpu_fast{}, in.q.view(), in.q_pos.view(), parts, in.sinks.view(), 0.125f,
                              c.window, out.view());
      return;
    }
    Tensor<float, 3> k({c.s_count, kKvHeads, kHeadDim}), v({c.s_count, kKvHeads, kHeadDim});
    Tensor<index_t, 1> pos({c.s_count});
    for (const auto& part : parts) {
      const index_t at = part.positions[0], n = part.k.extent(0);
      std::copy_n(part.k.data(), n * row, k.data() + at * row);
      std::copy_n(part.v.data(), n * row, v.data() + at * row);
      std::copy_n(part.positions.data(), n, pos.data() + at);
    }
    kernels::sink_attention(cpu_fast{}, in.q.view(), in.q_pos.view(), k.view(), v.view(), pos.view(),
                            in.sinks.view(), 0.125f, c.window, out.view());
  };
  run<cpu_reference>(in, c, ref);
  step();
  if (!matches_reference(state, out, ref)) return;
  const double seconds = bench::timed_loop(state, step);
  const double keys = visible_keys(c);
  bench::set_throughput_counters(state, 2.0 * keys * row * sizeof(float), 4.0 * keys * kQueryHeads * kHeadDim,
                                 seconds, threads);
  state.counters["kv_GBps"] = state.counters["weight_GBps"];
  state.counters.erase("weight_GBps");
}

void register_benchmarks() {
  std::vector<std::pair<std::string, Case>> cases;
  for (index_t s : {128, 4096, 32768}) {
    cases.push_back({"decode/S:" + std::to_string(s) + "/full", Case{1, s, 0}});
    if (s > 128) cases.push_back({"decode/S:" + std::to_string(s) + "/window:128", Case{1, s, 128}});
  }
  cases.push_back({"prefill/T:512/full", Case{512, 512, 0}});
  cases.push_back({"prefill/T:512/window:128", Case{512, 512, 128}});
  for (const auto& [label, c] : cases) {
    benchmark::RegisterBenchmark(("attention/" + label + "/reference/threads:1").c_str(), bm_attention,
                                 c, false, 1)
        ->Apply(bench::timed_in_microseconds);
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark(
          ("attention/" + label + "/fast/threads:" + std::to_string(threads)).c_str(), bm_attention,
          c, true, threads)
          ->Apply(bench::timed_in_microseconds);
    }
  }
  for (index_t s_count : {4096, 32768}) {
    for (bool concat : {true, false}) {
      benchmark::RegisterBenchmark(("attention/decode_cached/S:" + std::to_string(s_count) + "/full/" +
                                    (concat ? "concat" : "parts") + "/threads:2")
                                       .c_str(),
                                   bm_cached_decode, Case{1, s_count, 0}, concat, 2)
          ->Apply(bench::timed_in_microseconds);
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return gptoss::bench::run_main(argc, argv, register_benchmarks); }
