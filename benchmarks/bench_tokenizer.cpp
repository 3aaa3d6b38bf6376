// Tokenizer throughput on one core: encoding (MB/s of input text) and
// decoding a large text built by repeating the strings of
// tests/data/tokenizer/cases.jsonl, which mix English, code, numbers,
// whitespace, 20 scripts, emoji and random stress strings. A second corpus
// leaves out the random and very long stress rows, to show ordinary text.
// Every corpus is checked once before timing: each row encodes to its
// reference ids, and the whole corpus decodes back to itself.
//
// The data is found through the environment variable GPTOSS_TEST_DATA_DIR,
// the compile definition of that name, or tests/data of this source tree.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <source_location>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gptoss/text/tokenizer.hpp"

namespace {

using gptoss::text::SpecialTokens;
using gptoss::text::Tokenizer;

/// The first folder holding tokenizer/tokenizer.json among: the
/// environment variable GPTOSS_TEST_DATA_DIR, the compile definition of
/// that name, tests/data beside this source file, ./tests/data.
std::filesystem::path data_dir() {
  static const std::filesystem::path dir = [] {
    std::vector<std::filesystem::path> candidates;
    if (const char* env = std::getenv("GPTOSS_TEST_DATA_DIR")) candidates.emplace_back(env);
#ifdef GPTOSS_TEST_DATA_DIR
    candidates.emplace_back(GPTOSS_TEST_DATA_DIR);
#endif
    candidates.push_back(std::filesystem::path(std::source_location::current().file_name()).parent_path().parent_path() /
                         "tests" / "data");
    candidates.emplace_back("tests/data");
    for (const auto& c : candidates) {
      if (std::filesystem::is_regular_file(c / "tokenizer" / "tokenizer.json")) return c;
    }
    throw std::runtime_error("no tests/data/tokenizer/tokenizer.json found; set GPTOSS_TEST_DATA_DIR");
  }();
  return dir;
}

const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::from_file(data_dir() / "tokenizer" / "tokenizer.json");
  return tok;
}

struct Corpus {
  std::string text;
  std::size_t rows = 0;
};

/// The rows' texts joined by newlines and repeated to at least `bytes`;
/// each row is first checked against its reference ids.
Corpus build_corpus(bool include_stress_rows, std::size_t bytes) {
  std::ifstream in(data_dir() / "tokenizer" / "cases.jsonl");
  if (!in) throw std::runtime_error("cannot open " + (data_dir() / "tokenizer" / "cases.jsonl").string());
  Corpus corpus;
  std::string once;
  for (std::string line; std::getline(in, line);) {
    const auto row = nlohmann::json::parse(line);
    const std::string category = row.at("category").get<std::string>();
    if (!include_stress_rows && (category == "long" || category.starts_with("random"))) continue;
    const std::string text = row.at("text").get<std::string>();
    if (tokenizer().encode(text) != row.at("ids").get<std::vector<std::int32_t>>()) {
      throw std::runtime_error("row " + row.at("id").get<std::string>() + " does not encode to its reference ids");
    }
    once += text;
    once += '\n';
    ++corpus.rows;
  }
  while (corpus.text.size() < bytes) corpus.text += once;
  if (tokenizer().decode(tokenizer().encode(corpus.text)) != corpus.text) {
    throw std::runtime_error("the corpus does not decode back to itself");
  }
  return corpus;
}

const Corpus& mixed_corpus() {
  static const Corpus c = build_corpus(true, 4u << 20);
  return c;
}
const Corpus& ordinary_corpus() {
  static const Corpus c = build_corpus(false, 4u << 20);
  return c;
}

/// Runs `body`, turning a failure to load or check the data into a skipped
/// benchmark with the reason.
template <class Body>
void guarded(benchmark::State& state, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void encode(benchmark::State& state, const Corpus& corpus, SpecialTokens mode) {
  const Tokenizer& tok = tokenizer();
  std::size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = tok.encode(corpus.text, mode);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(corpus.text.size()));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens) * static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
  state.counters["bytes/token"] = static_cast<double>(corpus.text.size()) / static_cast<double>(tokens);
  state.SetLabel(std::to_string(corpus.rows) + " rows, " + std::to_string(corpus.text.size() >> 10) + " KiB");
}

void BM_EncodeMixed(benchmark::State& state) {
  guarded(state, [&] { encode(state, mixed_corpus(), SpecialTokens::recognize); });
}
void BM_EncodeMixedPlain(benchmark::State& state) {
  guarded(state, [&] { encode(state, mixed_corpus(), SpecialTokens::plain); });
}
void BM_EncodeOrdinaryText(benchmark::State& state) {
  guarded(state, [&] { encode(state, ordinary_corpus(), SpecialTokens::recognize); });
}

void BM_Decode(benchmark::State& state) {
  guarded(state, [&] {
    const Corpus& corpus = mixed_corpus();
    const auto ids = tokenizer().encode(corpus.text);
    for (auto _ : state) {
      const std::string text = tokenizer().decode(ids);
      benchmark::DoNotOptimize(text.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(corpus.text.size()));
  });
}

void BM_LoadTokenizerJson(benchmark::State& state) {
  guarded(state, [&] {
    const auto path = data_dir() / "tokenizer" / "tokenizer.json";
    for (auto _ : state) {
      const Tokenizer tok = Tokenizer::from_file(path);
      benchmark::DoNotOptimize(tok.vocab_size());
    }
  });
}

BENCHMARK(BM_EncodeMixed)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeMixedPlain)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeOrdinaryText)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoadTokenizerJson)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
