// Seeded random test data: float / bf16 tensors, MXFP4 matrices with their
// exact values, and owning storage for attention and MoE weights, so a test
// can build AttentionWeights / MoEWeights from random data and recompute the
// layer independently in float64.
//
// Values come from raw std::mt19937 output (never <random>'s distributions,
// whose results differ between standard libraries), so a seed gives the same
// data everywhere.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/layers/moe_block.hpp"
#include "gptoss/layers/sliding_sink_attention.hpp"

namespace gptoss::test {

using Rng = std::mt19937;

/// Uniform in [lo, hi), from 24 random bits.
inline float uniform(Rng& rng, float lo, float hi) {
  const double u = static_cast<double>(rng() >> 8) * 0x1p-24;
  return static_cast<float>(lo + (static_cast<double>(hi) - lo) * u);
}

/// Uniform integer in [lo, hi] (hi - lo < 2^32).
inline index_t uniform_int(Rng& rng, index_t lo, index_t hi) {
  return lo + static_cast<index_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
}

/// n token ids uniform in [0, vocab).
inline std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, unsigned seed) {
  Rng rng(seed);
  std::vector<std::int32_t> tokens(n);
  for (auto& t : tokens) t = static_cast<std::int32_t>(uniform_int(rng, 0, vocab - 1));
  return tokens;
}

/// A (Rank-dimensional) float tensor, uniform in [-amplitude, amplitude).
template <std::size_t Rank>
Tensor<float, Rank> random_tensor(Rng& rng, std::array<index_t, Rank> shape, float amplitude = 1.0f) {
  Tensor<float, Rank> t(shape);
  for (float& v : t.storage()) v = uniform(rng, -amplitude, amplitude);
  return t;
}

/// A (rows, cols) float matrix, uniform in [-amplitude, amplitude).
inline Tensor<float, 2> random_matrix(Rng& rng, index_t rows, index_t cols, float amplitude = 1.0f) {
  return random_tensor<2>(rng, {rows, cols}, amplitude);
}

/// A bf16 tensor, uniform in [lo, hi) rounded to bf16.
template <std::size_t Rank>
Tensor<bf16, Rank> random_bf16(Rng& rng, std::array<index_t, Rank> shape, float lo, float hi) {
  Tensor<bf16, Rank> t(shape);
  for (bf16& v : t.storage()) v = bf16::from_float(uniform(rng, lo, hi));
  return t;
}

/// Every element widened to double, in storage order.
template <class T, std::size_t Rank>
std::vector<double> to_double(const Tensor<T, Rank>& t) {
  std::vector<double> out;
  out.reserve(t.storage().size());
  for (const T& v : t.storage()) {
    if constexpr (std::is_same_v<T, bf16>) {
      out.push_back(static_cast<double>(v.to_float()));
    } else {
      out.push_back(static_cast<double>(v));
    }
  }
  return out;
}

/// The value of E2M1 code c (0..15) times 2^(scale - 127), decoded from the
/// format's definition (not with the library's table).
inline double mxfp4_value(std::uint8_t code, std::uint8_t scale) {
  static constexpr double kMagnitude[8] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};
  const double m = kMagnitude[code & 7];
  return std::ldexp((code & 8) ? -m : m, static_cast<int>(scale) - 127);
}

namespace detail {
/// Element type of a dense matrix view; unused (uint8_t) for MXFP4.
template <class M>
struct stack_element { using type = std::uint8_t; };
template <class T>
struct stack_element<MatrixView<const T>> { using type = T; };
}  // namespace detail

/// `count` random (rows, cols) matrices stored as M: MatrixView<const float>,
/// MatrixView<const bf16> or FP4TensorView<MXFP4Checkpoint> (checkpoint
/// layout: blocks (count, rows, cols/32, 16), scales (count, rows, cols/32),
/// element 2j in the low nibble of byte j). values() holds each element's
/// exact value in float64, (count, rows, cols).
template <class M>
class RandomMatrixStack {
 public:
  static constexpr bool kFP4 = std::is_same_v<M, FP4TensorView<MXFP4Checkpoint>>;

