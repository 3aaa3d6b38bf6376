// gptoss CLI: the text subcommands (tokenize, generate, chat).
//
//   gptoss tokenize (--model DIR | --tokenizer FILE) (--text STR | --text-file PATH | --jsonl PATH) [--ordinary]
//   gptoss generate --model DIR --prompt STR [--reasoning low|medium|high] [--temperature T] [--top-k K]
//                   [--top-p P] [--min-p P] [--repetition-penalty R] [--seed S] [--max-tokens N]
//                   [--context N] [--instructions STR] [--show-analysis] [--raw] [--tokenizer FILE] [--threads N]
//   gptoss chat     --model DIR [the sampling options] [--context N] [--show-analysis] [--raw] [--tokenizer FILE]
//
// The tokenizer is DIR/tokenizer.json (or DIR/../tokenizer.json, the layout
// of a HF download whose original/ folder holds the checkpoint), unless
// --tokenizer names one.
//
// Models whose vocabulary cannot hold the harmony tokens (the random test
// checkpoints: 1024 ids) run in raw mode: prompt ids beyond the vocabulary
// are folded into it (id mod vocab), and every generated token's text is
// streamed as it is, since such a model never writes the harmony format.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/gptoss.hpp"
#include "gptoss/text/generate.hpp"
#include "gptoss/text/harmony.hpp"
#include "gptoss/text/sampler.hpp"
#include "gptoss/text/tokenizer.hpp"
#include "model_commands.hpp"

namespace gptoss::cli {

namespace text_cli {

using gptoss::text::Tokenizer;
namespace harmony = gptoss::text::harmony;

/// --tokenizer FILE, else DIR/tokenizer.json, else DIR/../tokenizer.json.
inline std::filesystem::path find_tokenizer(const std::string& model_dir, const std::string& tokenizer_file) {
  if (!tokenizer_file.empty()) return tokenizer_file;
  if (model_dir.empty()) throw RangeError("give --model DIR or --tokenizer FILE");
  const std::filesystem::path dir(model_dir);
  for (const auto& candidate : {dir / "tokenizer.json", dir.parent_path() / "tokenizer.json"}) {
    if (std::filesystem::is_regular_file(candidate)) return candidate;
  }
  throw FormatError("no tokenizer.json in '" + model_dir + "' or its parent folder; give --tokenizer FILE");
}

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError("cannot open '" + path + "'");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

inline void print_ids(const std::vector<std::int32_t>& ids) {
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ',';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::cout << line;
}

struct TokenizeArgs {
  std::string model_dir, tokenizer_file, text, text_file, jsonl;
  bool ordinary = false;
};

inline int run_tokenize(const TokenizeArgs& args, bool has_text) {
  if (!has_text && args.text_file.empty() && args.jsonl.empty()) {
    throw RangeError("give --text, --text-file or --jsonl");
  }
  const Tokenizer tok = Tokenizer::from_file(find_tokenizer(args.model_dir, args.tokenizer_file));
  const auto mode = args.ordinary ? text::SpecialTokens::plain : text::SpecialTokens::recognize;
  if (!args.jsonl.empty()) {
    std::ifstream in(args.jsonl, std::ios::binary);
    if (!in) throw FormatError("cannot open '" + args.jsonl + "'");
    std::size_t line_number = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json row;
      try {
        row = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw FormatError(args.jsonl + ":" + std::to_string(line_number) + ": invalid JSON: " + e.what());
      }
      if (!row.is_object() || !row.contains("text") || !row["text"].is_string()) {
        throw FormatError(args.jsonl + ":" + std::to_string(line_number) + ": no \"text\" string");
      }
      print_ids(tok.encode(row["text"].get_ref<const std::string&>(), mode));
    }
    return 0;
  }
  print_ids(tok.encode(args.text_file.empty() ? args.text : read_file_bytes(args.text_file), mode));
  return 0;
}

struct GenerateArgs {
  std::string model_dir, tokenizer_file, prompt, instructions, reasoning = "medium";
  text::SamplingParams sampling;
  int max_tokens = 512, threads = 0;
  long long context = 0;
  bool show_analysis = false, raw = false, int8_dense = false;
};

/// A loaded model with its tokenizer, and how text maps onto it.
struct TextModel {
  Transformer<> model;
  Tokenizer tokenizer;
  bool raw = false;  // stream token text as is (see the file comment)

