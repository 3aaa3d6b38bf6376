// Where the tests find their bundled data (tests/data), and shortcuts to the
// golden reference files copied there from OpenAI's reference implementation.
#pragma once

#include <filesystem>
#include <string>

#include "gptoss/io/safetensors.hpp"

namespace gptoss::test {

inline std::filesystem::path data_dir() { return GPTOSS_TEST_DATA_DIR; }
inline std::filesystem::path golden_dir() { return data_dir() / "golden"; }

/// Opens tests/data/golden/layers/<name>.safetensors.
inline io::SafetensorsFile golden_layer(const std::string& name) {
  return io::SafetensorsFile(golden_dir() / "layers" / (name + ".safetensors"));
}

}  // namespace gptoss::test
