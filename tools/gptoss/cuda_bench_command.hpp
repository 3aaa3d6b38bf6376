// gptoss CLI: `gptoss bench --device cuda`, whole-model speed on one CUDA
// device with random weights generated on the device (gpt-oss-120b fits an
// 80 GB GPU without passing through host memory). Reports prefill and
// decode tokens/s against the device's measured ceilings: decode bytes per
// token over the device-to-device copy bandwidth, prefill FLOP/s over the
// bf16 GEMM rate. Without CUDA in the build it says so.
#pragma once

#include <string>

#include "bench_report.hpp"
#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/error.hpp"

#if GPTOSS_WITH_CUDA
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/cuda/ceilings.hpp"
#include "gptoss/cuda/transformer.hpp"
#endif

namespace gptoss::cli {

struct CudaBenchArgs {
  std::string config;
  ModelDims dims;
  int prompt = 512, gen = 16, repeat = 3;
  bool json = false;
};

#if GPTOSS_WITH_CUDA
inline int run_cuda_bench(const CudaBenchArgs& a) {
  if (cuda::device_count() == 0) throw Error("--device cuda: no CUDA device is available");
  const ModelDims& d = a.dims;
  const cuda::DeviceInfo info = cuda::device_info();
  const auto log = [&](const std::string& line) {
    if (!a.json) std::cerr << line << std::endl;
  };
  const double bandwidth = cuda::measure_copy_bandwidth();
  const cuda::GemmRate gemm = cuda::measure_bf16_gemm_rate();
  log(info.name + ": copy bandwidth " + std::to_string(bandwidth / 1e9) + " GB/s, " + gemm.source + " " +
      std::to_string(gemm.flop_per_s / 1e12) + " TFLOP/s");

  const cuda::CudaTransformer model = cuda::CudaTransformer::random(d, 2026);
  log("random weights on the device: " + std::to_string(model.weight_bytes() / 1e9) + " GB (" +
      std::to_string(d.num_layers) + " layers)");

  std::mt19937 rng(7);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(a.prompt + a.gen));
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % static_cast<unsigned>(d.vocab));
  const std::span<const std::int32_t> all(tokens);

  double best_prefill = 0.0;
  std::vector<double> decode_rates;
  cuda::EventTimer timer;
  for (int r = 0; r < a.repeat; ++r) {
    cuda::DeviceSequence seq = model.new_sequence(a.prompt + a.gen);
    timer.start();
    model.enqueue(seq, all.first(static_cast<std::size_t>(a.prompt)), 1);
    const double prefill_s = timer.stop();
    best_prefill = std::max(best_prefill, a.prompt / prefill_s);
    // Decode steps feed the drawn tokens (no argmax round trip): the logits
    // stay on the device, as a sampler on the device would leave them.
    timer.start();
    for (int g = 0; g < a.gen; ++g) model.enqueue(seq, all.subspan(static_cast<std::size_t>(a.prompt + g), 1), 1);
    const double decode_s = timer.stop();
    decode_rates.push_back(a.gen / decode_s);
    log("run " + std::to_string(r + 1) + ": prefill " + std::to_string(a.prompt / prefill_s) + " tokens/s, decode " +
        std::to_string(a.gen / decode_s) + " tokens/s");
  }
  // Bytes one decode step reads: every weight but the embedding table (one
  // row) and the unrouted experts, plus the visible KV cache at the end.
  const double h = d.hidden, e = d.num_experts, k = d.experts_per_token, inter = d.intermediate;
  const double q = static_cast<double>(d.head_dim) * d.num_heads;
  const double expert_bytes_per_layer = e * (2 * inter * h + h * inter) * 17.0 / 32.0;
  const double all_weights = static_cast<double>(model.weight_bytes());
  const double embedding = static_cast<double>(d.vocab) * h * 2.0;
  const double weights_read = all_weights - embedding + h * 2.0 - d.num_layers * expert_bytes_per_layer * (1.0 - k / e);
  double kv_read = 0.0;
  const double length = a.prompt + a.gen;
  for (int l = 0; l < d.num_layers; ++l) {
    const double keys = ModelDims::is_sliding_layer(l) ? std::min<double>(length, d.sliding_window) : length;
    kv_read += keys * 2.0 * d.num_kv_heads * d.head_dim * sizeof(float);
  }
  const double decode_bytes = weights_read + kv_read;
  const ModelBenchFigures f{a.prompt, a.gen, a.repeat, best_prefill, decode_rates, decode_bytes, bandwidth};
  // FLOPs per prefill token: 2 x the parameters each token multiplies by
  // (attention projections, router, k experts; the unembedding runs once).
  const double active = d.num_layers * (static_cast<double>(d.qkv_dim()) * h + h * q + e * h +
                                        k * (2 * inter * h + h * inter));
  const double prefill_flops = best_prefill * 2.0 * active;

  if (a.json) {
    nlohmann::ordered_json j{{"device", info.name}, {"config", a.config}, {"layers", d.num_layers}};
    j.update(f.json());
    j["prefill_flop_per_s"] = prefill_flops;
    j["gemm_flop_per_s"] = gemm.flop_per_s;
    j["gemm_source"] = gemm.source;
    std::cout << j.dump() << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(2) << a.config << ", " << d.num_layers << " layers, " << info.name
              << "\n"
              << "prefill (" << a.prompt << " tokens): " << best_prefill << " tokens/s (" << prefill_flops / 1e12
              << " TFLOP/s, " << 100.0 * prefill_flops / gemm.flop_per_s << "% of " << gemm.source << ")\n";
    f.print_decode(std::cout);
  }
  return 0;
}
#else
inline int run_cuda_bench(const CudaBenchArgs&) {
  throw ConfigError("--device cuda: this gptoss was built without CUDA (configure with -DGPTOSS_CUDA=ON)");
}
#endif

}  // namespace gptoss::cli
