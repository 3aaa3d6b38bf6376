// Token generation: prefill a prompt into a Sequence's KV cache, then sample
// one token at a time until a stop token, the token limit or the context
// limit, handing each token to a callback as it is chosen.
//
//   Sequence seq = model.new_sequence(4096);
//   std::vector<int32_t> context;                 // the tokens held by seq
//   Sampler sampler({.temperature = 0.7, .top_p = 0.9, .seed = 1});
//   GenerationResult r = generate(model, seq, context, prompt, sampler, {.max_tokens = 200},
//                                 [&](int32_t token) { std::cout << tok.decode({&token, 1}); return true; });
//
// The stop tokens are gpt-oss's <|return|> (200002) and <|call|> (200012);
// <|end|> is not one: it closes the analysis message, and the final answer
// follows. A stop token is returned but not fed to the sequence, so a chat
// can feed <|end|> in its place and continue with the next turn.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "gptoss/core/error.hpp"
#include "gptoss/model/transformer.hpp"
#include "gptoss/text/sampler.hpp"

namespace gptoss::text {

/// gpt-oss's stop tokens: <|return|> and <|call|>.
inline const std::vector<std::int32_t>& default_stop_tokens() {
  static const std::vector<std::int32_t> ids{200002, 200012};
  return ids;
}

enum class StopReason {
  stop_token,    ///< a stop token was sampled (the last token returned)
  max_tokens,    ///< GenerationOptions::max_tokens tokens were generated
  context_full,  ///< the sequence reached its context limit
  callback,      ///< the token callback returned false
};

inline const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::stop_token: return "stop token";
    case StopReason::max_tokens: return "token limit";
    case StopReason::context_full: return "context limit";
    case StopReason::callback: return "stopped by the caller";
  }
  return "?";
}

struct GenerationOptions {
  int max_tokens = 256;  ///< at most this many tokens are generated (> 0)
  std::vector<std::int32_t> stop_tokens = default_stop_tokens();
  /// Only ids below this are sampled (0: the model's whole vocabulary). Set
  /// it to the tokenizer's vocab_size when the model has more rows
  /// (gpt-oss: 201088 rows, 200019 tokens), or smaller to restrict output.
  std::int32_t sample_limit = 0;
  /// Prefill in chunks of this many tokens (0: all at once), calling
  /// on_prefill(done, total) after each.
  int prefill_chunk = 0;
  std::function<void(std::size_t done, std::size_t total)> on_prefill = nullptr;
};

struct GenerationResult {
  std::vector<std::int32_t> tokens;  ///< generated tokens, the stop token included
  StopReason reason = StopReason::max_tokens;
  std::size_t prompt_tokens = 0;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  ///< from the first sampled token to the end

  /// Generated tokens per second of decoding (the first token's sampling
  /// is prefill work; the rest each cost one forward step).
  double tokens_per_second() const {
    return decode_seconds > 0.0 ? static_cast<double>(tokens.size()) / decode_seconds : 0.0;
  }
};

/// Maps ids outside [0, vocab) into it (id mod vocab): for models whose
/// vocabulary is smaller than the tokenizer's, such as the random test
/// checkpoints, so that any text can still be fed to them. Real gpt-oss
/// checkpoints never need it.
inline std::vector<std::int32_t> fold_into_vocabulary(std::span<const std::int32_t> ids, std::int32_t vocab) {
  if (vocab <= 0) throw RangeError("fold_into_vocabulary: the vocabulary size must be positive");
  std::vector<std::int32_t> out(ids.begin(), ids.end());
  for (auto& id : out) {
    if (id < 0 || id >= vocab) id = ((id % vocab) + vocab) % vocab;
  }
  return out;
}

