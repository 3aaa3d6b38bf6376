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

}  // namespace gptoss::io
