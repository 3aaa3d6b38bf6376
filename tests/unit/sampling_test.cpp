// The sampler's properties (greedy is argmax, top-k 1 and a tiny top-p are
// greedy, sample frequencies follow the softmax, top-k / top-p / min-p keep
// exactly the tokens they should, HF's repetition-penalty arithmetic, seeds
// reproduce) and the generation loop on a small random model: stop tokens,
// token and context limits, callbacks, and agreement with a full forward.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "gptoss/text/generate.hpp"
#include "gptoss/text/sampler.hpp"
#include "support/matchers.hpp"

using namespace gptoss;
using gptoss::test::MessageHas;
using gptoss::text::GenerationOptions;
using gptoss::text::Sampler;
using gptoss::text::SamplingParams;
using gptoss::text::StopReason;

namespace {

std::vector<float> random_logits(std::mt19937& rng, std::size_t n, float scale = 3.0f) {
  std::vector<float> logits(n);
  for (auto& v : logits) v = scale * (static_cast<float>(rng() >> 8) * 0x1p-24f * 2.0f - 1.0f);
  return logits;
}

/// softmax(logits / temperature) in double.
std::vector<double> softmax(const std::vector<double>& logits, double temperature = 1.0) {
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - top) / temperature);
  for (auto& v : p) v /= sum;
  return p;
}

std::int32_t argmax(const std::vector<float>& v) {
  return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

const ModelDims kTinyDims = TinyMoE::value;

const Transformer<>& tiny_model() {
  static const Transformer<> model = [] {
    Transformer<> m(kTinyDims);
    fill_random_weights(m, 1234);
    return m;
  }();
  return model;
}

}  // namespace

TEST_CASE("Greedy sampling is the argmax, lowest id on ties", "[sampling]") {
  std::mt19937 rng(1);
  Sampler greedy({.temperature = 0.0});
  for (int trial = 0; trial < 100; ++trial) {
    const auto logits = random_logits(rng, 1 + rng() % 300);
    CHECK(greedy.sample(logits) == argmax(logits));
  }
  CHECK(greedy.sample(std::vector<float>{1.0f, 5.0f, 5.0f, -2.0f}) == 1);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(greedy.sample(std::vector<float>{-inf, -inf, 0.5f}) == 2);
}

TEST_CASE("top-k 1 and a tiny top-p sample the argmax at any temperature", "[sampling]") {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 50; ++trial) {
    const auto logits = random_logits(rng, 200, 4.0f);
    const double temperature = 0.2 + trial * 0.1;
    Sampler top1({.temperature = temperature, .top_k = 1, .seed = static_cast<std::uint64_t>(trial)});
    Sampler nucleus({.temperature = temperature, .top_p = 1e-9, .seed = static_cast<std::uint64_t>(trial)});
    for (int draw = 0; draw < 20; ++draw) {
      CHECK(top1.sample(logits) == argmax(logits));
      CHECK(nucleus.sample(logits) == argmax(logits));
    }
  }
}

TEST_CASE("Sample frequencies match softmax(logits / T)", "[sampling][statistics]") {
  const std::vector<float> logits{2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f, 1.5f, 0.25f};
  const std::vector<double> as_double(logits.begin(), logits.end());
  for (const double temperature : {0.5, 1.0, 2.0}) {
    INFO("temperature " << temperature);
    Sampler sampler({.temperature = temperature, .seed = 99});
    const auto expected = softmax(as_double, temperature);
    const auto reported = sampler.probabilities(logits);
    for (std::size_t i = 0; i < logits.size(); ++i) CHECK(reported[i] == Approx(expected[i]).epsilon(1e-12));
    constexpr int kDraws = 200'000;
    std::vector<int> counts(logits.size(), 0);
    for (int d = 0; d < kDraws; ++d) ++counts[static_cast<std::size_t>(sampler.sample(logits))];
    // Each frequency within 5 standard deviations of its probability
    // (a false failure has odds below 1e-5 for all 24 checks together).
    for (std::size_t i = 0; i < logits.size(); ++i) {
      const double p = expected[i], f = static_cast<double>(counts[i]) / kDraws;
      const double sigma = std::sqrt(p * (1.0 - p) / kDraws);
      INFO("token " << i << ": frequency " << f << ", probability " << p);
      CHECK(std::fabs(f - p) <= 5.0 * sigma + 1e-9);
    }
  }
}

