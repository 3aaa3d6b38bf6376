// Dense MLP against mixture of experts, built from the same parts.
//
// 1. The released gpt-oss-20b and the "20B dense" variant rumoured before the
//    release (GptOss20bDense: one MLP per layer of width 32 x 2880): parameter
//    counts from the shapes alone.
// 2. Three small models with random MXFP4 MLP weights and the same attention:
//    an MoE (16 experts, top-4, width 256), a dense model with the MoE's
//    active size (width 4 x 256) and one with its total size (16 x 256).
//    Each prints total and active parameters, weight bytes and the tokens/s of a short
//    prefill and of one-token decoding on the fast CPU path.
//
// Usage: 03_dense_vs_moe [threads]   (default: every hardware thread)
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"

using namespace gptoss;

namespace {

using Mxfp4 = FP4TensorView<MXFP4Checkpoint>;
using Moe = Transformer<DynamicConfig, cpu_fast, GptOssBlocks<cpu_fast, Mxfp4>>;
using Dense = Transformer<DynamicConfig, cpu_fast, GptOssDenseBlocks<cpu_fast, Mxfp4>>;

std::string millions(std::int64_t n) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(n >= 1'000'000'000 ? 3 : 2);
  if (n >= 1'000'000'000) s << static_cast<double>(n) / 1e9 << "B";
  else s << static_cast<double>(n) / 1e6 << "M";
  return s.str();
}

template <class Model>
void print_counts(const std::string& name, const Model& model) {
  const ParameterCount c = count_parameters(model);
  std::cout << "  " << std::left << std::setw(26) << name << std::right << std::setw(10) << millions(c.total)
            << " total" << std::setw(10) << millions(c.active_per_token) << " active/token" << std::setw(9)
            << std::fixed << std::setprecision(2)
            << static_cast<double>(c.bytes()) / (c.bytes() >= 1'000'000'000 ? 1e9 : 1e6)
            << (c.bytes() >= 1'000'000'000 ? " GB" : " MB");
}

/// Prefill `prompt` tokens, then decode `steps` tokens one at a time (greedy);
/// prints tokens/s of each phase.
template <class Model>
void run(const std::string& name, Model& model, int prompt, int steps) {
  fill_random_weights(model, 7);
  print_counts(name, model);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(prompt));
  for (int i = 0; i < prompt; ++i) tokens[static_cast<std::size_t>(i)] = (i * 37 + 11) % model.dims().vocab;
  {  // warm-up (thread pool, first touch of the weights), not timed
    Sequence warm = model.new_sequence(prompt);
    model.forward_last(warm, tokens);
  }
  Sequence seq = model.new_sequence(prompt + steps);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  Tensor<float, 2> logits = model.forward_last(seq, tokens);
  const auto t1 = clock::now();
  for (int s = 0; s < steps; ++s) {
    std::int32_t best = 0;
    for (index_t v = 1; v < logits.extent(1); ++v) {
      if (logits(0, v) > logits(0, best)) best = static_cast<std::int32_t>(v);
    }
    logits = model.forward_last(seq, std::span(&best, 1));
  }
  const auto t2 = clock::now();
  const double prefill = std::chrono::duration<double>(t1 - t0).count();
  const double decode = std::chrono::duration<double>(t2 - t1).count();
  std::cout << std::fixed << std::setprecision(0) << std::setw(9) << prompt / prefill << " tok/s prefill"
            << std::setw(8) << steps / decode << " tok/s decode\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) set_num_threads(std::stoi(argv[1]));
  std::cout << "Released gpt-oss-20b and the rumoured dense 20B (shapes only, no weights):\n";
  print_counts("gpt-oss-20b (MoE 32, top-4)", Transformer<GptOss20b>());
  std::cout << "\n";
  print_counts("gpt-oss-20b dense (92160)", Transformer<GptOss20bDense, cpu_fast, GptOssDenseBlocks<cpu_fast, Mxfp4>>());
  std::cout << "\n\nSmall models, random MXFP4 MLP weights, prompt 64 then 32 decoded tokens:\n";

  const ModelDims moe_dims{.num_layers = 4, .num_experts = 16, .experts_per_token = 4, .vocab = 1024, .hidden = 256,
                           .intermediate = 256, .head_dim = 64, .num_heads = 4, .num_kv_heads = 2,
                           .sliding_window = 32};
  ModelDims active = moe_dims, total = moe_dims;  // dense: one expert, wider MLP
  active.num_experts = total.num_experts = 1;
  active.experts_per_token = total.experts_per_token = 1;
  active.intermediate = moe_dims.experts_per_token * moe_dims.intermediate;
  total.intermediate = moe_dims.num_experts * moe_dims.intermediate;

  Moe moe(moe_dims);
  Dense dense_active(active), dense_total(total);
  run("MoE 16 x 256, top-4", moe, 64, 32);
  run("dense 1024 (= active)", dense_active, 64, 32);
  run("dense 4096 (= total)", dense_total, 64, 32);
  std::cout << "(" << num_threads() << " threads; timings depend on the machine and its load)\n";
}