  std::int32_t vocab() const { return static_cast<std::int32_t>(model.dims().vocab); }
  /// Prompt ids the model can take.
  std::vector<std::int32_t> model_ids(std::vector<std::int32_t> ids) const {
    return raw ? text::fold_into_vocabulary(ids, vocab()) : ids;
  }
  /// Ids the sampler may choose: the model's rows that are tokens.
  std::int32_t sample_limit() const { return std::min(vocab(), tokenizer.vocab_size()); }
};

inline TextModel load_text_model(const GenerateArgs& args) {
  TextModel m{load_original_checkpoint(args.model_dir), Tokenizer::from_file(find_tokenizer(args.model_dir, args.tokenizer_file)),
              args.raw};
  if (args.int8_dense) report_dense_int8(quantize_dense_int8(m.model));
  // <|return|> must be a row of the model for the harmony format to work.
  const std::int32_t needed = m.tokenizer.special_token_id(harmony::kReturn);
  if (!m.raw && m.vocab() <= std::max(needed, m.tokenizer.special_token_id(harmony::kCall))) {
    m.raw = true;
    std::cerr << "note: the model's vocabulary (" << m.vocab() << " ids) lacks the harmony tokens; raw mode: "
              << "prompt ids are folded into it (id mod " << m.vocab() << ") and token text is streamed as is\n";
  }
  return m;
}

inline std::vector<harmony::Message> opening_messages(const GenerateArgs& args) {
  std::vector<harmony::Message> messages{harmony::Message::system(
      harmony::SystemContent{}.with_reasoning(harmony::effort_from_name(args.reasoning)).with_date(harmony::local_date()))};
  if (!args.instructions.empty()) {
    messages.push_back(harmony::Message::developer(harmony::DeveloperContent{}.with_instructions(args.instructions)));
  }
  return messages;
}

/// Streams one reply: the final channel to stdout, analysis and commentary
/// to stderr when asked, or (raw) every token's text to stdout.
class ReplyPrinter {
 public:
  ReplyPrinter(const TextModel& m, bool show_analysis)
      : model_(m), parser_(m.tokenizer, harmony::Role::assistant), show_analysis_(show_analysis) {}

  void operator()(std::int32_t token) {
    if (model_.raw) {
      std::cout << text::utf8::lossy(decoder_.push(model_.tokenizer.token_bytes(token))) << std::flush;
      return;
    }
    parser_.process(token);
    const std::string& delta = parser_.last_content_delta();
    if (delta.empty()) return;
    const harmony::Message& header = parser_.current();
    const bool is_final = header.channel == "final" || (!header.channel && !header.recipient);
    if (is_final) {
      std::cout << delta << std::flush;
      wrote_final_ = true;
    } else if (show_analysis_) {
      if (parser_.messages().size() != labelled_) {
        labelled_ = parser_.messages().size();
        std::cerr << "[" << header.channel.value_or("?")
                  << (header.recipient ? " to " + *header.recipient : std::string()) << "] ";
      }
      std::cerr << delta << std::flush;
      wrote_analysis_ = true;
    }
  }

  /// Ends the output lines; reports a tool call (no tools are offered).
  void finish(const text::GenerationResult& result) {
    if (model_.raw) {
      std::cout << text::utf8::lossy(decoder_.flush()) << "\n";
      return;
    }
    parser_.finish();
    if (wrote_analysis_) std::cerr << "\n";
    if (wrote_final_) std::cout << "\n";
    if (!wrote_final_) {
      std::cerr << "note: the reply has no final-channel text" << (parser_.problems().empty() ? "" : " (malformed output)")
                << (show_analysis_ ? "" : "; --show-analysis shows the other channels") << ", --raw every token\n";
    }
    if (result.reason == text::StopReason::stop_token && !parser_.messages().empty() &&
        parser_.end_tokens().back() == model_.tokenizer.special_token_id(harmony::kCall)) {
      const harmony::Message& call = parser_.messages().back();
      std::cerr << "note: the model called tool '" << call.recipient.value_or("?") << "' with " << call.text()
                << " (no tools are available here)\n";
    }
  }