TEST_CASE("top-k keeps the k most likely tokens", "[sampling]") {
  const std::vector<float> logits{0.1f, 3.0f, -1.0f, 2.0f, 2.5f, 0.0f};
  Sampler sampler({.temperature = 1.0, .top_k = 3, .seed = 5});
  const auto p = sampler.probabilities(logits);
  const auto full = softmax({3.0, 2.0, 2.5});
  CHECK(p[1] == Approx(full[0]));
  CHECK(p[3] == Approx(full[1]));
  CHECK(p[4] == Approx(full[2]));
  CHECK(p[0] == 0.0);
  CHECK(p[2] == 0.0);
  CHECK(p[5] == 0.0);
  for (int d = 0; d < 2000; ++d) {
    const auto t = sampler.sample(logits);
    CHECK((t == 1 || t == 3 || t == 4));
  }
}

TEST_CASE("top-p keeps the fewest most likely tokens reaching p", "[sampling]") {
  // Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (logits are their logs).
  const std::vector<double> probs{0.0625, 0.5, 0.125, 0.25, 0.0625};
  std::vector<float> logits;
  for (double q : probs) logits.push_back(static_cast<float>(std::log(q)));
  const auto support = [&](double top_p) {
    const auto p = Sampler({.top_p = top_p}).probabilities(logits);
    std::vector<int> ids;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (p[i] > 0.0) ids.push_back(static_cast<int>(i));
    }
    return ids;
  };
  CHECK(support(0.4) == std::vector<int>{1});
  CHECK(support(0.6) == std::vector<int>{1, 3});
  CHECK(support(0.7) == std::vector<int>{1, 3});
  CHECK(support(0.8) == std::vector<int>{1, 2, 3});
  CHECK(support(1.0).size() == 5);
  const auto p = Sampler({.top_p = 0.8}).probabilities(logits);
  CHECK(p[1] == Approx(0.5 / 0.875));
  // A large vocabulary (the head is sorted in growing steps) gives the same support as a full sort.
  std::mt19937 rng(8);
  const auto many = random_logits(rng, 50'000, 6.0f);
  const auto q = Sampler({.top_p = 0.9}).probabilities(many);
  auto all = softmax(std::vector<double>(many.begin(), many.end()));
  std::vector<std::size_t> order(all.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return all[a] > all[b]; });
  double before = 0.0;
  std::size_t kept = 0;
  while (before < 0.9) before += all[order[kept++]];
  CHECK(std::count_if(q.begin(), q.end(), [](double v) { return v > 0.0; }) == static_cast<long>(kept));
  for (std::size_t i = 0; i < kept; ++i) CHECK(q[order[i]] > 0.0);
}

TEST_CASE("min-p drops tokens less likely than min_p times the most likely", "[sampling]") {
  const std::vector<double> probs{0.4, 0.3, 0.15, 0.1, 0.05};
  std::vector<float> logits;
  for (double q : probs) logits.push_back(static_cast<float>(std::log(q)));
  Sampler sampler({.min_p = 0.3, .seed = 11});  // floor 0.12: keeps 0.4, 0.3, 0.15
  const auto p = sampler.probabilities(logits);
  CHECK(p[0] == Approx(0.4 / 0.85));
  CHECK(p[1] == Approx(0.3 / 0.85));
  CHECK(p[2] == Approx(0.15 / 0.85));
  CHECK(p[3] == 0.0);
  CHECK(p[4] == 0.0);
  for (int d = 0; d < 2000; ++d) CHECK(sampler.sample(logits) <= 2);
  CHECK(Sampler({.min_p = 1.0}).probabilities(logits)[0] == 1.0);
}

TEST_CASE("The repetition penalty divides positive and multiplies negative logits (HF)", "[sampling]") {
  const std::vector<float> logits{2.0f, -1.0f, 0.5f, 3.0f, -0.25f};
  const std::vector<std::int32_t> context{0, 1, 1, 1, 4, 0};  // repeats count once
  const double penalty = 1.5;
  Sampler sampler({.temperature = 1.0, .repetition_penalty = penalty});
  const auto p = sampler.probabilities(logits, context);
  const auto expected = softmax({2.0 / penalty, -1.0 * penalty, 0.5, 3.0, -0.25 * penalty});
  for (std::size_t i = 0; i < logits.size(); ++i) CHECK(p[i] == Approx(expected[i]).epsilon(1e-12));
  // Greedy sees the penalized logits too: 2.0 / 1.5 < 1.4.
  CHECK(Sampler({.temperature = 0.0, .repetition_penalty = 1.5}).sample(std::vector<float>{2.0f, 1.4f}, std::vector<std::int32_t>{0}) == 1);
  CHECK(Sampler({.temperature = 0.0}).sample(std::vector<float>{2.0f, 1.4f}, std::vector<std::int32_t>{0}) == 0);
  // Ids outside the logits are ignored.
  CHECK_NOTHROW(sampler.sample(logits, std::vector<std::int32_t>{-1, 99}));
}

