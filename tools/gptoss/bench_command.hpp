// gptoss CLI: `gptoss bench`, whole-model speed on random weights of real
// gpt-oss shapes (no checkpoint needed).
//
//   gptoss bench [--config gpt-oss-20b|gpt-oss-120b] [--layers N] [--prompt P]
//                [--gen G] [--threads N] [--repeat R] [--json] [--device cpu|cuda]
//
// Prints prefill tokens/s, decode tokens/s, the bytes a decode step must read
// (weights of the attention, router, 4 of the experts and the unembedding,
// plus the KV cache) and that as a fraction of the memory bandwidth measured
// in the same run: against the fastest of all probes (before the weights are
// made and after each run), and each run against the probes on either side
// of it (decode_bandwidth_fraction_runs in the JSON, in run order). The best
// run's decode time is split by part of the forward pass (StageTimer:
// attention halves, feed-forward halves, the rest), each with the bytes it
// reads and the rate it streamed them at (decode_parts in the JSON). Last,
// the process's peak resident memory against the weights and the KV cache
// it holds (peak_resident_bytes, weight_bytes, kv_cache_bytes).
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/gptoss.hpp"
#include "gptoss/kernels/fast/all.hpp"
#include "bench_report.hpp"
#include "process_memory.hpp"
#include "cuda_bench_command.hpp"

namespace gptoss::cli {

struct BenchArgs {
  std::string config = "gpt-oss-20b";
  std::string device = "cpu";
  int layers = 0, prompt = 512, gen = 16, threads = 0, repeat = 3;
  bool json = false, int8_dense = false;
  std::string precision;  // empty: the current setting (GPTOSS_MATMUL_PRECISION or fp32)
};

/// Bytes one decode step reads, by the part of the forward pass that reads
/// them: all weights but the embedding table (one row is read) and the
/// unused experts, plus the KV cache. With --int8-dense the attention and
/// unembedding matrices are read as their 8-bit copies.
struct DecodeBytes {
  double attention = 0.0;       // attention weights of every block, and the KV cache
  double feed_forward = 0.0;    // norms, routers and experts_per_token experts of every block
  double outside_blocks = 0.0;  // an embedding row, the final norm, the unembedding
  double total() const noexcept { return attention + feed_forward + outside_blocks; }
};

inline DecodeBytes decode_bytes_by_part(const ParameterCount& count, const ModelDims& dims,
                                        const DenseInt8Report& int8, double kv_bytes) {
  const auto d = [](auto v) { return static_cast<double>(v); };
  const double attention_int8_delta = d(int8.int8_bytes - int8.unembedding_int8_bytes) -
                                      d(int8.bf16_bytes - int8.unembedding_bf16_bytes);
  const double unembedding_int8_delta = d(int8.unembedding_int8_bytes) - d(int8.unembedding_bf16_bytes);
  const double expert = d(count.expert_bytes);
  const double outside = d(count.bytes()) - d(count.attention_bytes) - d(count.feed_forward_bytes);
  return {d(count.attention_bytes) + attention_int8_delta + kv_bytes,
          d(count.feed_forward_bytes) - expert + expert * dims.experts_per_token / dims.num_experts,
          outside - d(count.embedding) * 2.0 + dims.hidden * 2.0 + unembedding_int8_delta};
}

/// One part's share of a decode run: seconds and bytes per token, against
/// the run's measured bandwidth.
struct DecodePart {
  std::string name;
  double seconds_per_token = 0.0, bytes_per_token = 0.0, bandwidth = 0.0;
  double bytes_per_s() const noexcept { return bytes_per_token / seconds_per_token; }
  double bandwidth_fraction() const noexcept { return bytes_per_s() / bandwidth; }
};

inline std::vector<DecodePart> describe_decode_parts(const DecodeBytes& bytes, const StageTimer::Totals& t,
                                                     int tokens, double bandwidth) {
  return {{"attention", t.attention_s / tokens, bytes.attention, bandwidth},
          {"feed_forward", t.feed_forward_s / tokens, bytes.feed_forward, bandwidth},
          {"outside_blocks", t.outside_blocks_s / tokens, bytes.outside_blocks, bandwidth}};
}

inline int run_bench(const BenchArgs& a) {
  ModelDims dims = a.config == "gpt-oss-20b"    ? GptOss20b::value
                   : a.config == "gpt-oss-120b" ? GptOss120b::value
                                                : throw RangeError("--config must be gpt-oss-20b or gpt-oss-120b, got '" + a.config + "'");
  if (a.layers > 0) dims.num_layers = std::min(dims.num_layers, a.layers);
  if (a.prompt < 1 || a.gen < 1 || a.repeat < 1) throw RangeError("--prompt, --gen and --repeat must be positive");
  if (a.device == "cuda") return run_cuda_bench({a.config, dims, a.prompt, a.gen, a.repeat, a.json});
  if (a.device != "cpu") throw RangeError("--device must be cpu or cuda, got '" + a.device + "'");
  if (a.threads > 0) set_num_threads(a.threads);
  if (!a.precision.empty()) set_matmul_precision(*matmul_precision_from_name(a.precision));
  const int threads = num_threads();
  const std::string precision(matmul_precision_name(matmul_precision()));
  const auto log = [&](const std::string& line) {
    if (!a.json) std::cerr << line << std::endl;
  };

  // The probe runs before the weights are made and again after each decode
  // run (a 256 MiB buffer then, to keep the peak memory near the weights');
  // the bound uses the fastest. On a shared or virtual machine memory that
  // was just handed to the process can read slowly for a while, and the
  // host's load moves the rate from one run to the next: a single probe at
  // the start can fall well below what the decode itself then streams.
  const double bandwidth_before = kernels::fast::measure_read_bandwidth(thread_pool());
  std::vector<double> probes{bandwidth_before};  // in time order
  log("memory read bandwidth: " + std::to_string(bandwidth_before / 1e9) + " GB/s with " + std::to_string(threads) +
      " threads");

  auto t0 = std::chrono::steady_clock::now();
  Transformer<DynamicConfig, cpu_fast> model(dims);
  fill_random_weights(model, 2026);
  const double gen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ParameterCount count = count_parameters(model);
  log("random weights: " + std::to_string(count.bytes() / 1e9) + " GB in " + std::to_string(gen_s) + " s (" +
      std::to_string(dims.num_layers) + " layers)");

  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(0, dims.vocab - 1);
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(a.prompt));
  for (auto& t : prompt) t = pick(rng);

