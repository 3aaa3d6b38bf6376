// Streaming generation with StreamingLLM sink tokens, in constant memory.
//
// A small gpt-oss-shaped model (random weights) with StreamingGptOssBlocks:
// every layer keeps its first 4 tokens for ever next to a rolling window
// (sliding layers: the config's 16; the formerly full layers: 64). It
// decodes far past both windows and past the sequence's max_context (256),
// printing the KV-cache bytes as it goes; they stay constant. The same model
// with gpt-oss's own pattern grows its full layers until the context limit
// stops it.
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"

using namespace gptoss;

int main() {
  const ModelDims dims{.num_layers = 4, .num_experts = 4, .experts_per_token = 2, .vocab = 512, .hidden = 128,
                       .intermediate = 128, .head_dim = 32, .num_heads = 4, .num_kv_heads = 2,
                       .sliding_window = 16};
  constexpr index_t kMaxContext = 256;
  constexpr int kTokens = 2000;

  Transformer<DynamicConfig, cpu_fast, StreamingGptOssBlocks<4, 64, cpu_fast>> streaming(dims);
  Transformer<> gptoss(dims);
  fill_random_weights(streaming, 1);
  fill_random_weights(gptoss, 1);

  Sequence seq = streaming.new_sequence(kMaxContext);
  Sequence reference = gptoss.new_sequence(kMaxContext);
  std::int32_t token = 1, reference_token = 1;
  std::size_t first_bytes = 0;
  bool reference_stopped = false;
  const auto greedy = [](const Tensor<float, 2>& logits) {
    std::int32_t best = 0;
    for (index_t v = 1; v < logits.extent(1); ++v) {
      if (logits(0, v) > logits(0, best)) best = static_cast<std::int32_t>(v);
    }
    return best;
  };
  std::cout << "tokens   streaming cache bytes   gpt-oss cache bytes\n";
  for (int t = 1; t <= kTokens; ++t) {
    token = greedy(streaming.forward_last(seq, std::span(&token, 1)));
    if (!reference_stopped) {
      try {
        reference_token = greedy(gptoss.forward_last(reference, std::span(&reference_token, 1)));
      } catch (const RangeError& e) {
        std::cout << "  gpt-oss stops at " << reference.length() << " tokens: " << e.what() << "\n";
        reference_stopped = true;
      }
    }
    if (t == 1) first_bytes = seq.cache_bytes();
    if (seq.cache_bytes() != first_bytes) {
      std::cerr << "the streaming cache grew to " << seq.cache_bytes() << " bytes\n";
      return 1;
    }
    if (t == 1 || t == 16 || t == 64 || t == kMaxContext || t % 500 == 0) {
      std::cout << std::setw(6) << t << std::setw(24) << seq.cache_bytes() << std::setw(22)
                << (reference_stopped ? std::string("(stopped)") : std::to_string(reference.cache_bytes())) << "\n";
    }
  }
  std::cout << "streamed " << seq.length() << " tokens (max_context " << kMaxContext << ") in "
            << seq.cache_bytes() << " bytes of KV cache; last token " << token << "\n";
}
