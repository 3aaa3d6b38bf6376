// gptoss CLI: the model subcommands (forward, info, synth, convert, compare).
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gptoss/gptoss.hpp"
#include "process_memory.hpp"

namespace gptoss::cli {

/// The --tolerance options' check: a finite number >= 0.
inline CLI::Validator tolerance_check() {
  return CLI::Validator(
      [](std::string& text) {
        double value = std::numeric_limits<double>::quiet_NaN();
        try {
          value = std::stod(text);
        } catch (const std::exception&) {
        }
        return std::isfinite(value) && value >= 0.0 ? std::string() : "must be a finite number >= 0, got '" + text + "'";
      },
      "TOLERANCE >= 0");
}

/// "1,2,3" -> {1, 2, 3}; anything else is a RangeError naming the option
/// and the item ("--tokens: 'x' is not a token id").
inline std::vector<std::int32_t> parse_int_list(const std::string& text, const std::string& option,
                                                const std::string& what) {
  std::vector<std::int32_t> values;
  if (text.find_first_not_of(" \t,") == std::string::npos) return values;  // no items at all
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) throw RangeError(option + ": an empty item in '" + text + "'");
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || value < INT32_MIN || value > INT32_MAX) {
      throw RangeError(option + ": '" + item + "' is not " + what);
    }
    values.push_back(static_cast<std::int32_t>(value));
  }
  return values;
}

inline std::vector<std::int32_t> parse_token_list(const std::string& text) {
  return parse_int_list(text, "--tokens", "a token id");
}

/// --dump-what "residual,router,attention" (any subset) into a request.
inline IntrospectionRequest parse_dump_request(const std::string& what, const std::string& layers,
                                               const std::string& heads) {
  IntrospectionRequest r{.residual = false, .routing = false, .attention = false, .layers = {}, .heads = {}};
  std::stringstream in(what);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "residual") r.residual = true;
    else if (item == "router") r.routing = true;
    else if (item == "attention") r.attention = true;
    else throw RangeError("--dump-what: '" + item + "' is not one of residual, router, attention");
  }
  if (!r.residual && !r.routing && !r.attention) {
    throw RangeError("--dump-what: '" + what + "' names nothing to dump; give any of residual, router, attention");
  }
  for (std::int32_t l : parse_int_list(layers, "--dump-layers", "a layer index")) r.layers.push_back(l);
  for (std::int32_t h : parse_int_list(heads, "--dump-heads", "a head index")) r.heads.push_back(h);
  return r;
}

/// "FILE" or "FILE:TENSOR" (default tensor "tokens"), an I32 or I64 tensor.
inline std::vector<std::int32_t> read_token_file(const std::string& spec) {
  std::string path = spec, tensor = "tokens";
  if (const auto colon = spec.rfind(':'); colon != std::string::npos && colon > 1) {
    path = spec.substr(0, colon);
    tensor = spec.substr(colon + 1);
  }
  const io::SafetensorsFile file(path);
  if (file.info(tensor).dtype == DType::I64) {
    std::vector<std::int32_t> out;
    for (std::int64_t v : file.read<std::int64_t>(tensor)) {
      if (v < INT32_MIN || v > INT32_MAX) throw RangeError("token id " + std::to_string(v) + " does not fit in 32 bits");
      out.push_back(static_cast<std::int32_t>(v));
    }
    return out;
  }
  return file.read<std::int32_t>(tensor);
}

struct Comparison {
  double max_error = 0.0, max_reference = 0.0, relative = 0.0;
};

inline Comparison compare(const std::vector<float>& a, const std::vector<float>& ref) {
  Comparison c;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    c.max_error = std::max(c.max_error, std::fabs(static_cast<double>(a[i]) - ref[i]));
    if (std::isnan(a[i]) != std::isnan(ref[i])) c.max_error = INFINITY;
    c.max_reference = std::max(c.max_reference, std::fabs(static_cast<double>(ref[i])));
  }
  c.relative = c.max_error / std::max(1.0, c.max_reference);
  return c;
}

inline std::string human(double n) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2);
  if (n >= 1e9) s << n / 1e9 << "B";
  else if (n >= 1e6) s << n / 1e6 << "M";
  else if (n >= 1e3) s << n / 1e3 << "K";
  else s << std::setprecision(0) << n;
  return s.str();
}