  DenseInt8Report int8;
  double int8_logit_error = 0.0;
  if (a.int8_dense) {
    // What the 8-bit copies cost: last-token logits of (up to) 64 prompt
    // tokens with the bf16 weights, then with the copies.
    const auto probe = std::span<const std::int32_t>(prompt).first(std::min<std::size_t>(prompt.size(), 64));
    Sequence before_seq = model.new_sequence(static_cast<index_t>(probe.size()));
    const Tensor<float, 2> before = model.forward_last(before_seq, probe);
    t0 = std::chrono::steady_clock::now();
    int8 = quantize_dense_int8(model);
    const double quantize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Sequence after_seq = model.new_sequence(static_cast<index_t>(probe.size()));
    const Tensor<float, 2> after = model.forward_last(after_seq, probe);
    double max_diff = 0.0, max_ref = 0.0;
    for (index_t i = 0; i < before.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(after.data()[i] - before.data()[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(before.data()[i])));
    }
    int8_logit_error = max_diff / std::max(1.0, max_ref);
    const bool same_top = std::max_element(before.data(), before.data() + before.size()) - before.data() ==
                          std::max_element(after.data(), after.data() + after.size()) - after.data();
    log("8-bit attention and unembedding: " + std::to_string(int8.int8_bytes / 1e9) + " GB (bf16 " +
        std::to_string(int8.bf16_bytes / 1e9) + " GB) in " + std::to_string(quantize_s) +
        " s; last-token logits of " + std::to_string(probe.size()) + " tokens vs bf16: max error " +
        std::to_string(int8_logit_error) + " of max(1, max|logit|), top token " + (same_top ? "same" : "differs"));
  }

