// libFuzzer target: the safetensors reader on arbitrary bytes. Every input
// must either parse (and then every tensor's bytes, views and float copies
// must be readable within bounds) or throw gptoss::FormatError; anything
// else (a crash, a sanitizer report, another exception) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "gptoss/core/error.hpp"
#include "gptoss/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gptoss;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto file = io::SafetensorsFile::from_bytes(bytes, "fuzz.safetensors");
    volatile std::uint64_t sum = 0;
    for (const auto& t : file.tensors()) {
      for (std::byte b : file.bytes(t.name)) sum = sum + static_cast<std::uint8_t>(b);
      if (t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16 || t.dtype == DType::F64) {
        for (float v : file.read_as_float(t.name)) sum = sum + (v == v);
      }
      if (t.dtype == DType::U8 && t.shape.size() == 2) {
        const auto v = file.view<std::uint8_t, 2>(t.name);
        sum = sum + static_cast<std::uint64_t>(v.size());
      }
    }
  } catch (const FormatError&) {
    // the expected outcome for malformed input
  }
  return 0;
}