/// What `forward --dump` writes: the introspection files' folder and request.
struct DumpOptions {
  std::string dir;  // empty: no dump
  std::string what = "residual,router,attention", layers, heads;
};

template <class Model>
int forward_tokens(const Model& model, const std::string& model_dir, std::vector<std::int32_t> tokens,
                   const std::string& out_path, int prefill, long long max_context,
                   const std::string& reference, double tolerance, const DumpOptions& dump) {
  check_token_ids(tokens, model.dims().vocab);
  const index_t t_count = static_cast<index_t>(tokens.size());
  const index_t vocab = model.dims().vocab;
  if (prefill < 0 || prefill > t_count) {
    throw RangeError("--prefill " + std::to_string(prefill) + " is outside [0, " +
                     std::to_string(t_count) + "]");
  }
  if (max_context <= 0) max_context = std::max<index_t>(t_count, 1);

  std::optional<IntrospectionRecorder> recorder;
  if (!dump.dir.empty()) {
    recorder.emplace(parse_dump_request(dump.what, dump.layers, dump.heads), model.num_layers(),
                     model.dims().num_heads);
  }

  const auto start = std::chrono::steady_clock::now();
  Tensor<float, 2> logits({t_count, vocab});  // (T, V)
  Sequence seq = model.new_sequence(max_context);
  const std::span<const std::int32_t> all(tokens);
  index_t done = 0;
  const auto keep = [&](const Tensor<float, 2>& rows) {
    std::copy_n(rows.data(), rows.size(), logits.data() + done * vocab);
    done += rows.extent(0);
  };
  const auto run_all = [&](auto& observe) {
    if (prefill == 0) {
      keep(model.forward(seq, all, observe));
    } else {
      keep(model.forward(seq, all.first(static_cast<std::size_t>(prefill)), observe));
      while (done < t_count) keep(model.forward(seq, all.subspan(static_cast<std::size_t>(done), 1), observe));
    }
  };
  if (recorder) {
    run_all(*recorder);
  } else {
    NoObserver none;
    run_all(none);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string how = prefill ? " (prefill " + std::to_string(prefill) + ", then one token at a time)" : "";

  if (!out_path.empty()) {
    const std::vector<io::TensorRecord> records{
        io::TensorRecord::of<float>("logits", {t_count, vocab}, std::span<const float>(logits.storage()))};
    io::write_safetensors(out_path, records);
    std::cout << "wrote logits (" << t_count << ", " << vocab << ") to " << out_path << " in "
              << std::setprecision(3) << seconds << " s" << how << "\n";
  }
  if (recorder) {
    std::ostringstream token_text;
    for (std::size_t i = 0; i < tokens.size(); ++i) token_text << (i ? "," : "") << tokens[i];
    const auto files = recorder->write(dump.dir, {{"model", model_dir}, {"tokens", token_text.str()},
                                                  {"prefill", std::to_string(prefill)}});
    std::cout << "dumped";
    for (const auto& f : files) std::cout << " " << f.string();
    std::cout << ": " << t_count << " tokens" << how << "\n";
  }

  if (!reference.empty()) {
    const io::SafetensorsFile ref(reference);
    const std::vector<index_t> ours{logits.extent(0), logits.extent(1)};
    if (ref.info("logits").shape != ours) {
      throw ShapeError("reference '" + reference + "': logits " + shape_string(ref.info("logits").shape) +
                       ", ours " + shape_string(ours));
    }
    const auto expected = ref.read_as_float("logits");
    const Comparison c = compare(logits.storage(), expected);
    std::cout << "row 0, first logits:  ours";
    for (index_t i = 0; i < std::min<index_t>(5, vocab); ++i) std::cout << " " << std::setw(10) << logits(0, i);
    std::cout << "\n                 reference";
    for (index_t i = 0; i < std::min<index_t>(5, vocab); ++i) std::cout << " " << std::setw(10) << expected[static_cast<std::size_t>(i)];
    std::cout << "\nmax |ours - reference| = " << c.max_error << " (max |reference| = " << c.max_reference
              << "; relative " << c.relative << ", tolerance " << tolerance << "): "
              << (c.relative <= tolerance ? "MATCH" : "MISMATCH") << "\n";
    return c.relative <= tolerance ? 0 : 2;
  }
  return 0;
}

/// One line on stderr about the 8-bit copies just made.
inline void report_dense_int8(const DenseInt8Report& r) {
  std::cerr << "8-bit attention and unembedding: " << r.matrices << " matrices, " << r.int8_bytes / 1e6
            << " MB (bf16: " << r.bf16_bytes / 1e6 << " MB)\n";
}

/// Runs the checkpoint in model_dir (MXFP4 or NVFP4 experts, as its config
/// names) on the tokens and writes the logits.
inline int run_forward(const std::string& model_dir, const std::string& tokens_text,
                const std::string& tokens_file, const std::string& out_path, int prefill,
                long long max_context, const std::string& reference, double tolerance,
                const DumpOptions& dump = {}, bool int8_dense = false) {
  std::vector<std::int32_t> tokens =
      tokens_file.empty() ? parse_token_list(tokens_text) : read_token_file(tokens_file);
  if (tokens.empty()) throw RangeError("the token list is empty");
  return with_checkpoint_model(model_dir, [&](auto& model) {
    if (int8_dense) report_dense_int8(quantize_dense_int8(model));
    return forward_tokens(model, model_dir, tokens, out_path, prefill, max_context, reference, tolerance, dump);
  });
}

/// 3.27e9 -> "3.27 GB".
inline std::string human_bytes(double n) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2);
  if (n >= 1e9) s << n / 1e9 << " GB";
  else if (n >= 1e6) s << n / 1e6 << " MB";
  else if (n >= 1e3) s << n / 1e3 << " kB";
  else s << std::setprecision(0) << n << " B";
  return s.str();
}