  double best_prefill = 0.0;
  std::vector<double> decode_rates, run_bandwidths;  // in run order
  std::vector<StageTimer::Totals> run_parts;         // decode time by part, in run order
  std::size_t kv_bytes_per_token_read = 0, kv_cache_bytes = 0;
  for (int r = 0; r < a.repeat; ++r) {
    Sequence seq = model.new_sequence(a.prompt + a.gen);
    t0 = std::chrono::steady_clock::now();
    Tensor<float, 2> logits = model.forward_last(seq, prompt);
    const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_prefill = std::max(best_prefill, a.prompt / prefill_s);
    StageTimer parts;
    t0 = std::chrono::steady_clock::now();
    for (int g = 0; g < a.gen; ++g) {
      const float* row = logits.data();
      const std::int32_t next = static_cast<std::int32_t>(std::max_element(row, row + dims.vocab) - row);
      parts.begin_pass();
      logits = model.forward_last(seq, std::span<const std::int32_t>(&next, 1), parts);
      parts.end_pass();
    }
    const double decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    decode_rates.push_back(a.gen / decode_s);
    run_parts.push_back(parts.totals());
    // KV cache read by the last step: every held key and value.
    // The cache's memory: what its buffers hold, used or not.
    kv_bytes_per_token_read = 0;
    kv_cache_bytes = 0;
    for (std::size_t l = 0; l < seq.num_layers(); ++l) {
      kv_bytes_per_token_read += static_cast<std::size_t>(seq.cache(l).size()) * 2 * dims.num_kv_heads * dims.head_dim * sizeof(float);
      kv_cache_bytes += seq.cache(l).bytes();
    }
    // This run's bound: the faster of the probes just before and just after it.
    probes.push_back(kernels::fast::measure_read_bandwidth(thread_pool(), std::size_t{1} << 28, 8));
    run_bandwidths.push_back(std::max(probes[probes.size() - 2], probes.back()));
    log("run " + std::to_string(r + 1) + ": prefill " + std::to_string(a.prompt / prefill_s) + " tokens/s, decode " +
        std::to_string(a.gen / decode_s) + " tokens/s; memory read bandwidth after it " +
        std::to_string(probes.back() / 1e9) + " GB/s");
  }
  const double bandwidth = *std::max_element(probes.begin(), probes.end());
  const DecodeBytes bytes = decode_bytes_by_part(count, dims, int8, static_cast<double>(kv_bytes_per_token_read));
  const double decode_bytes = bytes.total();
  std::vector<double> run_fractions;  // each run against its own adjacent probes
  for (std::size_t r = 0; r < decode_rates.size(); ++r) {
    run_fractions.push_back(decode_rates[r] * decode_bytes / run_bandwidths[r]);
  }
  // Where the best run's decode time went, and how fast each part streamed.
  const std::size_t best_run =
      static_cast<std::size_t>(std::max_element(decode_rates.begin(), decode_rates.end()) - decode_rates.begin());
  const std::vector<DecodePart> decode_parts = describe_decode_parts(bytes, run_parts[best_run], a.gen,
                                                                     run_bandwidths[best_run]);
  const ModelBenchFigures f{a.prompt, a.gen, a.repeat, best_prefill, decode_rates, decode_bytes, bandwidth};
  // Peak resident memory against what the model must hold: its weights (and
  // the 8-bit copies) and the last run's KV cache. The rest is scratch, the
  // thread stacks and the 256 MiB probe buffer.
  const double weight_bytes = static_cast<double>(count.bytes()) + static_cast<double>(int8.int8_bytes);
  const double peak_resident = static_cast<double>(process_memory().peak);
  const double held_bytes = weight_bytes + static_cast<double>(kv_cache_bytes);
  const double flops_per_token = 2.0 * static_cast<double>(count.active_per_token);

