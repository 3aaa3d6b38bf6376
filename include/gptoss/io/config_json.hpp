// Reading a gpt-oss config.json (the original checkpoint's key names) into
// ModelDims. Integers may be written as floats and floats as integers, as the
// released files do; anything missing, non-numeric, non-integral where an
// integer is meant, out of range or invalid as a whole is a ConfigError that
// names the file and the key.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/error.hpp"

namespace gptoss::io {

namespace detail {

inline double config_number(const nlohmann::json& j, const std::string& key, const std::string& where,
                            const double* fallback = nullptr) {
  if (!j.contains(key)) {
    if (fallback != nullptr) return *fallback;
    throw ConfigError(where + ": missing key '" + key + "'");
  }
  const auto& v = j.at(key);
  if (!v.is_number()) throw ConfigError(where + ": key '" + key + "' is not a number: " + v.dump());
  const double x = v.get<double>();
  if (!std::isfinite(x)) throw ConfigError(where + ": key '" + key + "' is not finite");
  return x;
}

inline int config_int(const nlohmann::json& j, const std::string& key, const std::string& where,
                      const int* fallback = nullptr) {
  const double fb = fallback ? *fallback : 0.0;
  const double x = config_number(j, key, where, fallback ? &fb : nullptr);
  if (x != std::floor(x) || x < std::numeric_limits<int>::min() ||
      x > std::numeric_limits<int>::max()) {
    throw ConfigError(where + ": key '" + key + "' must be an integer in int range, got " +
                      std::to_string(x));
  }
  return static_cast<int>(x);
}

}  // namespace detail

/// The expert weights' format a config.json names in
/// quantization_config.quant_method ("mxfp4" or "nvfp4"; either layout), or
/// "" when it has no quantization_config. Anything else is a ConfigError.
inline std::string parse_quant_method(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("quantization_config")) return "";
  const auto& q = j["quantization_config"];
  if (!q.is_object() || !q.contains("quant_method") || !q["quant_method"].is_string()) {
    throw ConfigError(where + ": quantization_config.quant_method is " +
                      (q.is_object() && q.contains("quant_method") ? q["quant_method"].dump() : std::string("missing")) +
                      ", not \"mxfp4\" or \"nvfp4\"");
  }
  const std::string method = q["quant_method"].get<std::string>();
  if (method != "mxfp4" && method != "nvfp4") {
    throw ConfigError(where + ": quantization_config.quant_method '" + method +
                      "' is not supported (MXFP4 and NVFP4 expert weights are)");
  }
  return method;
}

/// ModelDims from a parsed config object in the original gpt-oss layout
/// (num_hidden_layers, num_experts, experts_per_token, rope_scaling_factor,
/// ...). `where` names the source in error messages. The result is validated.
inline ModelDims parse_original_config(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw ConfigError(where + ": not a JSON object");
  using detail::config_int;
  using detail::config_number;
  ModelDims d;
  d.num_layers = config_int(j, "num_hidden_layers", where);
  d.num_experts = config_int(j, "num_experts", where);
  d.experts_per_token = config_int(j, "experts_per_token", where);
  d.vocab = config_int(j, "vocab_size", where);
  d.hidden = config_int(j, "hidden_size", where);
  d.intermediate = config_int(j, "intermediate_size", where);
  d.head_dim = config_int(j, "head_dim", where);
  d.num_heads = config_int(j, "num_attention_heads", where);
  d.num_kv_heads = config_int(j, "num_key_value_heads", where);
  d.sliding_window = config_int(j, "sliding_window", where);
  d.initial_context = config_int(j, "initial_context_length", where);
  d.rope_theta = config_number(j, "rope_theta", where);
  d.rope_scaling_factor = config_number(j, "rope_scaling_factor", where);
  d.rope_ntk_alpha = config_number(j, "rope_ntk_alpha", where);
  d.rope_ntk_beta = config_number(j, "rope_ntk_beta", where);
  d.swiglu_limit = static_cast<float>(config_number(j, "swiglu_limit", where));
  const double default_eps = 1e-5;
  d.rms_eps = static_cast<float>(config_number(j, "rms_norm_eps", where, &default_eps));
  if (!d.valid()) throw ConfigError(where + ": " + d.first_violation());
  return d;
}