/// Visitor that reads one byte per cache line of every weight (a checksum),
/// so the mapped pages become resident.
struct WeightToucher {
  std::uint64_t sum = 0;
  void add(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    for (std::size_t i = 0; i < n; i += 64) sum += b[i];
  }
  template <class T, std::size_t R>
  void operator()(const std::string&, const TensorView<const T, R>& v, const std::array<index_t, R>&) {
    add(v.data(), static_cast<std::size_t>(v.size()) * sizeof(T));
  }
  template <class P, std::size_t N, std::size_t R>
  void operator()(const std::string&, const RowSplit<P, N>& s, const std::array<index_t, R>&) {
    for (auto* part : s.parts) add(part->data(), static_cast<std::size_t>(part->size()) * sizeof(*part->data()));
  }
  template <class F>
  void operator()(const std::string&, const std::vector<FP4TensorView<F>>& experts, const std::array<index_t, 3>&) {
    for (const auto& w : experts) {
      add(w.blocks(), static_cast<std::size_t>(w.rows() * w.blocks_per_row() * F::kBytesPerBlock));
      add(w.scales(), static_cast<std::size_t>(w.rows() * w.blocks_per_row()));
    }
  }
  template <class T>
  void operator()(const std::string&, const std::vector<MatrixView<const T>>& experts, const std::array<index_t, 3>&) {
    for (const auto& w : experts) add(w.data(), static_cast<std::size_t>(w.size()) * sizeof(T));
  }
};

template <class Model>
std::uint64_t touch_weights(const Model& model) {
  WeightToucher toucher;
  model.visit_weights(model.weights(), toucher);
  return toucher.sum;
}