  if (a.json) {
    nlohmann::ordered_json j{{"config", a.config}, {"layers", dims.num_layers}, {"threads", threads}};
    j.update(f.json());
    j["bandwidth_probes_bytes_per_s"] = probes;
    j["decode_bandwidth_fraction_runs"] = run_fractions;
    j["prefill_flop_per_s"] = best_prefill * flops_per_token;
    j["isa"] = std::string(isa_name(active_isa()));
    j["matmul_precision"] = precision;
    j["int8_dense"] = a.int8_dense;
    if (a.int8_dense) j["int8_logit_error"] = int8_logit_error;
    j["weight_bytes"] = weight_bytes;
    j["kv_cache_bytes"] = kv_cache_bytes;
    j["peak_resident_bytes"] = peak_resident;
    nlohmann::ordered_json parts_json;
    for (const DecodePart& p : decode_parts) {
      parts_json[p.name] = {{"seconds_per_token", p.seconds_per_token},
                            {"bytes_per_token", p.bytes_per_token},
                            {"bytes_per_s", p.bytes_per_s()},
                            {"bandwidth_fraction", p.bandwidth_fraction()}};
    }
    j["decode_parts"] = parts_json;
    std::cout << j.dump() << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(2) << a.config << ", " << dims.num_layers << " layers, " << threads
              << " threads, " << isa_name(active_isa()) << ", " << precision << " matmul precision"
              << (a.int8_dense ? ", 8-bit attention and unembedding" : "")
              << "\n"
              << "prefill (" << a.prompt << " tokens): " << best_prefill << " tokens/s ("
              << best_prefill * flops_per_token / 1e9 << " GFLOP/s at 2 x active parameters)\n";
    f.print_decode(std::cout);
    std::cout << "each run against the probes just before and after it:";
    for (std::size_t r = 0; r < run_fractions.size(); ++r) {
      std::cout << (r == 0 ? " " : ", ") << 100.0 * run_fractions[r] << "%";
    }
    std::cout << "\n"
              << "decode time by part (best run, against its probes' " << run_bandwidths[best_run] / 1e9
              << " GB/s):\n";
    double part_total_s = 0.0;
    for (const DecodePart& p : decode_parts) part_total_s += p.seconds_per_token;
    for (const DecodePart& p : decode_parts) {
      std::cout << "  " << std::left << std::setw(15) << p.name << std::right << std::setw(7)
                << 1e3 * p.seconds_per_token << " ms/token (" << std::setw(5)
                << 100.0 * p.seconds_per_token / part_total_s << "%), " << std::setw(7) << p.bytes_per_token / 1e9
                << " GB/token, " << std::setw(6) << p.bytes_per_s() / 1e9 << " GB/s, " << std::setw(6)
                << 100.0 * p.bandwidth_fraction() << "% of the probe\n";
    }
    std::cout << "memory: peak resident " << peak_resident / 1e9 << " GB for " << weight_bytes / 1e9
              << " GB of weights and " << kv_cache_bytes / 1e6 << " MB of KV cache ("
              << peak_resident / held_bytes << "x)\n";
  }
  return 0;
}

/// Registers `bench`.
inline void add_bench_command(CLI::App& app, std::function<int()>& action) {
  auto args = std::make_shared<BenchArgs>();
  auto* bench = app.add_subcommand("bench", "Prefill and decode speed on random weights of real gpt-oss shapes");
  bench->add_option("--config", args->config, "gpt-oss-20b (default) or gpt-oss-120b");
  bench->add_option("--layers", args->layers, "use the first N layers (default: all)");
  bench->add_option("--prompt", args->prompt, "prompt tokens to prefill (default 512)");
  bench->add_option("--gen", args->gen, "tokens to decode (default 16)");
  bench->add_option("--threads", args->threads, "worker threads (default: all cores)")->check(CLI::Range(0, 4096));
  bench->add_option("--repeat", args->repeat, "runs; the best is reported (default 3)");
  bench->add_flag("--json", args->json, "print one JSON object");
  bench->add_option("--precision", args->precision,
                    "matmul precision of the fast kernels: fp32 (default), bf16x2, bf16 or int8")
      ->check(CLI::IsMember({"fp32", "bf16x2", "bf16", "int8"}));
  bench->add_flag("--int8-dense", args->int8_dense,
                  "8-bit copies of the attention projections and the unembedding (default: bf16)");
  bench->add_option("--device", args->device, "cpu (default) or cuda (random weights generated on the GPU)");
  bench->callback([args, &action] { action = [args] { return run_bench(*args); }; });
}

}  // namespace gptoss::cli