TEST_CASE("The same seed gives the same samples", "[sampling]") {
  std::mt19937 rng(4);
  const auto logits = random_logits(rng, 1000);
  const SamplingParams params{.temperature = 0.9, .top_k = 100, .top_p = 0.95, .min_p = 0.01, .seed = 1234};
  Sampler a(params), b(params);
  SamplingParams other = params;
  other.seed = 1235;
  Sampler c(other);
  std::vector<std::int32_t> sa, sb, sc;
  for (int d = 0; d < 500; ++d) {
    sa.push_back(a.sample(logits));
    sb.push_back(b.sample(logits));
    sc.push_back(c.sample(logits));
  }
  CHECK(sa == sb);
  CHECK(sa != sc);
  a.reseed(1234);
  CHECK(a.sample(logits) == sa[0]);
}

TEST_CASE("Invalid sampling parameters and logits are rejected", "[sampling][errors]") {
  CHECK_THROWS_MATCHES(Sampler({.temperature = -1.0}), RangeError, MessageHas({"temperature"}));
  CHECK_THROWS_MATCHES(Sampler({.top_k = -2}), RangeError, MessageHas({"top_k"}));
  CHECK_THROWS_MATCHES(Sampler({.top_p = 0.0}), RangeError, MessageHas({"top_p"}));
  CHECK_THROWS_MATCHES(Sampler({.top_p = 1.5}), RangeError, MessageHas({"top_p"}));
  CHECK_THROWS_MATCHES(Sampler({.min_p = 2.0}), RangeError, MessageHas({"min_p"}));
  CHECK_THROWS_MATCHES(Sampler({.repetition_penalty = 0.0}), RangeError, MessageHas({"repetition_penalty"}));
  Sampler sampler;
  CHECK_THROWS_MATCHES(sampler.sample(std::vector<float>{1.0f, NAN}), RangeError, MessageHas({"logit 1 is NaN"}));
  const float inf = std::numeric_limits<float>::infinity();
  CHECK_THROWS_MATCHES(sampler.sample(std::vector<float>{-inf, -inf}), RangeError, MessageHas({"masked"}));
  // +inf: every path, sampled, greedy or asked for its distribution.
  CHECK_THROWS_MATCHES(sampler.sample(std::vector<float>{0.0f, inf, 1.0f}), RangeError, MessageHas({"logit 1 is +inf"}));
  CHECK_THROWS_MATCHES(sampler.probabilities(std::vector<float>{inf, 1.0f}), RangeError, MessageHas({"logit 0 is +inf"}));
  CHECK_THROWS_MATCHES(Sampler({.temperature = 0.0}).sample(std::vector<float>{1.0f, inf}), RangeError,
                       MessageHas({"+inf"}));
  CHECK_THROWS_AS(sampler.sample(std::vector<float>{}), RangeError);
}

TEST_CASE("Greedy generation equals the argmax of full forward passes", "[generation]") {
  const auto& model = tiny_model();
  const std::vector<std::int32_t> prompt{5, 17, 42, 3};
  Sampler greedy({.temperature = 0.0});
  std::vector<std::int32_t> streamed;
  const auto result = text::generate(model, prompt, greedy, {.max_tokens = 12, .stop_tokens = {}},
                                     [&](std::int32_t t) { streamed.push_back(t); });
  CHECK(result.reason == StopReason::max_tokens);
  CHECK(result.tokens.size() == 12);
  CHECK(streamed == result.tokens);
  CHECK(result.prompt_tokens == prompt.size());
  // Recompute each step from scratch, without the KV cache.
  std::vector<std::int32_t> all = prompt;
  for (const auto t : result.tokens) {
    const auto logits = model.forward(all);
    const index_t last = logits.extent(0) - 1;
    const std::vector<float> row(logits.data() + last * kTinyDims.vocab, logits.data() + (last + 1) * kTinyDims.vocab);
    CHECK(t == argmax(row));
    all.push_back(t);
  }
}

TEST_CASE("Generation stops on a stop token, which is not fed to the sequence", "[generation]") {
  const auto& model = tiny_model();
  const std::vector<std::int32_t> prompt{1, 2, 3};
  Sampler greedy({.temperature = 0.0});
  const auto free_run = text::generate(model, prompt, greedy, {.max_tokens = 6, .stop_tokens = {}});
  REQUIRE(free_run.tokens.size() == 6);
  const std::int32_t stop = free_run.tokens[2];
  const auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), stop) - free_run.tokens.begin();

  Sequence seq = model.new_sequence(64);
  std::vector<std::int32_t> context;
  GenerationOptions options{.max_tokens = 6, .stop_tokens = {stop}};
  const auto stopped = text::generate(model, seq, context, prompt, greedy, options, [](std::int32_t) { return true; });
  CHECK(stopped.reason == StopReason::stop_token);
  CHECK(stopped.tokens.size() == static_cast<std::size_t>(first + 1));
  CHECK(stopped.tokens.back() == stop);
  CHECK(seq.length() == static_cast<index_t>(prompt.size() + stopped.tokens.size() - 1));
  CHECK(context.size() == static_cast<std::size_t>(seq.length()));

  // The conversation continues in the same sequence: feed another token in place of the stop token.
  const std::vector<std::int32_t> next_turn{7};
  const auto continued = text::generate(model, seq, context, next_turn, greedy, {.max_tokens = 2, .stop_tokens = {}},
                                        [](std::int32_t) {});
  CHECK(continued.tokens.size() == 2);
  CHECK(context.size() == static_cast<std::size_t>(seq.length()));
}