/// Prints config, counts and pattern. With dry_run, or when shard files are
/// absent, nothing is mapped: the plan from config.json and the index is shown.
inline int run_info(const std::string& model_dir, bool dry_run, bool touch) {
  Transformer<> model(ModelDims{});
  const CheckpointPlan plan = plan_checkpoint(model_dir, &model);
  const bool planned_only = dry_run || !plan.absent_files.empty();
  std::ostringstream load_report;
  if (!planned_only) {
    const ProcessMemory before = process_memory();
    const auto start = std::chrono::steady_clock::now();
    model = load_checkpoint(model_dir);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const ProcessMemory after = process_memory();
    load_report << "load: " << std::setprecision(3) << seconds << " s (files mapped, not read); resident "
                << human_bytes(static_cast<double>(after.rss)) << " (+" << human_bytes(static_cast<double>(after.rss - before.rss))
                << "), peak " << human_bytes(static_cast<double>(after.peak)) << "\n";
    if (touch) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::uint64_t sum = touch_weights(model);
      const double touch_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const ProcessMemory touched = process_memory();
      load_report << "touch: every weight page read in " << touch_s << " s (checksum " << sum % 1000 << "); resident "
                  << human_bytes(static_cast<double>(touched.rss)) << ", peak " << human_bytes(static_cast<double>(touched.peak))
                  << ", for " << human_bytes(static_cast<double>(plan.bytes())) << " of weights\n";
    }
  }
  const ModelDims& d = model.dims();
  const ParameterCount c = count_parameters(model);
  std::cout << "model: " << plan.info.dir.string() << " (" << layout_name(plan.info.layout) << " layout, "
            << plan.info.files.size() << " file" << (plan.info.files.size() == 1 ? "" : "s") << ")\n"
            << "  layers " << d.num_layers << ", hidden " << d.hidden << ", intermediate " << d.intermediate
            << ", vocab " << d.vocab << "\n"
            << "  attention: " << d.num_heads << " query heads, " << d.num_kv_heads << " KV heads of "
            << d.head_dim << ", sliding window " << d.sliding_window << "\n"
            << "  experts: " << d.num_experts << ", top-" << d.experts_per_token << ", swiglu limit "
            << d.swiglu_limit << "\n"
            << "  rope: theta " << d.rope_theta << ", YaRN factor " << d.rope_scaling_factor
            << ", initial context " << d.initial_context << ", ntk alpha " << d.rope_ntk_alpha
            << ", beta " << d.rope_ntk_beta << (d.rope_truncate ? ", bounds truncated" : "") << "\n"
            << "parameters: " << human(static_cast<double>(c.total)) << " total (" << c.total << "), "
            << human(static_cast<double>(c.active_per_token)) << " active per token (" << c.active_per_token
            << "), experts " << human(static_cast<double>(c.expert)) << "\n"
            << "bytes by dtype:";
  for (const auto& [dtype, bytes] : c.bytes_by_dtype) std::cout << " " << dtype << " " << human(static_cast<double>(bytes));
  std::cout << " (total " << human(static_cast<double>(c.bytes())) << ")\nlayer pattern:";
  for (int l = 0; l < d.num_layers; ++l) std::cout << (ModelDims::is_sliding_layer(l) ? " S" : " F");
  std::cout << "  (S: sliding window " << d.sliding_window << ", F: full attention)\n" << load_report.str();
  if (planned_only) {
    std::cout << "dry run: " << plan.tensors.size() << " tensors expected (" << plan.bytes() << " bytes); "
              << plan.missing.size() << " missing and " << plan.unexpected.size() << " unexpected in "
              << (plan.info.weight_map.empty() ? "the file" : "the shard index");
    if (!plan.absent_files.empty()) {
      std::cout << "; shard files not present:";
      for (const auto& f : plan.absent_files) std::cout << " " << f;
    }
    std::cout << "\n";
    for (const auto& m : plan.missing) std::cout << "  missing: " << m << "\n";
    for (const auto& u : plan.unexpected) std::cout << "  unexpected: " << u << "\n";
    return plan.missing.empty() && plan.unexpected.empty() ? 0 : 2;
  }
  return 0;
}

/// Rewrites a checkpoint in another layout (and number of shards).
inline int run_convert(const std::string& model_dir, const std::string& out_dir, const std::string& layout,
                       int shards) {
  if (layout != "original" && layout != "hf") throw RangeError("--layout must be 'original' or 'hf', got '" + layout + "'");
  with_checkpoint_model(model_dir, [&](const auto& model) {
    write_checkpoint(model, out_dir, layout == "hf" ? CheckpointLayout::hugging_face : CheckpointLayout::original,
                     shards);
  });
  std::cout << "wrote " << out_dir << " (" << (layout == "hf" ? "hugging_face" : "original") << " layout, "
            << shards << " file" << (shards == 1 ? "" : "s") << ")\n";
  return 0;
}

