// The figures `gptoss bench` reports for a whole model, on CPU or CUDA: the
// JSON fields both devices share and the decode lines of the text report.
#pragma once

#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gptoss::cli {

struct ModelBenchFigures {
  int prompt = 0, gen = 0, repeat = 0;
  double prefill_tokens_per_s = 0.0;
  std::vector<double> decode_rates;  // tokens/s of each run, in run order
  double decode_bytes = 0.0;         // bytes one decode step reads
  double bandwidth = 0.0;            // measured bytes/s

  double best_decode() const { return *std::max_element(decode_rates.begin(), decode_rates.end()); }
  double worst_decode() const { return *std::min_element(decode_rates.begin(), decode_rates.end()); }
  /// Decode tokens/s if every byte moved at the measured rate.
  double bound() const { return bandwidth / decode_bytes; }

  /// prompt_tokens ... decode_bandwidth_fraction, in this order.
  nlohmann::ordered_json json() const {
    return {{"prompt_tokens", prompt},
            {"gen_tokens", gen},
            {"prefill_tokens_per_s", prefill_tokens_per_s},
            {"decode_tokens_per_s", best_decode()},
            {"decode_tokens_per_s_runs", decode_rates},
            {"decode_bytes_per_token", decode_bytes},
            {"bandwidth_bytes_per_s", bandwidth},
            {"decode_bandwidth_fraction", best_decode() / bound()}};
  }

  /// The "decode:" and "decode reads" lines (fixed notation set by the caller).
  void print_decode(std::ostream& out) const {
    out << "decode: " << best_decode() << " tokens/s (best of " << repeat << "; worst " << worst_decode()
        << ")\n"
        << "decode reads " << decode_bytes / 1e9 << " GB per token; at the measured " << bandwidth / 1e9
        << " GB/s the bound is " << bound() << " tokens/s: " << 100.0 * best_decode() / bound() << "% of it\n";
  }
};

}  // namespace gptoss::cli