/// Feeds `prompt` to `seq` (whose tokens so far are `context`), then
/// generates. Each chosen token is passed to on_token(token), which may
/// return false to stop. Generated tokens except a final stop token are fed
/// to `seq` and appended to `context`.
///
/// A prompt that does not fit in the sequence's context limit is a
/// RangeError; generation that reaches the limit stops (context_full).
template <class Model, class OnToken>
GenerationResult generate(const Model& model, Sequence& seq, std::vector<std::int32_t>& context,
                          std::span<const std::int32_t> prompt, Sampler& sampler, const GenerationOptions& options,
                          OnToken&& on_token) {
  using clock = std::chrono::steady_clock;
  if (options.max_tokens <= 0) throw RangeError("generate: max_tokens must be positive, not " + std::to_string(options.max_tokens));
  if (prompt.empty()) throw RangeError("generate: the prompt is empty");
  if (static_cast<index_t>(context.size()) != seq.length()) {
    throw Error("generate: the context lists " + std::to_string(context.size()) + " tokens but the sequence holds " +
                std::to_string(seq.length()));
  }
  const index_t held = seq.length(), limit = seq.max_context();
  if (held + static_cast<index_t>(prompt.size()) > limit) {
    throw RangeError("the prompt of " + std::to_string(prompt.size()) + " tokens does not fit in the context: " +
                     std::to_string(held) + " of its " + std::to_string(limit) + " tokens are in use");
  }
  const index_t vocab = model.dims().vocab;
  const index_t sample_vocab = options.sample_limit > 0 ? std::min<index_t>(options.sample_limit, vocab) : vocab;

  GenerationResult result;
  result.prompt_tokens = prompt.size();
  const auto start = clock::now();
  Tensor<float, 2> logits;  // (1, V): the last token of the last forward call
  const std::size_t chunk = options.prefill_chunk > 0 ? static_cast<std::size_t>(options.prefill_chunk) : prompt.size();
  for (std::size_t done = 0; done < prompt.size();) {
    const std::size_t n = std::min(chunk, prompt.size() - done);
    logits = model.forward_last(seq, prompt.subspan(done, n));
    done += n;
    if (options.on_prefill) options.on_prefill(done, prompt.size());
  }
  context.insert(context.end(), prompt.begin(), prompt.end());
  const auto decode_start = clock::now();
  result.prefill_seconds = std::chrono::duration<double>(decode_start - start).count();

  while (true) {
    const float* last_row = logits.data() + (logits.extent(0) - 1) * vocab;
    const std::int32_t token = sampler.sample(std::span<const float>(last_row, static_cast<std::size_t>(sample_vocab)), context);
    result.tokens.push_back(token);
    bool keep_going = true;
    if constexpr (std::is_void_v<std::invoke_result_t<OnToken&, std::int32_t>>) {
      on_token(token);
    } else {
      keep_going = static_cast<bool>(on_token(token));
    }
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end()) {
      result.reason = StopReason::stop_token;
      break;
    }
    if (!keep_going) {
      result.reason = StopReason::callback;
      break;
    }
    if (static_cast<int>(result.tokens.size()) >= options.max_tokens) {
      result.reason = StopReason::max_tokens;
      break;
    }
    if (seq.length() + 1 > limit) {
      result.reason = StopReason::context_full;
      break;
    }
    logits = model.forward(seq, std::span<const std::int32_t>(&token, 1));
    context.push_back(token);
  }
  result.decode_seconds = std::chrono::duration<double>(clock::now() - decode_start).count();
  return result;
}

/// generate() on a fresh sequence holding prompt + max_tokens tokens.
template <class Model, class OnToken>
GenerationResult generate(const Model& model, std::span<const std::int32_t> prompt, Sampler& sampler,
                          const GenerationOptions& options, OnToken&& on_token) {
  Sequence seq = model.new_sequence(static_cast<index_t>(prompt.size()) + std::max(options.max_tokens, 1));
  std::vector<std::int32_t> context;
  return generate(model, seq, context, prompt, sampler, options, std::forward<OnToken>(on_token));
}

/// generate() without a callback.
template <class Model>
GenerationResult generate(const Model& model, std::span<const std::int32_t> prompt, Sampler& sampler,
                          const GenerationOptions& options = {}) {
  return generate(model, prompt, sampler, options, [](std::int32_t) {});
}

}  // namespace gptoss::text