  RandomMatrixStack() = default;

  /// Elements of magnitude up to about `amplitude` (FP4: random codes with
  /// per-block scales 2^e, e in [e_max - 1, e_max], 6 * 2^e_max <= amplitude).
  RandomMatrixStack(Rng& rng, index_t count, index_t rows, index_t cols, float amplitude)
      : count_(count), rows_(rows), cols_(cols),
        values_(static_cast<std::size_t>(count * rows * cols)) {
    const std::size_t n = values_.size();
    if constexpr (kFP4) {
      const index_t groups = count * rows * (cols / 32);
      blocks_.resize(static_cast<std::size_t>(groups * 16));
      scales_.resize(static_cast<std::size_t>(groups));
      const int e_max = static_cast<int>(std::floor(std::log2(amplitude / 6.0f)));
      for (auto& s : scales_) s = static_cast<std::uint8_t>(127 + e_max - uniform_int(rng, 0, 1));
      for (auto& b : blocks_) b = static_cast<std::uint8_t>(rng() & 0xff);
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t block = i / 32, j = i % 32;
        const std::uint8_t byte = blocks_[block * 16 + j / 2];
        const std::uint8_t code = (j % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
        values_[i] = mxfp4_value(code, scales_[block]);
      }
    } else {
      using T = typename detail::stack_element<M>::type;
      elements_.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const float v = uniform(rng, -amplitude, amplitude);
        if constexpr (std::is_same_v<T, bf16>) {
          elements_[i] = bf16::from_float(v);
          values_[i] = elements_[i].to_float();
        } else {
          elements_[i] = v;
          values_[i] = v;
        }
      }
    }
  }

  index_t count() const noexcept { return count_; }
  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  const std::vector<double>& values() const noexcept { return values_; }
  /// MXFP4 storage (empty for dense M): blocks (count, rows, cols/32, 16), scales (count, rows, cols/32).
  const std::vector<std::uint8_t>& blocks() const noexcept { return blocks_; }
  const std::vector<std::uint8_t>& scales() const noexcept { return scales_; }
  /// Exact value of element (r, c) of matrix i.
  double value(index_t i, index_t r, index_t c) const {
    return values_[static_cast<std::size_t>((i * rows_ + r) * cols_ + c)];
  }

  /// Matrix i as M.
  M view(index_t i) const {
    if constexpr (kFP4) {
      const index_t groups = rows_ * (cols_ / 32);
      return M(blocks_.data() + i * groups * 16, scales_.data() + i * groups, rows_, cols_);
    } else {
      return M(elements_.data() + i * rows_ * cols_, {rows_, cols_});
    }
  }
  std::vector<M> views() const {
    std::vector<M> out;
    for (index_t i = 0; i < count_; ++i) out.push_back(view(i));
    return out;
  }

 private:
  index_t count_ = 0, rows_ = 0, cols_ = 0;
  std::vector<double> values_;
  std::vector<typename detail::stack_element<M>::type> elements_;  // float / bf16 storage
  std::vector<std::uint8_t> blocks_, scales_;                       // MXFP4 storage
};

/// Owning random weights of one attention block.
struct RandomAttentionWeights {
  AttentionParams params;
  Tensor<bf16, 1> norm_scale;  // (H)
  Tensor<bf16, 2> qkv_weight;  // (D (nq + 2 nkv), H)
  Tensor<bf16, 1> qkv_bias;    // (D (nq + 2 nkv))
  Tensor<bf16, 1> sinks;       // (nq)
  Tensor<bf16, 2> out_weight;  // (H, D nq)
  Tensor<bf16, 1> out_bias;    // (H)

  /// Views of the merged projection's rows, as the original checkpoint is read.
  AttentionWeights weights() const {
    AttentionWeights w;
    w.norm.scale = norm_scale.view();
    const index_t q = params.q_dim(), kv = params.kv_dim();
    const MatrixView<const bf16> qkv = qkv_weight.view();
    const VectorView<const bf16> bias = qkv_bias.view();
    w.q_weight = qkv.slice(0, q);
    w.k_weight = qkv.slice(q, q + kv);
    w.v_weight = qkv.slice(q + kv, q + 2 * kv);
    w.q_bias = bias.slice(0, q);
    w.k_bias = bias.slice(q, q + kv);
    w.v_bias = bias.slice(q + kv, q + 2 * kv);
    w.sinks = sinks.view();
    w.out_weight = out_weight.view();
    w.out_bias = out_bias.view();
    return w;
  }
};

