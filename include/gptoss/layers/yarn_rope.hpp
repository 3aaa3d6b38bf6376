// YaRN rotary position embedding, as gpt-oss's reference computes it.
//
// inv_freq[i] = theta^(-2i/D) blended between interpolation (divided by the
// scaling factor s) and extrapolation by a linear ramp over the pair index i
// between the bounds low and high (not rounded):
//   low  = D/2 ln(L0 / (beta 2 pi)) / ln(theta),
//   high = D/2 ln(L0 / (alpha 2 pi)) / ln(theta),
//   mask = 1 - clamp((i - low) / (high - low), 0, 1),
//   inv_freq = inv_freq_interp (1 - mask) + inv_freq_extrap mask.
// cos and sin of position * inv_freq are multiplied by the concentration
// 0.1 ln(s) + 1. With s <= 1 this is plain RoPE (concentration 1).
// Angles are computed in float64 for any position; a table covers the first
// `table_positions` positions, later ones are computed on the fly. Tables are
// shared: every YaRNRope with the same parameters and table length (all
// layers of a model, and other models alike) reads one immutable table,
// built by the first and freed with the last.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/backend.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/kernels/fast/rope.hpp"

namespace gptoss {

/// cos and sin (times the concentration) of the first positions, (P, D/2) each.
struct RopeTable {
  Tensor<float, 2> cos;
  Tensor<float, 2> sin;
};

namespace detail {

/// The table for (params, positions): the live one if any holder of equal
/// parameters still has it, otherwise a new one made by build(). Thread-safe.
template <class Build>
std::shared_ptr<const RopeTable> shared_rope_table(const RopeParams& p, index_t positions, Build&& build) {
  using Key = std::tuple<int, double, double, double, double, double, bool, index_t>;
  static std::mutex mutex;
  static std::map<Key, std::weak_ptr<const RopeTable>> tables;
  const Key key{p.head_dim, p.theta, p.scaling_factor, p.initial_context, p.ntk_alpha, p.ntk_beta,
                p.truncate, positions};
  const std::lock_guard lock(mutex);
  if (auto live = tables[key].lock()) return live;
  std::erase_if(tables, [](const auto& entry) { return entry.second.expired(); });
  auto table = std::make_shared<RopeTable>();
  build(*table);
  tables[key] = table;
  return table;
}

}  // namespace detail

template <class Backend = cpu_reference>
class YaRNRope {
 public:
  static constexpr index_t kDefaultTablePositions = 4096;

  explicit YaRNRope(const RopeParams& params, index_t table_positions = kDefaultTablePositions)
      : params_(params), half_(params.head_dim / 2) {
    if (!params.valid()) {
      throw ConfigError("YaRNRope: invalid parameters (head_dim " +
                        std::to_string(params.head_dim) + ", low " + std::to_string(params.low()) +
                        ", high " + std::to_string(params.high()) +
                        "): need an even head_dim, theta > 1 and 0 < low < high < head_dim/2 - 1");
    }
    concentration_ = params.concentration();
    inv_freq_.resize(static_cast<std::size_t>(half_));
    const double d = params.head_dim;
    for (index_t i = 0; i < half_; ++i) {
      const double freq = std::pow(params.theta, 2.0 * static_cast<double>(i) / d);
      double inv = 1.0 / freq;
      if (params.scaling_factor > 1.0) {
        const double interpolation = 1.0 / (params.scaling_factor * freq);
        const double ramp = (static_cast<double>(i) - params.low()) / (params.high() - params.low());
        const double mask = 1.0 - std::clamp(ramp, 0.0, 1.0);
        inv = interpolation * (1.0 - mask) + inv * mask;
      }
      inv_freq_[static_cast<std::size_t>(i)] = inv;
    }
    table_positions = std::max<index_t>(table_positions, 0);
    table_ = detail::shared_rope_table(params, table_positions, [&](RopeTable& t) {
      t.cos = Tensor<float, 2>({table_positions, half_});
      t.sin = Tensor<float, 2>({table_positions, half_});
      for (index_t p = 0; p < table_positions; ++p) {
        compute(p, {&t.cos(p, 0), static_cast<std::size_t>(half_)},
                {&t.sin(p, 0), static_cast<std::size_t>(half_)});
      }
    });
  }

