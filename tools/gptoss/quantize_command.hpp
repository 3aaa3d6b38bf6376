// gptoss CLI: `quantize`, FP4 post-training quantization of a checkpoint,
// with the error of every quantized tensor and (given reference tokens) of
// the logits against the original model.
//
//   gptoss quantize --model DIR --out DIR2 --format mxfp4|nvfp4
//                   [--modules experts|all] [--scale ocp|search]
//                   [--reference-tokens 1,2,3 | FILE.safetensors[:TENSOR]] [--report FILE.json]
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"
#include "model_commands.hpp"

namespace gptoss::cli {

struct QuantizeArgs {
  std::string model, out, format, modules = "experts", scale = "ocp", reference_tokens, report;
  int shards = 1;
};

/// Logits of the checkpoint in dir (either expert format) for tokens: (T, V).
inline Tensor<float, 2> checkpoint_logits(const std::string& dir, const std::vector<std::int32_t>& tokens) {
  return with_checkpoint_model(dir, [&](const auto& model) {
    check_token_ids(tokens, model.dims().vocab);
    return model.forward(std::span<const std::int32_t>(tokens));
  });
}

inline int run_quantize(const QuantizeArgs& a) {
  if (a.format != "mxfp4" && a.format != "nvfp4") {
    throw RangeError("--format must be 'mxfp4' or 'nvfp4', got '" + a.format + "'");
  }
  if (a.modules != "experts" && a.modules != "all") {
    throw RangeError("--modules must be 'experts' or 'all', got '" + a.modules + "'");
  }
  if (a.scale != "ocp" && a.scale != "search") throw RangeError("--scale must be 'ocp' or 'search', got '" + a.scale + "'");
  std::vector<std::int32_t> tokens;
  if (!a.reference_tokens.empty()) {
    tokens = a.reference_tokens.find(".safetensors") != std::string::npos ? read_token_file(a.reference_tokens)
                                                                         : parse_token_list(a.reference_tokens);
    if (tokens.empty()) throw RangeError("--reference-tokens: the token list is empty");
    // Before the (long) quantization, not after it.
    try {
      check_token_ids(tokens, inspect_checkpoint(a.model).dims.vocab);
    } catch (const RangeError& e) {
      throw RangeError(std::string("--reference-tokens: ") + e.what());
    }
  }
  QuantizeOptions options;
  options.format = a.format;
  options.modules = a.modules == "all" ? QuantModules::all : QuantModules::experts;
  options.scale = a.scale == "search" ? ScaleRule::search : ScaleRule::ocp;
  options.shards = a.shards;
  const QuantizeReport report = quantize_checkpoint(a.model, a.out, options);

  std::cout << "wrote " << a.out << ": " << a.format << ", modules " << a.modules << ", scale rule " << a.scale << "\n";
  char line[256];
  std::snprintf(line, sizeof(line), "%-34s %-18s %14s %12s\n", "tensor", "shape", "rel. Frobenius", "max abs");
  std::cout << line;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& t : report.tensors) {
    std::snprintf(line, sizeof(line), "%-34s %-18s %14.4e %12.4e%s\n", t.name.c_str(), shape_string(t.shape).c_str(),
                  t.rel_frobenius, t.max_abs, t.simulated ? "  (bf16, simulated)" : "");
    std::cout << line;
    tensors.push_back({{"name", t.name}, {"shape", t.shape}, {"rel_frobenius", t.rel_frobenius},
                       {"max_abs", t.max_abs}, {"simulated", t.simulated}});
  }
  nlohmann::ordered_json json{{"model", a.model}, {"out", a.out},       {"format", a.format},
                              {"modules", a.modules}, {"scale", a.scale}, {"tensors", tensors}};
  if (!tokens.empty()) {
    const Tensor<float, 2> ref = checkpoint_logits(a.model, tokens), got = checkpoint_logits(a.out, tokens);
    double max_abs = 0.0, max_ref = 0.0, err2 = 0.0, ref2 = 0.0;
    for (std::size_t i = 0; i < ref.storage().size(); ++i) {
      const double r = ref.storage()[i], d = static_cast<double>(got.storage()[i]) - r;
      max_abs = std::max(max_abs, std::isnan(d) ? INFINITY : std::fabs(d));
      max_ref = std::max(max_ref, std::fabs(r));
      err2 += d * d;
      ref2 += r * r;
    }
    const double relative = max_abs / std::max(1e-30, max_ref), rel_frob = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
    std::cout << "logits on " << tokens.size() << " tokens: max abs error " << max_abs << " (max |original| "
              << max_ref << ", relative " << relative << "), relative Frobenius " << rel_frob << "\n";
    json["logits"] = {{"tokens", tokens.size()}, {"max_abs_error", max_abs}, {"max_abs_original", max_ref},
                      {"relative", relative}, {"rel_frobenius", rel_frob}};
  }
  if (!a.report.empty()) {
    std::ofstream out(a.report);
    out << json.dump(2) << "\n";
    if (!out) throw Error("cannot write '" + a.report + "'");
  }
  return 0;
}

/// Registers `quantize`; its work is put into `action` after parsing.
inline void add_quantize_command(CLI::App& app, std::function<int()>& action) {
  auto a = std::make_shared<QuantizeArgs>();
  auto* q = app.add_subcommand("quantize", "Quantize a checkpoint's weights to MXFP4 or NVFP4 and report the error");
  q->add_option("--model", a->model, "checkpoint directory (either layout, MXFP4 or NVFP4 experts)")->required();
  q->add_option("--out", a->out, "output checkpoint directory (same layout as the input)")->required();
  q->add_option("--format", a->format, "mxfp4 or nvfp4")->required();
  q->add_option("--modules", a->modules,
                "experts (default): expert matrices, stored natively; all: also attention, embedding and "
                "unembedding, stored as quantize-dequantized bf16");
  q->add_option("--scale", a->scale, "block scale rule: ocp (default, the format's standard) or search (least squared error)");
  q->add_option("--shards", a->shards, "number of safetensors files written (default 1)");
  q->add_option("--reference-tokens", a->reference_tokens,
                "token ids (1,2,3 or FILE.safetensors[:TENSOR]): report the logit error against the original");
  q->add_option("--report", a->report, "also write the report as JSON to this file");
  q->callback([a, &action] { action = [a] { return run_quantize(*a); }; });
}

}  // namespace gptoss::cli
