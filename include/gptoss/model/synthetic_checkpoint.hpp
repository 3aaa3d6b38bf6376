// Synthetic checkpoints: a checkpoint directory of any dims (the real
// gpt-oss-20b / -120b shapes included) filled with random weights, written
// tensor by tensor in fixed-size chunks, so a 13.8 GB gpt-oss-20b checkpoint
// is produced with a few MiB of memory. For load-time and memory
// measurements and for running real shapes without downloading weights.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gptoss/model/checkpoint.hpp"
#include "gptoss/model/random_weights.hpp"

namespace gptoss {


/// Writes a checkpoint of `dims` with random weights to `dir` in `layout`
/// (see write_checkpoint_files). Values are scaled like trained weights:
/// bf16 matrices uniform with variance 1/fan_in, norm scales near 1, biases
/// small; MXFP4 blocks uniform codes with scales for the same spread.
template <class Model = Transformer<>>
void write_synthetic_checkpoint(const ModelDims& dims, const std::filesystem::path& dir, CheckpointLayout layout,
                                int shards = 1, std::uint64_t seed = 1) {
  Model model(dims);
  detail::TensorPlanner planner(layout);
  model.visit_weights(model.weights(), planner);
  std::vector<io::TensorSpec> specs;
  for (const auto& t : planner.tensors) specs.push_back({t.name, t.dtype, t.shape});

  constexpr std::size_t kChunk = std::size_t{8} << 20;  // bytes generated at a time
  std::vector<std::byte> chunk(kChunk);
  write_checkpoint_files(dir, layout, dims, std::move(specs), shards,
                         [&](const io::TensorSpec& spec, io::SafetensorsStreamWriter& writer) {
    detail::SplitMix64 rng{seed ^ detail::name_hash(spec.name)};
    const std::uint64_t total = io::checked_bytes(spec);
    const bool is_scales = spec.name.ends_with("scales");
    const bool is_norm = spec.name.find("norm") != std::string::npos;
    const bool is_vector = spec.shape.size() == 1 || spec.name.ends_with("bias");
    const index_t fan_in = spec.shape.empty() ? 1 : spec.shape.back();
    // bf16 values: uniform in [-a, a) (+1 for norms); MXFP4 scale exponent
    // so uniform E2M1 codes (RMS ~2.93) have RMS ~ 1/sqrt(cols).
    const double a = is_norm ? 0.1 : is_vector ? 0.1 : std::sqrt(3.0 / static_cast<double>(fan_in));
    const int scale_base = 127 + static_cast<int>(std::lround(
                                     std::log2(1.0 / (2.93 * std::sqrt(32.0 * static_cast<double>(fan_in))))));
    for (std::uint64_t done = 0; done < total;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, total - done));
      auto* bytes = reinterpret_cast<std::uint8_t*>(chunk.data());
      if (spec.dtype == DType::BF16) {
        auto* values = reinterpret_cast<std::uint16_t*>(bytes);
        for (std::size_t i = 0; i < n / 2; ++i) {
          const double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53 * 2.0 - 1.0;
          values[i] = bf16::from_float(static_cast<float>((is_norm ? 1.0 : 0.0) + a * u)).bits;
        }
      } else if (is_scales) {
        for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<std::uint8_t>(scale_base + static_cast<int>(rng.next() % 3) - 1);
      } else {
        for (std::size_t i = 0; i < n; i += 8) {
          const std::uint64_t r = rng.next();
          std::memcpy(bytes + i, &r, std::min<std::size_t>(8, n - i));
        }
      }
      writer.write(std::span<const std::byte>(chunk.data(), n));
      done += n;
    }
  });
}

}  // namespace gptoss