  const RopeParams& params() const noexcept { return params_; }
  index_t head_dim() const noexcept { return 2 * half_; }
  double concentration() const noexcept { return concentration_; }
  /// Inverse frequency of each rotary pair, (D/2).
  const std::vector<double>& inv_freq() const noexcept { return inv_freq_; }
  /// The cos/sin table of the first positions, shared with every YaRNRope of
  /// equal parameters and length.
  const std::shared_ptr<const RopeTable>& table() const noexcept { return table_; }

  /// cos (D/2) and sin (D/2) of one position, times the concentration.
  void cos_sin(index_t position, std::span<float> cos, std::span<float> sin) const {
    if (position < 0) throw RangeError("YaRNRope: negative position " + std::to_string(position));
    if (cos.size() != static_cast<std::size_t>(half_) || sin.size() != static_cast<std::size_t>(half_)) {
      throw ShapeError("YaRNRope::cos_sin: spans of " + std::to_string(cos.size()) + " and " +
                       std::to_string(sin.size()) + " floats; head_dim " + std::to_string(head_dim()) + " needs " +
                       std::to_string(half_) + " each");
    }
    if (position < table_->cos.extent(0)) {
      std::copy_n(&table_->cos(position, 0), half_, cos.begin());
      std::copy_n(&table_->sin(position, 0), half_, sin.begin());
    } else {
      compute(position, cos, sin);
    }
  }

  /// Rotates x (T, H, D) in place; row t sits at positions[t].
  void forward(TensorView<float, 3> x, VectorView<const index_t> positions) const {
    if (x.extent(2) != head_dim() || positions.extent(0) != x.extent(0)) {
      throw ShapeError("YaRNRope: input " + shape_string(x.shape()) + " with " +
                       std::to_string(positions.extent(0)) + " positions; expected (T, H, " +
                       std::to_string(head_dim()) + ") with T positions");
    }
    Tensor<float, 2> cos({x.extent(0), half_}), sin({x.extent(0), half_});
    for (index_t t = 0; t < x.extent(0); ++t) {
      cos_sin(positions[t], {&cos(t, 0), static_cast<std::size_t>(half_)},
              {&sin(t, 0), static_cast<std::size_t>(half_)});
    }
    kernels::apply_rotary(Backend{}, x, cos.view(), sin.view());
  }

  /// Rotates x (T, H, D) in place at positions first, first + 1, ...
  void forward(TensorView<float, 3> x, index_t first_position = 0) const {
    std::vector<index_t> positions(static_cast<std::size_t>(x.extent(0)));
    for (std::size_t t = 0; t < positions.size(); ++t) {
      positions[t] = first_position + static_cast<index_t>(t);
    }
    forward(x, VectorView<const index_t>(positions.data(), {x.extent(0)}));
  }

 private:
  void compute(index_t position, std::span<float> cos, std::span<float> sin) const {
    for (index_t i = 0; i < half_; ++i) {
      const double angle = static_cast<double>(position) * inv_freq_[static_cast<std::size_t>(i)];
      cos[static_cast<std::size_t>(i)] = static_cast<float>(std::cos(angle) * concentration_);
      sin[static_cast<std::size_t>(i)] = static_cast<float>(std::sin(angle) * concentration_);
    }
  }

  RopeParams params_;
  index_t half_;
  double concentration_ = 1.0;
  std::vector<double> inv_freq_;
  std::shared_ptr<const RopeTable> table_;  // (P, D/2) cos and sin
};

}  // namespace gptoss
