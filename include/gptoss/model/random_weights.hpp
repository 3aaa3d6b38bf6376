// Random weights for any model built from gptoss layers: for tests (models
// of shapes no checkpoint has), examples and benchmarks of real shapes
// without a checkpoint. Values are scaled like a trained model's (matrices
// ~ N(0, 1/fan_in), norms ~ 1, MXFP4 scales chosen for the same spread), and
// each tensor's values depend only on the seed and the tensor's name. The
// 13.8 GB of gpt-oss-20b are generated on all cores into huge-page buffers
// (first touching 4 KiB pages dominated: about 43 s on the 2-core test
// machine, against about 11 s with 2 MiB pages).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/model/checkpoint_layout.hpp"

namespace gptoss {

/// Owns the memory behind randomly generated weight views.
class WeightArena {
 public:
  /// Uninitialized storage for count values (every caller fills all of
  /// them: the pages are first touched by the parallel fill, not by zeroing).
  /// Large tensors are 2 MiB-aligned and advised for huge pages
  /// (core/huge_pages.hpp): decode streams them faster.
  template <class T>
  std::span<T> allocate(std::size_t count) {
    chunks_.push_back(allocate_large_bytes(count * sizeof(T)));
    bytes_ += count * sizeof(T);
    return {reinterpret_cast<T*>(chunks_.back().get()), count};
  }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::vector<LargeBuffer> chunks_;
  std::size_t bytes_ = 0;
};

namespace detail {

/// splitmix64: a fast, well-mixed 64-bit generator.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0; }
  /// Approximately standard normal (sum of four uniforms, variance 1).
  double normal() noexcept { return (uniform() + uniform() + uniform() + uniform()) * 0.8660254037844386; }
};

/// FNV-1a of a name: the same on every platform.
inline std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/// Calls fill(rng, begin, end) over [0, n) in fixed chunks, on all cores.
/// Chunk c's generator is seeded from (seed, c), so the values do not depend
/// on the number of threads.
template <class Fill>
void fill_in_chunks(std::size_t n, std::uint64_t seed, Fill&& fill) {
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  std::atomic<std::size_t> next{0};
  const auto work = [&] {
    for (std::size_t c; (c = next.fetch_add(1)) < chunks;) {
      SplitMix64 rng{seed ^ (c * 0xd1b54a32d192ed03ull)};
      fill(rng, c * kChunk, std::min(n, (c + 1) * kChunk));
    }
  };
  const unsigned threads = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), chunks);
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

/// Visitor that allocates and fills every weight view.
class RandomFiller {
 public:
  RandomFiller(WeightArena& arena, std::uint64_t seed) : arena_(arena), seed_(seed) {}

  template <std::size_t R>
  void operator()(const std::string& name, TensorView<const bf16, R>& view,
                  const std::array<index_t, R>& shape) {
    const std::size_t n = count(shape);
    auto data = arena_.allocate<bf16>(n);
    const bool is_norm = ends_with(name, ".scale");
    const bool is_bias = ends_with(name, "bias") || ends_with(name, "sinks");
    const double std = is_norm || is_bias ? 0.1 : (R == 1 ? 1.0 : 1.0 / std::sqrt(static_cast<double>(shape[R - 1])));
    const double mean = is_norm ? 1.0 : 0.0;
    fill_in_chunks(n, seed_for(name), [&](SplitMix64& rng, std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) data[i] = bf16::from_float(static_cast<float>(mean + std * rng.normal()));
    });
    view = TensorView<const bf16, R>(data.data(), shape);
  }

  template <class T, std::size_t R>
    requires std::same_as<T, float>
  void operator()(const std::string& name, TensorView<const T, R>& view,
                  const std::array<index_t, R>& shape) {
    const std::size_t n = count(shape);
    auto data = arena_.allocate<float>(n);
    const double std = 1.0 / std::sqrt(static_cast<double>(shape[R - 1]));
    fill_in_chunks(n, seed_for(name), [&](SplitMix64& rng, std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) data[i] = static_cast<float>(std * rng.normal());
    });
    view = TensorView<const T, R>(data.data(), shape);
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

  template <class Format>
  void operator()(const std::string& name, std::vector<FP4TensorView<Format>>& experts,
                  const std::array<index_t, 3>& shape) {
    const index_t per_expert_blocks = shape[1] * (shape[2] / Format::kBlockSize);
    const auto nblocks = static_cast<std::size_t>(shape[0] * per_expert_blocks);
    auto blocks = arena_.allocate<std::uint8_t>(nblocks * Format::kBytesPerBlock);
    auto scales = arena_.allocate<std::uint8_t>(nblocks);
    // Uniform E2M1 codes have RMS ~2.93: pick the scale exponent so that
    // elements have RMS ~ 1/sqrt(cols), varying +-1 per block.
    const int base = 127 + static_cast<int>(std::lround(std::log2(1.0 / (2.93 * std::sqrt(static_cast<double>(shape[2]))))));
    fill_in_chunks(blocks.size() / 8, seed_for(name + ".blocks"), [&](SplitMix64& rng, std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) {
        const std::uint64_t r = rng.next();
        std::memcpy(blocks.data() + 8 * i, &r, 8);
      }
    });
    // NVFP4: E4M3 scale codes 0x37..0x39 (0.9375..1.125) and the power of
    // two as the global scale.
    const int scale_base = Format::kHasGlobalScale ? 0x38 : base;
    const float global = Format::kHasGlobalScale ? std::ldexp(1.0f, base - 127) : 1.0f;
    fill_in_chunks(nblocks, seed_for(name + ".scales"), [&](SplitMix64& rng, std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) scales[i] = static_cast<std::uint8_t>(scale_base + static_cast<int>(rng.next() % 3) - 1);
    });
    experts.clear();
    for (index_t e = 0; e < shape[0]; ++e) {
      experts.emplace_back(blocks.data() + e * per_expert_blocks * Format::kBytesPerBlock,
                           scales.data() + e * per_expert_blocks, shape[1], shape[2], global);
    }
  }

  /// One MXFP4 matrix (a dense layer's), drawn as one expert of a stack.
  template <class Format>
  void operator()(const std::string& name, FP4TensorView<Format>& matrix, const std::array<index_t, 2>& shape) {
    std::vector<FP4TensorView<Format>> one;
    (*this)(name, one, std::array{index_t{1}, shape[0], shape[1]});
    matrix = one.front();
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
  template <std::size_t R>
  static std::size_t count(const std::array<index_t, R>& shape) {
    index_t n = 1;
    for (auto e : shape) n *= e;
    return static_cast<std::size_t>(n);
  }
  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  std::uint64_t seed_for(const std::string& name) const { return name_hash(name) ^ (seed_ * 0x9e3779b97f4a7c15ull); }

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
