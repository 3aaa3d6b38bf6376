// Random weights for any model built from gptoss layers: for tests (models
// of shapes no checkpoint has), examples and benchmarks of real shapes
// without a checkpoint. Values are scaled like a trained model's (matrices
// ~ N(0, 1/fan_in), norms ~ 1, MXFP4 scales chosen for the same spread), and
// each tensor's values depend only on the seed and the tensor's name.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/model/checkpoint_layout.hpp"

namespace gptoss {

/// Owns the memory behind randomly generated weight views.
class WeightArena {
 public:
  template <class T>
  std::span<T> allocate(std::size_t count) {
    chunks_.push_back(std::make_unique<std::byte[]>(count * sizeof(T) + alignof(std::max_align_t)));
    bytes_ += count * sizeof(T);
    return {reinterpret_cast<T*>(chunks_.back().get()), count};
  }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::unique_ptr<std::byte[]>> chunks_;
  std::size_t bytes_ = 0;
};

namespace detail {

/// Visitor that allocates and fills every weight view.
class RandomFiller {
 public:
  RandomFiller(WeightArena& arena, std::uint64_t seed) : arena_(arena), seed_(seed) {}

  template <std::size_t R>
  void operator()(const std::string& name, TensorView<const bf16, R>& view,
                  const std::array<index_t, R>& shape) {
    std::mt19937_64 rng(seed_for(name));
    index_t n = 1;
    for (auto e : shape) n *= e;
    auto data = arena_.allocate<bf16>(static_cast<std::size_t>(n));
    const bool is_norm = ends_with(name, ".scale");
    const bool is_bias = ends_with(name, "bias") || ends_with(name, "sinks");
    const double std = is_norm ? 0.1 : is_bias ? 0.1 : (R == 1 ? 1.0 : 1.0 / std::sqrt(static_cast<double>(shape[R - 1])));
    std::normal_distribution<double> normal(0.0, std);
    for (auto& v : data) v = bf16::from_float(static_cast<float>((is_norm ? 1.0 : 0.0) + normal(rng)));
    view = TensorView<const bf16, R>(data.data(), shape);
  }

  template <class T, std::size_t R>
    requires std::same_as<T, float>
  void operator()(const std::string& name, TensorView<const T, R>& view,
                  const std::array<index_t, R>& shape) {
    std::mt19937_64 rng(seed_for(name));
    index_t n = 1;
    for (auto e : shape) n *= e;
    auto data = arena_.allocate<float>(static_cast<std::size_t>(n));
    std::normal_distribution<double> normal(0.0, 1.0 / std::sqrt(static_cast<double>(shape[R - 1])));
    for (auto& v : data) v = static_cast<float>(normal(rng));
    view = TensorView<const T, R>(data.data(), shape);
  }

  template <class Format>
  void operator()(const std::string& name, std::vector<FP4TensorView<Format>>& experts,
                  const std::array<index_t, 3>& shape) {
    std::mt19937_64 rng(seed_for(name));
    const index_t per_expert_blocks = shape[1] * (shape[2] / Format::kBlockSize);
    auto blocks = arena_.allocate<std::uint8_t>(static_cast<std::size_t>(shape[0] * per_expert_blocks * Format::kBytesPerBlock));
    auto scales = arena_.allocate<std::uint8_t>(static_cast<std::size_t>(shape[0] * per_expert_blocks));
    // Uniform E2M1 codes have RMS ~2.93: pick the scale exponent so that
    // elements have RMS ~ 1/sqrt(cols), varying +-1 per block.
    const int base = static_cast<int>(std::lround(std::log2(1.0 / (2.93 * std::sqrt(static_cast<double>(shape[2]))))));
    std::uniform_int_distribution<int> byte(0, 255), jitter(-1, 1);
    for (auto& b : blocks) b = static_cast<std::uint8_t>(byte(rng));
    for (auto& s : scales) s = static_cast<std::uint8_t>(127 + base + jitter(rng));
    experts.clear();
    for (index_t e = 0; e < shape[0]; ++e) {
      experts.emplace_back(blocks.data() + e * per_expert_blocks * Format::kBytesPerBlock,
                           scales.data() + e * per_expert_blocks, shape[1], shape[2]);
    }
  }

  /// One random tensor, its rows shared out among the parts.
  template <class View, std::size_t N, std::size_t R>
  void operator()(const std::string& name, const RowSplit<View*, N>& split, const std::array<index_t, R>& shape) {
    View whole;
    (*this)(name, whole, shape);
    index_t row = 0;
    for (std::size_t i = 0; i < N; ++i) {
      *split.parts[i] = whole.slice(row, row + split.rows[i]);
      row += split.rows[i];
    }
  }

  template <class T>
  void operator()(const std::string& name, std::vector<MatrixView<const T>>& experts,
                  const std::array<index_t, 3>& shape) {
    TensorView<const T, 3> all;
    (*this)(name, all, shape);
    experts.clear();
    for (index_t e = 0; e < shape[0]; ++e) experts.push_back(all[e]);
  }

 private:
  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  /// FNV-1a of the name mixed with the seed: the same on every platform.
  std::uint64_t seed_for(const std::string& name) const {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return h ^ (seed_ * 0x9e3779b97f4a7c15ull);
  }

  WeightArena& arena_;
  std::uint64_t seed_;
};

}  // namespace detail

/// Fills every weight of `model` with random values; the arena is kept
/// alive by the model.
template <class Model>
void fill_random_weights(Model& model, std::uint64_t seed) {
  auto arena = std::make_shared<WeightArena>();
  detail::RandomFiller filler(*arena, seed);
  model.visit_weights(model.mutable_weights(), filler);
  model.keep_alive(arena);
}

}  // namespace gptoss