inline int run_compare(const std::string& a_path, const std::string& b_path, const std::vector<std::string>& names,
                double tolerance) {
  const io::SafetensorsFile a(a_path), b(b_path);
  std::vector<std::string> tensors = names;
  if (tensors.empty()) {
    for (const auto& t : a.tensors()) {
      if (b.contains(t.name) && (t.dtype == DType::F32 || t.dtype == DType::BF16 ||
                                 t.dtype == DType::F16 || t.dtype == DType::F64)) {
        tensors.push_back(t.name);
      }
    }
  }
  if (tensors.empty()) throw Error("no floating-point tensor is in both files");
  bool ok = true;
  for (const auto& name : tensors) {
    if (a.info(name).shape != b.info(name).shape) {
      throw ShapeError("tensor '" + name + "': shapes " + shape_string(a.info(name).shape) + " and " +
                       shape_string(b.info(name).shape) + " differ");
    }
    const Comparison c = compare(a.read_as_float(name), b.read_as_float(name));
    const bool match = c.relative <= tolerance;
    ok = ok && match;
    std::cout << name << ": max abs error " << c.max_error << ", relative to max(1, max|ref|) "
              << c.relative << (match ? "  ok" : "  MISMATCH") << "\n";
  }
  return ok ? 0 : 2;
}