TEST_CASE("The context limit is enforced: a prompt too long is an error, a full context stops", "[generation][errors]") {
  const auto& model = tiny_model();
  const std::vector<std::int32_t> prompt{1, 2, 3, 4, 5};
  Sampler greedy({.temperature = 0.0});
  Sequence small = model.new_sequence(4);
  std::vector<std::int32_t> context;
  CHECK_THROWS_MATCHES(text::generate(model, small, context, prompt, greedy, {}, [](std::int32_t) {}), RangeError,
                       MessageHas({"prompt of 5 tokens", "context", "4"}));

  Sequence seq = model.new_sequence(8);
  context.clear();
  const auto r = text::generate(model, seq, context, prompt, greedy, {.max_tokens = 100, .stop_tokens = {}},
                                [](std::int32_t) {});
  CHECK(r.reason == StopReason::context_full);
  CHECK(seq.length() == 8);
  CHECK(r.tokens.size() == 4);  // three fed to fill the context, and the one sampled after

  Sequence other = model.new_sequence(32);
  std::vector<std::int32_t> wrong_context{1};
  CHECK_THROWS_AS(text::generate(model, other, wrong_context, prompt, greedy, {}, [](std::int32_t) {}), Error);
  CHECK_THROWS_MATCHES(text::generate(model, std::vector<std::int32_t>{}, greedy), RangeError, MessageHas({"prompt is empty"}));
  CHECK_THROWS_MATCHES(text::generate(model, prompt, greedy, {.max_tokens = 0}), RangeError, MessageHas({"max_tokens"}));
}

TEST_CASE("Seeded generation is reproducible; callbacks stop it; sampling can be restricted", "[generation]") {
  const auto& model = tiny_model();
  const std::vector<std::int32_t> prompt{9, 8, 7};
  const SamplingParams params{.temperature = 1.0, .top_p = 0.95, .repetition_penalty = 1.1, .seed = 77};
  Sampler a(params), b(params);
  const auto ra = text::generate(model, prompt, a, {.max_tokens = 20, .stop_tokens = {}});
  const auto rb = text::generate(model, prompt, b, {.max_tokens = 20, .stop_tokens = {}});
  CHECK(ra.tokens == rb.tokens);

  int calls = 0;
  Sampler c(params);
  const auto stopped = text::generate(model, prompt, c, {.max_tokens = 20, .stop_tokens = {}},
                                      [&](std::int32_t) { return ++calls < 5; });
  CHECK(stopped.reason == StopReason::callback);
  CHECK(stopped.tokens.size() == 5);

  Sampler d(params);
  const auto restricted = text::generate(model, prompt, d, {.max_tokens = 30, .stop_tokens = {}, .sample_limit = 10});
  CHECK(std::all_of(restricted.tokens.begin(), restricted.tokens.end(), [](std::int32_t t) { return t >= 0 && t < 10; }));

  // Chunked prefill reaches the same state as a single prefill.
  std::vector<std::pair<std::size_t, std::size_t>> progress;
  GenerationOptions chunked{.max_tokens = 8, .stop_tokens = {}, .prefill_chunk = 2,
                            .on_prefill = [&](std::size_t done, std::size_t total) { progress.emplace_back(done, total); }};
  Sampler g1({.temperature = 0.0}), g2({.temperature = 0.0});
  const std::vector<std::int32_t> longer{1, 5, 9, 13, 17, 21, 25};
  const auto whole = text::generate(model, longer, g1, {.max_tokens = 8, .stop_tokens = {}});
  const auto pieces = text::generate(model, longer, g2, chunked, [](std::int32_t) {});
  CHECK(whole.tokens == pieces.tokens);
  CHECK(progress == std::vector<std::pair<std::size_t, std::size_t>>{{2, 7}, {4, 7}, {6, 7}, {7, 7}});
}

TEST_CASE("Token ids beyond a small model's vocabulary fold into it", "[generation]") {
  const std::vector<std::int32_t> ids{0, 63, 64, 200006, -1};
  CHECK(text::fold_into_vocabulary(ids, 64) == std::vector<std::int32_t>{0, 63, 0, 200006 % 64, 63});
  CHECK_THROWS_AS(text::fold_into_vocabulary(ids, 0), RangeError);
}
