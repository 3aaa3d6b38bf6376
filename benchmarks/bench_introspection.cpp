// The cost of the introspection hooks: a whole forward pass (prefill of T
// tokens on a fresh sequence) of a model with random weights, timed four ways
// in the same binary:
//
//   plain     the layers called one by one (embedding, attention with its KV
//             cache, MoE, per layer; final norm, unembedding): the forward
//             pass as it was before observers, the baseline
//   default   Transformer::forward with the default NoObserver
//   residual  an observer that copies only the residual streams (3 per layer)
//   routing   IntrospectionRecorder keeping residual streams and MoE routing
//
// "default" must match "plain" within noise: hooks cost nothing when unused.
// Every variant's logits are first checked to equal the plain path's bit for
// bit. Counters: weight_GBps (all weight bytes / time; small models stay in
// cache, so this is a rate, not a bandwidth claim) and GFLOPs (2 x active
// parameters x T plus 4 nq D per visible key and layer).
//
//   gptoss_bench_introspection --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "gptoss/gptoss.hpp"

namespace {

using namespace gptoss;

using Model = Transformer<>;
using Slide = SlidingSinkAttention<AttentionSpan::sliding, default_backend>;
using Full = SlidingSinkAttention<AttentionSpan::full, default_backend>;
using Experts = MoEBlock<FP4TensorView<MXFP4Checkpoint>, default_backend>;

/// 8 layers of hidden 1024, 16 experts (top-4), 16 query / 4 KV heads of 64.
constexpr ModelDims kMedium{.num_layers = 8, .num_experts = 16, .experts_per_token = 4, .vocab = 4096,
                            .hidden = 1024, .intermediate = 1024, .head_dim = 64, .num_heads = 16,
                            .num_kv_heads = 4, .sliding_window = 32};

/// A model with random weights and its layers built apart, for the plain path.
struct Setup {
  Model model;
  Embedding<default_backend> embedding;
  Slide slide;
  Full full;
  Experts moe;
  RMSNorm<default_backend> norm;
  Unembedding<default_backend> unembedding;

  explicit Setup(const ModelDims& d)
      : model(d), embedding(d.vocab, d.hidden), slide(AttentionParams::from(d)), full(AttentionParams::from(d)),
        moe(MoEParams::from(d)), norm(d.hidden, d.rms_eps), unembedding(d.vocab, d.hidden) {
    fill_random_weights(model, 7);
  }

  /// The forward pass without the Transformer: logits (T, V).
  Tensor<float, 2> plain(std::span<const std::int32_t> tokens) const {
    const ModelDims& d = model.dims();
    const auto& w = model.weights();
    const index_t t_count = static_cast<index_t>(tokens.size());
    Sequence seq = model.new_sequence(t_count);
    Tensor<float, 2> x({t_count, d.hidden});
    embedding.forward(w.embedding, tokens, x.view());
    for (int l = 0; l < d.num_layers; ++l) {
      const auto i = static_cast<std::size_t>(l / 2);
      LayerKVCache& cache = seq.cache(static_cast<std::size_t>(l));
      if (l % 2 == 0) {
        slide.forward(std::get<0>(w.blocks)[i].attn, x.view(), x.view(), cache, 0);
        moe.forward(std::get<0>(w.blocks)[i].mlp, x.view(), x.view());
      } else {
        full.forward(std::get<1>(w.blocks)[i].attn, x.view(), x.view(), cache, 0);
        moe.forward(std::get<1>(w.blocks)[i].mlp, x.view(), x.view());
      }
    }
    norm.forward(w.norm, x.view(), x.view());
    Tensor<float, 2> logits({t_count, d.vocab});
    unembedding.forward(w.unembedding, x.view(), logits.view());
    return logits;
  }
};

/// Copies each residual stream into a preallocated buffer.
struct ResidualCopy {
  std::vector<float>* out;
  void residual(int layer, BlockStage stage, MatrixView<const float> x) {
    const std::size_t n = static_cast<std::size_t>(x.size());
    const std::size_t slot = static_cast<std::size_t>(layer) * 3 + static_cast<std::size_t>(stage);
    std::copy_n(x.data(), n, out->data() + slot * n);
  }
};

enum class Variant { plain, standard, residual, routing };

void bm_forward(benchmark::State& state, const ModelDims* dims, index_t t_count, Variant variant) {
  static std::map<const ModelDims*, std::unique_ptr<Setup>> setups;
  auto& setup = setups[dims];
  if (!setup) setup = std::make_unique<Setup>(*dims);
  const Model& model = setup->model;
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(t_count));
  for (index_t t = 0; t < t_count; ++t) tokens[static_cast<std::size_t>(t)] = static_cast<std::int32_t>((t * 37 + 11) % dims->vocab);
  std::vector<float> residuals(static_cast<std::size_t>(3 * dims->num_layers * t_count * dims->hidden));

  const auto once = [&]() -> Tensor<float, 2> {
    switch (variant) {
      case Variant::plain: return setup->plain(tokens);
      case Variant::standard: return model.forward(tokens);
      case Variant::residual: return model.forward(tokens, ResidualCopy{&residuals});
      case Variant::routing: {
        IntrospectionRecorder rec({.residual = true, .routing = true, .attention = false, .layers = {}, .heads = {}},
                                  dims->num_layers, dims->num_heads);
        return model.forward(tokens, rec);
      }
    }
    return {};
  };
  if (once().storage() != setup->plain(tokens).storage()) {
    state.SkipWithError("logits differ from the plain layer composition");
    return;
  }
  const double seconds = bench::timed_loop(state, [&] { benchmark::DoNotOptimize(once()); });
  const ParameterCount c = count_parameters(model);
  double keys = 0.0;  // visible keys summed over queries and layers
  for (int l = 0; l < dims->num_layers; ++l) {
    for (index_t t = 0; t < t_count; ++t) {
      keys += static_cast<double>(ModelDims::is_sliding_layer(l) ? std::min<index_t>(t + 1, dims->sliding_window) : t + 1);
    }
  }
  const double flops = 2.0 * static_cast<double>(c.active_per_token) * static_cast<double>(t_count) +
                       4.0 * keys * static_cast<double>(dims->num_heads * dims->head_dim);
  bench::set_throughput_counters(state, static_cast<double>(c.bytes()), flops, seconds,
                                 num_threads());
}

void register_benchmarks() {
  static const ModelDims tiny = GoldenTiny::value, medium = kMedium;
  const std::pair<const char*, Variant> variants[] = {{"plain", Variant::plain},
                                                      {"default", Variant::standard},
                                                      {"residual", Variant::residual},
                                                      {"routing", Variant::routing}};
  for (const auto& [name, dims] : {std::pair{"tiny", &tiny}, std::pair{"medium", &medium}}) {
    for (index_t t : {index_t{1}, index_t{64}}) {
      for (const auto& [label, variant] : variants) {
        benchmark::RegisterBenchmark(
            (std::string("forward/") + name + "/T:" + std::to_string(t) + "/" + label).c_str(), bm_forward,
            dims, t, variant)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime()
            ->ComputeStatistics("min", bench::minimum)
            ->ComputeStatistics("max", bench::maximum);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_machine_context();
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
