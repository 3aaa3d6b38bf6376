// Composing models from gptoss parts without editing the library.
//
// 1. The released gpt-oss-20b and gpt-oss-120b as compile-time config types:
//    parameter counts come from the layer shapes alone (no weights needed).
// 2. Two models no library header names, built from the same layer types:
//    - "all-full-bf16": every layer attends to the full context, experts
//      stored as bf16 instead of MXFP4;
//    - "two-slide-one-full": a period-3 pattern (slide, slide, full).
//    Both run on random weights and decode a few tokens through the KV cache.
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"

using namespace gptoss;

namespace {

// Block types: an attention policy and a feed-forward type per block.
template <AttentionSpan Span, class Experts>
using Block = DecoderBlock<SlidingSinkAttention<Span>, MoEBlock<Experts>>;

using Mxfp4 = FP4TensorView<MXFP4Checkpoint>;
using Bf16 = MatrixView<const bf16>;

using AllFullBf16 = Transformer<DynamicConfig, cpu_reference, BlockPattern<Block<AttentionSpan::full, Bf16>>>;
using TwoSlideOneFull =
    Transformer<DynamicConfig, cpu_reference,
                BlockPattern<Block<AttentionSpan::sliding, Mxfp4>, Block<AttentionSpan::sliding, Mxfp4>,
                             Block<AttentionSpan::full, Mxfp4>>>;

/// 20914757184 -> "20.915B" (or "20.915 GB" with bytes = true).
std::string human(double n, bool bytes = false) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3);
  if (n >= 1e9) s << n / 1e9 << (bytes ? " GB" : "B");
  else if (n >= 1e6) s << n / 1e6 << (bytes ? " MB" : "M");
  else s << n / 1e3 << (bytes ? " kB" : "K");
  return s.str();
}

template <class Model>
void report(const std::string& name, const Model& model) {
  const ParameterCount c = count_parameters(model);
  std::cout << std::left << std::setw(22) << name << std::right << std::setw(10)
            << human(static_cast<double>(c.total)) << " total" << std::setw(10)
            << human(static_cast<double>(c.active_per_token)) << " active/token" << std::setw(12)
            << human(static_cast<double>(c.bytes()), true) << " of weights\n";
}

template <class Model>
void decode_a_few_tokens(const std::string& name, Model& model) {
  fill_random_weights(model, 2026);
  Sequence seq = model.new_sequence(64);
  std::vector<std::int32_t> tokens{1, 2, 3};
  for (int step = 0; step < 6; ++step) {
    const Tensor<float, 2> logits = model.forward(seq, tokens);  // (T, V)
    const float* last = logits.data() + (logits.extent(0) - 1) * logits.extent(1);
    std::int32_t best = 0;
    for (index_t v = 1; v < logits.extent(1); ++v) {
      if (last[v] > last[best]) best = static_cast<std::int32_t>(v);
    }
    tokens = {best};  // greedy: feed the argmax back
    std::cout << (step ? " " : "  " + name + " greedy tokens:") << " " << best;
  }
  std::cout << "  (sequence length " << seq.length() << ", cache "
            << seq.cache_bytes() << " bytes)\n";
}

}  // namespace

int main() {
  std::cout << "Released configs (counts from shapes; no weights loaded):\n";
  report("gpt-oss-20b", Transformer<GptOss20b>());
  report("gpt-oss-120b", Transformer<GptOss120b>());

  ModelDims small = TinyMoE::value;
  small.num_layers = 6;
  std::cout << "\nModels composed from the same parts (" << small.num_layers << " layers, hidden "
            << small.hidden << "):\n";
  AllFullBf16 all_full(small);
  TwoSlideOneFull two_slide(small);
  report("all-full-bf16", all_full);
  report("two-slide-one-full", two_slide);
  decode_a_few_tokens("all-full-bf16", all_full);
  decode_a_few_tokens("two-slide-one-full", two_slide);
  return 0;
}