  /// True when the KV cache holds a message that was never closed.
  bool message_open(const text::GenerationResult& result) const {
    return result.reason == text::StopReason::stop_token || parser_.in_message();
  }

 private:
  const TextModel& model_;
  harmony::StreamParser parser_;
  text::utf8::StreamDecoder decoder_;
  bool show_analysis_;
  bool wrote_final_ = false, wrote_analysis_ = false;
  std::size_t labelled_ = static_cast<std::size_t>(-1);
};

inline void report(const text::GenerationResult& r) {
  std::cerr << std::fixed << std::setprecision(2) << "[" << r.tokens.size() << " tokens in " << r.decode_seconds
            << " s, " << r.tokens_per_second() << " tokens/s; prompt " << r.prompt_tokens << " tokens in "
            << r.prefill_seconds << " s; stopped: " << text::stop_reason_name(r.reason) << "]\n";
}

inline text::GenerationOptions generation_options(const TextModel& m, int max_tokens, bool show_progress) {
  text::GenerationOptions options;
  options.max_tokens = max_tokens;
  options.sample_limit = m.sample_limit();
  if (show_progress) {
    options.prefill_chunk = 64;
    options.on_prefill = [](std::size_t done, std::size_t total) {
      if (total > 64) std::cerr << "\rprefill " << done << "/" << total << " tokens" << (done == total ? "\n" : "") << std::flush;
    };
  }
  return options;
}

inline int run_generate(const GenerateArgs& args) {
  if (args.threads > 0) set_num_threads(args.threads);
  const TextModel m = load_text_model(args);
  std::vector<harmony::Message> messages = opening_messages(args);
  messages.push_back(harmony::Message::user(args.prompt));
  const std::vector<std::int32_t> prompt = m.model_ids(harmony::render_for_completion(messages).tokens(m.tokenizer));
  const index_t context = args.context > 0 ? static_cast<index_t>(args.context)
                                           : static_cast<index_t>(prompt.size()) + args.max_tokens;
  Sequence seq = m.model.new_sequence(context);
  std::vector<std::int32_t> held;
  text::Sampler sampler(args.sampling);
  ReplyPrinter printer(m, args.show_analysis);
  const auto result = text::generate(m.model, seq, held, prompt, sampler, generation_options(m, args.max_tokens, true),
                                     [&](std::int32_t token) { printer(token); });
  printer.finish(result);
  report(result);
  return 0;
}

inline int run_chat(const GenerateArgs& args) {
  if (args.threads > 0) set_num_threads(args.threads);
  const TextModel m = load_text_model(args);
  const index_t context = args.context > 0 ? static_cast<index_t>(args.context) : 8192;
  Sequence seq = m.model.new_sequence(context);
  std::vector<std::int32_t> held;
  text::Sampler sampler(args.sampling);
  const std::int32_t end = m.tokenizer.special_token_id(harmony::kEnd);
  bool close_message = false;  // the cache ends inside an assistant message
  std::cerr << "chat: " << args.model_dir << " (context " << context
            << " tokens). An empty line is ignored, /reset starts over, /quit or end of input leaves.\n";
  for (std::string line;;) {
    std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line) || line == "/quit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      seq.clear();
      held.clear();
      close_message = false;
      std::cerr << "(new conversation)\n";
      continue;
    }
    std::vector<std::int32_t> prompt;
    if (held.empty()) {
      std::vector<harmony::Message> messages = opening_messages(args);
      messages.push_back(harmony::Message::user(line));
      prompt = harmony::render_for_completion(messages).tokens(m.tokenizer);
    } else {
      // The cache holds the conversation so far: close the last reply, add the user's turn.
      if (close_message) prompt.push_back(end);
      const std::vector<harmony::Message> turn{harmony::Message::user(line)};
      const auto rendered = harmony::render_for_completion(turn).tokens(m.tokenizer);
      prompt.insert(prompt.end(), rendered.begin(), rendered.end());
    }
    prompt = m.model_ids(std::move(prompt));
    if (seq.length() + static_cast<index_t>(prompt.size()) >= context) {
      std::cerr << "the conversation has reached the context limit of " << context
                << " tokens; /reset to start over (or raise --context)\n";
      continue;
    }
    ReplyPrinter printer(m, args.show_analysis);
    const auto result = text::generate(m.model, seq, held, prompt, sampler, generation_options(m, args.max_tokens, true),
                                       [&](std::int32_t token) { printer(token); });
    printer.finish(result);
    close_message = printer.message_open(result);
    report(result);
  }
  return 0;
}

