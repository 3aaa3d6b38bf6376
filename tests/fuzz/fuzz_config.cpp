// libFuzzer target: config.json parsing in both layouts on arbitrary bytes.
// Every input must give a valid ModelDims or throw gptoss::ConfigError (JSON
// syntax errors included); anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "gptoss/core/error.hpp"
#include "gptoss/io/config_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gptoss;
  const auto* text = reinterpret_cast<const char*>(data);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, text + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  for (int layout = 0; layout < 2; ++layout) {
    try {
      const ModelDims d = layout == 0 ? io::parse_original_config(j, "fuzz") : io::parse_hf_config(j, "fuzz");
      if (!d.valid()) __builtin_trap();  // a parsed config is always valid
    } catch (const ConfigError&) {
    }
  }
  return 0;
}