/// ModelDims from a Hugging Face config.json object (model_type gpt_oss):
/// num_local_experts, num_experts_per_tok, rope_scaling or rope_parameters
/// (YaRN: factor, beta_fast, beta_slow, original_max_position_embeddings,
/// truncate — missing means true, as in transformers), layer_types (must be
/// the gpt-oss alternation: sliding on even layers) and quantization_config
/// (MXFP4 or NVFP4 experts, parse_quant_method). The result is validated.
inline ModelDims parse_hf_config(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw ConfigError(where + ": not a JSON object");
  using detail::config_int;
  using detail::config_number;
  ModelDims d;
  d.num_layers = config_int(j, "num_hidden_layers", where);
  d.num_experts = config_int(j, "num_local_experts", where);
  d.experts_per_token = j.contains("num_experts_per_tok") ? config_int(j, "num_experts_per_tok", where)
                                                          : config_int(j, "experts_per_token", where);
  d.vocab = config_int(j, "vocab_size", where);
  d.hidden = config_int(j, "hidden_size", where);
  d.intermediate = config_int(j, "intermediate_size", where);
  d.head_dim = config_int(j, "head_dim", where);
  d.num_heads = config_int(j, "num_attention_heads", where);
  d.num_kv_heads = config_int(j, "num_key_value_heads", where);
  d.sliding_window = config_int(j, "sliding_window", where);
  const double default_eps = 1e-5, default_limit = 7.0;
  d.rms_eps = static_cast<float>(config_number(j, "rms_norm_eps", where, &default_eps));
  d.swiglu_limit = static_cast<float>(config_number(j, "swiglu_limit", where, &default_limit));

  const char* rope_key = j.contains("rope_parameters") ? "rope_parameters"
                         : j.contains("rope_scaling")  ? "rope_scaling"
                                                       : nullptr;
  const nlohmann::json rope = rope_key && !j.at(rope_key).is_null() ? j.at(rope_key) : nlohmann::json::object();
  const std::string rope_where = where + (rope_key ? std::string(": ") + rope_key : std::string());
  if (!rope.is_object()) throw ConfigError(rope_where + " is not an object");
  if (j.contains("rope_theta")) {
    d.rope_theta = config_number(j, "rope_theta", where);
  } else {
    d.rope_theta = config_number(rope, "rope_theta", rope_where);
  }
  const std::string rope_type = rope.contains("rope_type") && rope["rope_type"].is_string()
                                    ? rope["rope_type"].get<std::string>()
                                    : (rope.contains("type") && rope["type"].is_string() ? rope["type"].get<std::string>() : "default");
  if (rope_type == "yarn") {
    d.rope_scaling_factor = config_number(rope, "factor", rope_where);
    d.rope_ntk_beta = config_number(rope, "beta_fast", rope_where);
    d.rope_ntk_alpha = config_number(rope, "beta_slow", rope_where);
    d.initial_context = config_int(rope, "original_max_position_embeddings", rope_where);
    if (rope.contains("truncate") && !rope["truncate"].is_boolean()) {
      throw ConfigError(rope_where + ": 'truncate' must be true or false");
    }
    d.rope_truncate = !rope.contains("truncate") || rope["truncate"].get<bool>();
  } else if (rope_type == "default") {
    d.rope_scaling_factor = 1.0;
  } else {
    throw ConfigError(rope_where + ": rope_type '" + rope_type + "' is not supported (yarn or default)");
  }

  if (j.contains("layer_types")) {
    const auto& types = j["layer_types"];
    if (!types.is_array() || types.size() != static_cast<std::size_t>(d.num_layers)) {
      throw ConfigError(where + ": layer_types must list " + std::to_string(d.num_layers) + " layers");
    }
    for (int l = 0; l < d.num_layers; ++l) {
      const std::string expected = ModelDims::is_sliding_layer(l) ? "sliding_attention" : "full_attention";
      if (!types[l].is_string() || types[l].get<std::string>() != expected) {
        throw ConfigError(where + ": layer_types[" + std::to_string(l) + "] is " + types[l].dump() +
                          "; this model type expects '" + expected + "' (even layers slide)");
      }
    }
  }
  parse_quant_method(j, where);
  if (!d.valid()) throw ConfigError(where + ": " + d.first_violation());
  return d;
}

/// Reads and parses a JSON file; ConfigError naming the file on failure.
inline nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot open '" + path.string() + "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError("'" + path.string() + "' is not valid JSON: " + e.what());
  }
}

/// ModelDims from an original-layout config.json file.
inline ModelDims read_original_config(const std::filesystem::path& path) {
  return parse_original_config(read_json_file(path), "'" + path.string() + "'");
}

/// Whether a parsed config.json is in the Hugging Face layout (it has
/// num_local_experts or model_type) rather than the original one.
inline bool is_hf_config(const nlohmann::json& j) {
  return j.is_object() && (j.contains("num_local_experts") || j.contains("model_type"));
}

/// ModelDims from a config.json file in either layout (is_hf_config).
inline ModelDims read_model_config(const std::filesystem::path& path) {
  const nlohmann::json j = read_json_file(path);
  const std::string where = "'" + path.string() + "'";
  return is_hf_config(j) ? parse_hf_config(j, where) : parse_original_config(j, where);
}

}  // namespace gptoss::io