inline void add_sampling_options(CLI::App* cmd, GenerateArgs& a) {
  cmd->add_option("--model", a.model_dir, "checkpoint directory (config.json + model.safetensors)")->required();
  cmd->add_option("--tokenizer", a.tokenizer_file, "tokenizer.json (default: in the model directory or its parent)");
  cmd->add_option("--reasoning", a.reasoning, "reasoning effort written in the system message")
      ->check(CLI::IsMember({"low", "medium", "high"}));
  cmd->add_option("--instructions", a.instructions, "developer instructions");
  cmd->add_option("--temperature", a.sampling.temperature, "sampling temperature; 0 is greedy (gpt-oss: 1)");
  cmd->add_option("--top-k", a.sampling.top_k, "sample among the k most likely tokens (0: all)");
  cmd->add_option("--top-p", a.sampling.top_p, "nucleus sampling: the fewest tokens reaching probability p");
  cmd->add_option("--min-p", a.sampling.min_p, "drop tokens less likely than min-p x the most likely");
  cmd->add_option("--repetition-penalty", a.sampling.repetition_penalty, "HF repetition penalty (1: off)");
  cmd->add_option("--seed", a.sampling.seed, "random seed (same seed, same output)");
  cmd->add_option("--max-tokens", a.max_tokens, "most tokens generated per reply");
  cmd->add_option("--context", a.context, "KV-cache context limit in tokens")
      ->check(CLI::Range(0LL, static_cast<long long>(std::numeric_limits<std::int32_t>::max())));
  cmd->add_option("--threads", a.threads, "worker threads (default 0: all cores)")->check(CLI::Range(0, 4096));
  cmd->add_flag("--int8-dense", a.int8_dense,
                "multiply by 8-bit copies of the attention projections and the unembedding (made at load)");
  cmd->add_flag("--show-analysis", a.show_analysis, "stream the analysis channel to stderr");
  cmd->add_flag("--raw", a.raw, "stream every token's text, without the harmony parser");
}

}  // namespace text_cli

/// Registers `tokenize`, `generate` and `chat`; the chosen one's work is put
/// into `action` after parsing.
inline void add_text_commands(CLI::App& app, std::function<int()>& action) {
  auto ta = std::make_shared<text_cli::TokenizeArgs>();
  auto* tokenize = app.add_subcommand("tokenize", "Print the token ids of text");
  auto* model = tokenize->add_option("--model", ta->model_dir, "checkpoint directory holding tokenizer.json");
  auto* file = tokenize->add_option("--tokenizer", ta->tokenizer_file, "tokenizer.json to use");
  model->excludes(file);
  auto* text = tokenize->add_option("--text", ta->text, "the text");
  auto* text_file = tokenize->add_option("--text-file", ta->text_file, "a file whose bytes are the text");
  auto* jsonl = tokenize->add_option("--jsonl", ta->jsonl, "JSON lines with a \"text\" field: one line of ids each");
  text->excludes(text_file)->excludes(jsonl);
  text_file->excludes(jsonl);
  tokenize->add_flag("--ordinary", ta->ordinary, "read special-token text such as <|end|> as ordinary text");
  tokenize->callback([ta, text, &action] {
    action = [ta, text] { return text_cli::run_tokenize(*ta, text->count() > 0); };
  });

  auto ga = std::make_shared<text_cli::GenerateArgs>();
  auto* generate = app.add_subcommand("generate", "Answer one prompt, streaming the final channel to stdout");
  text_cli::add_sampling_options(generate, *ga);
  generate->add_option("--prompt", ga->prompt, "the user's message")->required();
  generate->callback([ga, &action] { action = [ga] { return text_cli::run_generate(*ga); }; });

  auto ca = std::make_shared<text_cli::GenerateArgs>();
  auto* chat = app.add_subcommand("chat", "Chat on stdin, keeping the KV cache between turns");
  text_cli::add_sampling_options(chat, *ca);
  chat->callback([ca, &action] { action = [ca] { return text_cli::run_chat(*ca); }; });
}

}  // namespace gptoss::cli