/// Random attention weights: q, k, v (and the block's output) of about unit
/// size times `gain` for unit-size inputs; sinks in [-1, 2).
inline RandomAttentionWeights random_attention_weights(Rng& rng, const AttentionParams& p,
                                                       float gain = 1.0f) {
  const float qkv_amp = gain * std::sqrt(3.0f / static_cast<float>(p.hidden));
  const float out_amp = gain * std::sqrt(3.0f / static_cast<float>(p.q_dim()));
  RandomAttentionWeights w{p, {}, {}, {}, {}, {}, {}};
  w.norm_scale = random_bf16<1>(rng, {p.hidden}, 0.5f, 1.5f);
  w.qkv_weight = random_bf16<2>(rng, {p.qkv_dim(), p.hidden}, -qkv_amp, qkv_amp);
  w.qkv_bias = random_bf16<1>(rng, {p.qkv_dim()}, -0.2f, 0.2f);
  w.sinks = random_bf16<1>(rng, {p.num_heads}, -1.0f, 2.0f);
  w.out_weight = random_bf16<2>(rng, {p.hidden, p.q_dim()}, -out_amp, out_amp);
  w.out_bias = random_bf16<1>(rng, {p.hidden}, -0.2f, 0.2f);
  return w;
}

/// Owning random weights of one MoE block with expert matrices stored as M.
template <class M>
struct RandomMoEWeights {
  MoEParams params;
  Tensor<bf16, 1> norm_scale;   // (H)
  Tensor<bf16, 2> gate_weight;  // (E, H)
  Tensor<bf16, 1> gate_bias;    // (E)
  RandomMatrixStack<M> mlp1;    // E x (2I, H)
  Tensor<bf16, 2> mlp1_bias;    // (E, 2I)
  RandomMatrixStack<M> mlp2;    // E x (H, I)
  Tensor<bf16, 2> mlp2_bias;    // (E, H)

  MoEWeights<M> weights() const {
    return {{norm_scale.view()}, gate_weight.view(), gate_bias.view(), mlp1.views(),
            mlp1_bias.view(),    mlp2.views(),       mlp2_bias.view()};
  }
};

/// Random MoE weights: expert pre-activations of about `gain` in size for
/// unit-size inputs (gain >> swiglu_limit drives them past the clamp),
/// router logits of about unit size.
template <class M>
RandomMoEWeights<M> random_moe_weights(Rng& rng, const MoEParams& p, float gain = 1.0f) {
  const index_t e = p.num_experts, h = p.hidden, i = p.intermediate;
  const float gate_amp = std::sqrt(3.0f / static_cast<float>(h));
  const float mlp1_amp = gain * std::sqrt(3.0f / static_cast<float>(h));
  const float mlp2_amp = std::sqrt(3.0f / static_cast<float>(i));
  RandomMoEWeights<M> w{p, {}, {}, {}, {}, {}, {}, {}};
  w.norm_scale = random_bf16<1>(rng, {h}, 0.5f, 1.5f);
  w.gate_weight = random_bf16<2>(rng, {e, h}, -gate_amp, gate_amp);
  w.gate_bias = random_bf16<1>(rng, {e}, -0.5f, 0.5f);
  w.mlp1 = RandomMatrixStack<M>(rng, e, 2 * i, h, mlp1_amp);
  w.mlp1_bias = random_bf16<2>(rng, {e, 2 * i}, -0.5f * gain, 0.5f * gain);
  w.mlp2 = RandomMatrixStack<M>(rng, e, h, i, mlp2_amp);
  w.mlp2_bias = random_bf16<2>(rng, {e, h}, -0.2f, 0.2f);
  return w;
}

}  // namespace gptoss::test