/// Registers `forward`, `info` and `compare`; the chosen one's work is put
/// into `action` after parsing.
inline void add_model_commands(CLI::App& app, std::function<int()>& action) {
  struct ForwardArgs {
    std::string model_dir, tokens_text, tokens_file, out_path, reference;
    int prefill = 0, threads = 0;
    long long max_context = 0;
    double tolerance = 1e-4;
    DumpOptions dump;
    bool int8_dense = false;
  };
  auto fa = std::make_shared<ForwardArgs>();
  auto* forward = app.add_subcommand("forward", "Run the model on tokens and write the logits");
  forward->add_option("--model", fa->model_dir, "checkpoint directory (original or Hugging Face layout)")->required();
  auto* tok = forward->add_option("--tokens", fa->tokens_text, "comma-separated token ids");
  auto* tokf = forward->add_option("--tokens-file", fa->tokens_file,
                                   "token ids from a safetensors tensor: FILE[:TENSOR] (default tensor 'tokens')");
  tok->excludes(tokf);
  forward->add_option("--out", fa->out_path, "output safetensors file (tensor 'logits', F32 [T, vocab])");
  auto* dump = forward->add_option("--dump", fa->dump.dir,
                                   "write residual streams, routing and attention maps as safetensors into this "
                                   "folder (see docs/introspection.md)");
  forward->add_option("--dump-what", fa->dump.what, "any of residual,router,attention (default: all three)")->needs(dump);
  forward->add_option("--dump-layers", fa->dump.layers, "comma-separated layers to dump (default: all)")->needs(dump);
  forward->add_option("--dump-heads", fa->dump.heads, "comma-separated query heads for attention maps (default: all)")
      ->needs(dump);
  forward->add_option("--prefill", fa->prefill, "prefill N tokens, then feed the rest one at a time through the KV cache");
  forward->add_option("--max-context", fa->max_context, "KV-cache context limit (default: the token count)")
      ->check(CLI::Range(0LL, static_cast<long long>(std::numeric_limits<std::int32_t>::max())));
  forward->add_option("--reference", fa->reference, "compare the logits with tensor 'logits' of this file");
  forward->add_option("--tolerance", fa->tolerance, "allowed max error relative to max(1, max|reference|)")
      ->check(tolerance_check());
  forward->add_option("--threads", fa->threads, "worker threads (default 0: all cores)")->check(CLI::Range(0, 4096));
  forward->add_flag("--int8-dense", fa->int8_dense,
                    "multiply by 8-bit copies of the attention projections and the unembedding (made at load)");
  forward->callback([fa, tok, tokf, &action] {
    action = [fa, tok, tokf] {
      if (tok->count() == 0 && tokf->count() == 0) throw RangeError("give --tokens or --tokens-file");
      if (fa->threads > 0) set_num_threads(fa->threads);
      if (fa->out_path.empty() && fa->dump.dir.empty()) throw RangeError("give --out or --dump");
      return run_forward(fa->model_dir, fa->tokens_text, fa->tokens_file, fa->out_path, fa->prefill,
                         fa->max_context, fa->reference, fa->tolerance, fa->dump, fa->int8_dense);
    };
  });

  struct InfoArgs {
    std::string model;
    bool dry_run = false, touch = false;
  };
  auto ia = std::make_shared<InfoArgs>();
  auto* info = app.add_subcommand("info", "Print a checkpoint's config, parameter counts and layer pattern");
  info->add_option("--model", ia->model, "checkpoint directory (either layout, sharded or not)")->required();
  info->add_flag("--dry-run", ia->dry_run,
                 "plan from config.json and the shard index only (also when shard files are absent)");
  info->add_flag("--touch", ia->touch, "after loading, read every weight once and report resident memory");
  info->callback([ia, &action] { action = [ia] { return run_info(ia->model, ia->dry_run, ia->touch); }; });

  struct SynthArgs {
    std::string config = "gpt-oss-20b", out, layout = "hf";
    int shards = 3, layers = 0;
    std::uint64_t seed = 1;
  };
  auto sa = std::make_shared<SynthArgs>();
  auto* synth = app.add_subcommand("synth", "Write a checkpoint of real (or any) shapes with random weights, streamed to disk");
  synth->add_option("--config", sa->config, "gpt-oss-20b, gpt-oss-120b, or a config.json file");
  synth->add_option("--out", sa->out, "output directory")->required();
  synth->add_option("--layout", sa->layout, "hf (default) or original");
  synth->add_option("--shards", sa->shards, "number of safetensors files (default 3)");
  synth->add_option("--layers", sa->layers, "keep only the first N layers (default: all)")->check(CLI::Range(0, 4096));
  synth->add_option("--seed", sa->seed, "random seed");
  synth->callback([sa, &action] {
    action = [sa] {
      ModelDims dims = sa->config == "gpt-oss-20b"    ? GptOss20b::value
                       : sa->config == "gpt-oss-120b" ? GptOss120b::value
                                                      : io::read_model_config(sa->config);
      if (sa->layers > dims.num_layers) {
        throw RangeError("--layers " + std::to_string(sa->layers) + ": the config has " +
                         std::to_string(dims.num_layers) + " layers");
      }
      if (sa->layers > 0) dims.num_layers = sa->layers;
      if (sa->layout != "hf" && sa->layout != "original") throw RangeError("--layout must be 'hf' or 'original'");
      const auto start = std::chrono::steady_clock::now();
      write_synthetic_checkpoint(dims, sa->out, sa->layout == "hf" ? CheckpointLayout::hugging_face : CheckpointLayout::original,
                                 sa->shards, sa->seed);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cout << "wrote " << sa->out << " (" << dims.num_layers << " layers, " << sa->shards << " files) in "
                << std::setprecision(3) << seconds << " s\n";
      return 0;
    };
  });

  struct ConvertArgs {
    std::string model, out, layout = "hf";
    int shards = 1;
  };
  auto cv = std::make_shared<ConvertArgs>();
  auto* convert = app.add_subcommand("convert", "Rewrite a checkpoint in the original or Hugging Face layout");
  convert->add_option("--model", cv->model, "checkpoint directory")->required();
  convert->add_option("--out", cv->out, "output directory")->required();
  convert->add_option("--layout", cv->layout, "original or hf (default hf)");
  convert->add_option("--shards", cv->shards, "number of safetensors files (with an index when > 1)");
  convert->callback([cv, &action] { action = [cv] { return run_convert(cv->model, cv->out, cv->layout, cv->shards); }; });

  struct CompareArgs {
    std::string a, b;
    std::vector<std::string> tensors;
    double tolerance = 1e-4;
  };
  auto ca = std::make_shared<CompareArgs>();
  auto* cmp = app.add_subcommand("compare", "Compare tensors of two safetensors files");
  cmp->add_option("a", ca->a, "file to check")->required();
  cmp->add_option("b", ca->b, "reference file")->required();
  cmp->add_option("--tensor", ca->tensors, "tensor names (default: every float tensor in both)");
  cmp->add_option("--tolerance", ca->tolerance, "allowed max error relative to max(1, max|reference|)")
      ->check(tolerance_check());
  cmp->callback([ca, &action] { action = [ca] { return run_compare(ca->a, ca->b, ca->tensors, ca->tolerance); }; });
}

}  // namespace gptoss::cli
