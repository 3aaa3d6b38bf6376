// Choosing the next token from logits: greedy, or sampling with
// temperature, top-k, top-p (nucleus) and min-p filtering and HF's
// repetition penalty, from a seeded generator (the same seed gives the same
// tokens on every platform: no <random> distributions are used).
//
// The steps run in the order of HF transformers' logits processors:
//   repetition penalty -> temperature -> top-k -> top-p -> min-p -> sample.
// Temperature 0 is greedy: the largest (penalized) logit, lowest id on ties.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/error.hpp"

namespace gptoss::text {

struct SamplingParams {
  double temperature = 1.0;         ///< 0: greedy; otherwise logits are divided by it
  int top_k = 0;                    ///< keep the k most likely tokens (0: all)
  double top_p = 1.0;               ///< keep the fewest tokens whose probability reaches top_p (1: all)
  double min_p = 0.0;               ///< drop tokens less likely than min_p x the most likely (0: none)
  double repetition_penalty = 1.0;  ///< > 1 discourages tokens of the context (1: off)
  std::uint64_t seed = 0;

  /// Throws RangeError naming the first parameter out of range.
  void validate() const {
    const auto bad = [](const std::string& what) { throw RangeError("sampling: " + what); };
    if (!std::isfinite(temperature) || temperature < 0.0) bad("temperature " + std::to_string(temperature) + " must be >= 0");
    if (top_k < 0) bad("top_k " + std::to_string(top_k) + " must be >= 0");
    if (!(top_p > 0.0 && top_p <= 1.0)) bad("top_p " + std::to_string(top_p) + " must be in (0, 1]");
    if (!(min_p >= 0.0 && min_p <= 1.0)) bad("min_p " + std::to_string(min_p) + " must be in [0, 1]");
    if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0) {
      bad("repetition_penalty " + std::to_string(repetition_penalty) + " must be > 0");
    }
  }
  bool greedy() const noexcept { return temperature == 0.0; }
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params = {}) : params_(params), rng_(params.seed) { params_.validate(); }

  const SamplingParams& params() const noexcept { return params_; }
  void reseed(std::uint64_t seed) { rng_.seed(seed); }

  /// The next token for `logits` (V) given the tokens already in the
  /// context (for the repetition penalty). -inf masks a token; throws
  /// RangeError for empty logits, a NaN or +inf logit, or every token masked.
  std::int32_t sample(std::span<const float> logits, std::span<const std::int32_t> context = {}) {
    std::vector<double> scores = penalized(logits, context);
    if (params_.greedy()) return argmax(scores);
    const std::vector<Candidate> kept = filtered(scores);
    // One uniform draw in [0, 1) from 53 random bits.
    const double u = static_cast<double>(rng_() >> 11) * 0x1p-53;
    double mass = 0.0;
    for (const Candidate& c : kept) mass += c.weight;
    double target = u * mass, running = 0.0;
    for (const Candidate& c : kept) {
      running += c.weight;
      if (target < running) return c.id;
    }
    return kept.back().id;
  }

  /// The distribution sample() draws from (V probabilities; zero for the
  /// filtered tokens; one-hot on the argmax when greedy).
  std::vector<double> probabilities(std::span<const float> logits, std::span<const std::int32_t> context = {}) const {
    std::vector<double> scores = penalized(logits, context);
    std::vector<double> p(logits.size(), 0.0);
    if (params_.greedy()) {
      p[static_cast<std::size_t>(argmax(scores))] = 1.0;
      return p;
    }
    const std::vector<Candidate> kept = filtered(scores);
    double mass = 0.0;
    for (const Candidate& c : kept) mass += c.weight;
    for (const Candidate& c : kept) p[static_cast<std::size_t>(c.id)] = c.weight / mass;
    return p;
  }

 private:
  struct Candidate {
    std::int32_t id;
    double weight;  // unnormalized probability
  };

  /// Logits as doubles with the repetition penalty applied (HF: a token of
  /// the context has its logit divided by the penalty if positive,
  /// multiplied if negative; once, however often it occurs).
  std::vector<double> penalized(std::span<const float> logits, std::span<const std::int32_t> context) const {
    if (logits.empty()) throw RangeError("sampling: the logits are empty");
    std::vector<double> scores(logits.begin(), logits.end());
    for (std::size_t i = 0; i < scores.size(); ++i) {
      if (std::isnan(scores[i])) throw RangeError("sampling: logit " + std::to_string(i) + " is NaN");
      // -inf masks a token; +inf leaves no distribution (exp(inf - inf)).
      if (scores[i] == std::numeric_limits<double>::infinity()) {
        throw RangeError("sampling: logit " + std::to_string(i) + " is +inf");
      }
    }
    if (params_.repetition_penalty != 1.0) {
      std::vector<bool> seen(scores.size(), false);
      for (const std::int32_t id : context) {
        if (id < 0 || static_cast<std::size_t>(id) >= scores.size() || seen[static_cast<std::size_t>(id)]) continue;
        seen[static_cast<std::size_t>(id)] = true;
        double& s = scores[static_cast<std::size_t>(id)];
        s = s > 0.0 ? s / params_.repetition_penalty : s * params_.repetition_penalty;
      }
    }
    return scores;
  }

  static std::int32_t argmax(const std::vector<double>& scores) {
    const auto best = std::max_element(scores.begin(), scores.end());  // first of equal maxima
    if (*best == -std::numeric_limits<double>::infinity()) throw RangeError("sampling: every token is masked (-inf)");
    return static_cast<std::int32_t>(best - scores.begin());
  }

  /// The tokens left after temperature, top-k, top-p and min-p, with
  /// weights exp((logit - max) / T). Their order depends only on the
  /// logits (ids ascending, or by decreasing weight after top-p), so a seed
  /// gives the same tokens with any standard library.
  std::vector<Candidate> filtered(const std::vector<double>& scores) const {
    const double top = *std::max_element(scores.begin(), scores.end());
    if (top == -std::numeric_limits<double>::infinity()) throw RangeError("sampling: every token is masked (-inf)");
    std::vector<Candidate> c;
    c.reserve(scores.size());
    for (std::size_t i = 0; i < scores.size(); ++i) {
      const double w = std::exp((scores[i] - top) / params_.temperature);
      if (w > 0.0) c.push_back({static_cast<std::int32_t>(i), w});
    }
    const auto by_weight = [](const Candidate& a, const Candidate& b) {
      return a.weight != b.weight ? a.weight > b.weight : a.id < b.id;
    };
    // top-k (HF keeps every token tied with the k-th).
    if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < c.size()) {
      std::nth_element(c.begin(), c.begin() + (params_.top_k - 1), c.end(), by_weight);
      const double kth = c[static_cast<std::size_t>(params_.top_k - 1)].weight;
      c.erase(std::remove_if(c.begin(), c.end(), [&](const Candidate& x) { return x.weight < kth; }), c.end());
      std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
    }
    // top-p: keep a token while the mass before it is below top_p. Only
    // the head that can be kept is sorted (growing it until it suffices).
    if (params_.top_p < 1.0) {
      double total = 0.0;
      for (const Candidate& x : c) total += x.weight;
      const double wanted = params_.top_p * total;
      for (std::size_t head = std::min<std::size_t>(c.size(), 256);; head = std::min(c.size(), head * 4)) {
        std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(head), c.end(), by_weight);
        double before = 0.0;
        std::size_t keep = 0;
        while (keep < head && before < wanted) before += c[keep++].weight;
        if (before >= wanted || head == c.size()) {
          c.resize(std::max<std::size_t>(keep, 1));
          break;
        }
      }
    }
    // min-p: relative to the most likely token left.
    if (params_.min_p > 0.0) {
      double most = 0.0;
      for (const Candidate& x : c) most = std::max(most, x.weight);
      const double floor = params_.min_p * most;
      c.erase(std::remove_if(c.begin(), c.end(), [&](const Candidate& x) { return x.weight < floor; }), c.end());
    }
    return c;
  }

  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace gptoss::text
