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
#include "support/plain_forward.hpp"

namespace {

using namespace gptoss;

using Model = Transformer<>;

/// 8 layers of hidden 1024, 16 experts (top-4), 16 query / 4 KV heads of 64.
constexpr ModelDims kMedium{.num_layers = 8, .num_experts = 16, .experts_per_token = 4, .vocab = 4096,
                            .hidden = 1024, .intermediate = 1024, .head_dim = 64, .num_heads = 16,
                            .num_kv_heads = 4, .sliding_window = 32};

/// A model with random weights and its layers built apart, for the plain path.
struct Setup {
  Model model;
  test::PlainForward<default_backend> layers;

  explicit Setup(const ModelDims& d) : model(d), layers(d) { fill_random_weights(model, 7); }
  Tensor<float, 2> plain(std::span<const std::int32_t> tokens) const { return layers(model, tokens); }
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
            ->Apply(bench::timed_in_microseconds);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return gptoss::bench::run_main(argc, argv, register_benchmarks); }
