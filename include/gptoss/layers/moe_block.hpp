// MoEBlock: the gpt-oss mixture-of-experts feed-forward block.
//
//   t = RMSNorm(x)                                    (T, H)
//   g = t Wgate^T + bgate                             (T, E) router logits
//   top-k experts by g (ties to the lower index), w = softmax over the k logits
//   for each selected expert e:
//     u = t W1[e]^T + b1[e]                           (2I) interleaved (gate, linear)
//     s = clipped SwiGLU(u)                           (I)
//     y_e = s W2[e]^T + b2[e]                         (H)
//   out = x + sum_e w_e y_e                           (T, H)
//
// Tokens are grouped by expert, so each chosen expert's weights are read
// once per call. Below kGroupedTokens tokens (decode), the chosen experts'
// mlp1 products run as one kernels::linear_group and their mlp2 products as
// another (on the fast CPU path, one pass of the thread pool each).
//
// The expert weight storage is the template parameter ExpertMatrix: any
// WeightMatrix (FP4TensorView for the gpt-oss MXFP4 checkpoints,
// MatrixView<const bf16> or MatrixView<const float> for dense variants).
#pragma once

#include <algorithm>
#include <array>
#include <span>
#include <string>
#include <vector>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/weight_matrix.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/kernels/linear_group.hpp"
#include "gptoss/kernels/reference/routing.hpp"
#include "gptoss/kernels/fast/swiglu.hpp"
#include "gptoss/layers/rms_norm.hpp"

namespace gptoss {

/// Shape of an MoE block.
struct MoEParams {
  index_t hidden = 2880;
  index_t intermediate = 2880;
  index_t num_experts = 32;
  index_t experts_per_token = 4;
  float swiglu_limit = 7.0f;
  float rms_eps = 1e-5f;

  static MoEParams from(const ModelDims& d) {
    return {d.hidden, d.intermediate, d.num_experts, d.experts_per_token, d.swiglu_limit, d.rms_eps};
  }
};

/// Weights of an MoE block, named as in the gpt-oss checkpoint
/// (`block.{i}.mlp.` + name). Expert matrices are one view per expert.
template <WeightMatrix ExpertMatrix>
struct MoEWeights {
  RMSNormWeights norm;                     // norm.scale  (H)
  MatrixView<const bf16> gate_weight;      // gate.weight (E, H)
  VectorView<const bf16> gate_bias;        // gate.bias   (E)
  std::vector<ExpertMatrix> mlp1_weight;   // mlp1_weight E x (2I, H)
  MatrixView<const bf16> mlp1_bias;        // mlp1_bias   (E, 2I)
  std::vector<ExpertMatrix> mlp2_weight;   // mlp2_weight E x (H, I)
  MatrixView<const bf16> mlp2_bias;        // mlp2_bias   (E, H)
};

/// Routing decisions of one forward pass, for inspection and tests.
struct MoERouting {
  Tensor<float, 2> logits;          // (T, E)
  Tensor<std::int32_t, 2> indices;  // (T, k) by descending logit
  Tensor<float, 2> weights;         // (T, k) softmax over the k logits
};

template <WeightMatrix ExpertMatrix = FP4TensorView<MXFP4Checkpoint>, class Backend = cpu_reference>
class MoEBlock {
 public:
  using Params = MoEParams;
  using Weights = MoEWeights<ExpertMatrix>;

  explicit MoEBlock(const MoEParams& p) : p_(p), norm_(p.hidden, p.rms_eps) {
    if (p.num_experts <= 0 || p.experts_per_token <= 0 || p.experts_per_token > p.num_experts) {
      throw ConfigError("MoEBlock: experts_per_token " + std::to_string(p.experts_per_token) +
                        " must be in [1, " + std::to_string(p.num_experts) + "]");
    }
    if (p.hidden <= 0 || p.intermediate <= 0) {
      throw ConfigError("MoEBlock: hidden and intermediate sizes must be positive");
    }
  }

  const MoEParams& params() const noexcept { return p_; }

  /// Calls f(name, tensor, expected shape) for every weight, with the
  /// checkpoint's names; expert matrices come as the per-expert vector with
  /// shape (E, rows, cols). W is Weights or const Weights.
  template <class W, class F>
  void visit_weights(W& w, F&& f) const {
    const index_t e = p_.num_experts, h = p_.hidden, i = p_.intermediate;
    f("norm.scale", w.norm.scale, std::array{h});
    f("gate.weight", w.gate_weight, std::array{e, h});
    f("gate.bias", w.gate_bias, std::array{e});
    f("mlp1_weight", w.mlp1_weight, std::array{e, 2 * i, h});
    f("mlp1_bias", w.mlp1_bias, std::array{e, 2 * i});
    f("mlp2_weight", w.mlp2_weight, std::array{e, h, i});
    f("mlp2_bias", w.mlp2_bias, std::array{e, h});
  }

  /// Checks every weight's shape; throws ShapeError naming the tensor.
  void check(const Weights& w) const {
    const index_t e = p_.num_experts, h = p_.hidden, i2 = 2 * p_.intermediate;
    require_shape(w.norm.scale, {h}, "mlp norm.scale");
    require_shape(w.gate_weight, {e, h}, "mlp gate.weight");
    require_shape(w.gate_bias, {e}, "mlp gate.bias");
    require_shape(w.mlp1_bias, {e, i2}, "mlp mlp1_bias");
    require_shape(w.mlp2_bias, {e, h}, "mlp mlp2_bias");
    if (static_cast<index_t>(w.mlp1_weight.size()) != e ||
        static_cast<index_t>(w.mlp2_weight.size()) != e) {
      throw ShapeError("MoEBlock: expected " + std::to_string(e) + " expert matrices, got " +
                       std::to_string(w.mlp1_weight.size()) + " (mlp1) and " +
                       std::to_string(w.mlp2_weight.size()) + " (mlp2)");
    }
    for (index_t x = 0; x < e; ++x) {
      const auto& w1 = w.mlp1_weight[static_cast<std::size_t>(x)];
      const auto& w2 = w.mlp2_weight[static_cast<std::size_t>(x)];
      if (rows(w1) != i2 || cols(w1) != h) {
        throw ShapeError("mlp mlp1_weight[" + std::to_string(x) + "]: expected shape " +
                         shape_string(std::array{i2, h}) + ", got " +
                         shape_string(std::array{rows(w1), cols(w1)}));
      }
      if (rows(w2) != h || cols(w2) != p_.intermediate) {
        throw ShapeError("mlp mlp2_weight[" + std::to_string(x) + "]: expected shape " +
                         shape_string(std::array{h, p_.intermediate}) + ", got " +
                         shape_string(std::array{rows(w2), cols(w2)}));
      }
    }
  }

  /// Router logits (T, E), top-k indices and weights of x (T, H).
  MoERouting route(const Weights& w, MatrixView<const float> normed) const {
    const index_t t_count = normed.extent(0);
    MoERouting r{Tensor<float, 2>({t_count, p_.num_experts}),
                 Tensor<std::int32_t, 2>({t_count, p_.experts_per_token}),
                 Tensor<float, 2>({t_count, p_.experts_per_token})};
    kernels::linear(Backend{}, w.gate_weight, w.gate_bias, normed, r.logits.view());
    kernels::route_top_k(Backend{}, r.logits.view(), r.indices.view(), r.weights.view());
    return r;
  }

  /// out (T, H) = x + MoE(RMSNorm(x)); out may alias x. When `routing` is
  /// given, the routing decisions are stored there.
  void forward(const Weights& w, MatrixView<const float> x, MatrixView<float> out,
               MoERouting* routing = nullptr) const {
    check(w);
    if (x.extent(1) != p_.hidden || out.shape() != x.shape()) {
      throw ShapeError("MoEBlock: input " + shape_string(x.shape()) + " and output " +
                       shape_string(out.shape()) + " must both be (T, " +
                       std::to_string(p_.hidden) + ")");
    }
    const index_t t_count = x.extent(0), h = p_.hidden;
    Tensor<float, 2> normed({t_count, h});
    norm_.forward(w.norm, x, normed.view());
    MoERouting r = route(w, normed.view());

    // Tokens are grouped by expert so each expert's weights are read once.
    std::vector<ExpertTokens> chosen;
    for (index_t e = 0; e < p_.num_experts; ++e) {
      ExpertTokens et{e, {}, {}};
      for (index_t t = 0; t < t_count; ++t) {
        for (index_t j = 0; j < p_.experts_per_token; ++j) {
          if (r.indices(t, j) == e) {
            et.tokens.push_back(t);
            et.gates.push_back(r.weights(t, j));
          }
        }
      }
      if (!et.tokens.empty()) chosen.push_back(std::move(et));
    }
    // With few tokens (decode), every chosen expert's mlp1 is one product
    // group and every mlp2 another (on the fast CPU path, one pass of the
    // thread pool each); with many, one expert at a time, so that only one
    // expert's activations are held.
    std::vector<double> acc(static_cast<std::size_t>(t_count * h), 0.0);  // (T, H)
    const std::size_t batch = t_count < kGroupedTokens ? std::max<std::size_t>(1, chosen.size()) : 1;
    for (std::size_t first = 0; first < chosen.size(); first += batch) {
      const std::size_t count = std::min(batch, chosen.size() - first);
      run_experts(w, MatrixView<const float>(normed.view()), std::span(chosen).subspan(first, count), acc);
    }
    for (index_t t = 0; t < t_count; ++t) {
      for (index_t c = 0; c < h; ++c) {
        out(t, c) = static_cast<float>(x(t, c) + acc[static_cast<std::size_t>(t * h + c)]);
      }
    }
    if (routing != nullptr) *routing = std::move(r);
  }

 private:
  /// Below this many tokens the chosen experts' products run as groups.
  static constexpr index_t kGroupedTokens = 16;

  /// One expert and the tokens routed to it, with their gate weights.
  struct ExpertTokens {
    index_t expert;
    std::vector<index_t> tokens;
    std::vector<double> gates;
  };

  /// acc (T, H) += gate x mlp2(SwiGLU(mlp1(normed row))) for each expert in
  /// `part` and each of its tokens: the mlp1 products as one group, then the
  /// mlp2 products as another.
  void run_experts(const Weights& w, MatrixView<const float> normed, std::span<const ExpertTokens> part,
                   std::vector<double>& acc) const {
    const index_t h = p_.hidden, inter = p_.intermediate;
    std::vector<Tensor<float, 2>> xe, up, act, down;  // per expert: (n, H), (n, 2I), (n, I), (n, H)
    xe.reserve(part.size()), up.reserve(part.size()), act.reserve(part.size()), down.reserve(part.size());
    for (const ExpertTokens& et : part) {
      const index_t n = static_cast<index_t>(et.tokens.size());
      xe.emplace_back(std::array{n, h});
      up.emplace_back(std::array{n, 2 * inter});
      act.emplace_back(std::array{n, inter});
      down.emplace_back(std::array{n, h});
      for (index_t i = 0; i < n; ++i) {
        std::copy_n(&normed(et.tokens[static_cast<std::size_t>(i)], 0), h, &xe.back()(i, 0));
      }
    }
    std::vector<kernels::LinearTask<ExpertMatrix>> mlp1, mlp2;
    for (std::size_t i = 0; i < part.size(); ++i) {
      const auto e = static_cast<std::size_t>(part[i].expert);
      mlp1.push_back({w.mlp1_weight[e], w.mlp1_bias[part[i].expert], MatrixView<const float>(xe[i].view()),
                      up[i].view()});
    }
    kernels::linear_group(Backend{}, std::span<const kernels::LinearTask<ExpertMatrix>>(mlp1));
    for (std::size_t i = 0; i < part.size(); ++i) {
      const auto e = static_cast<std::size_t>(part[i].expert);
      kernels::swiglu(Backend{}, up[i].view(), kernels::kSwigluAlpha, p_.swiglu_limit, act[i].view());
      mlp2.push_back({w.mlp2_weight[e], w.mlp2_bias[part[i].expert], MatrixView<const float>(act[i].view()),
                      down[i].view()});
    }
    kernels::linear_group(Backend{}, std::span<const kernels::LinearTask<ExpertMatrix>>(mlp2));
    for (std::size_t i = 0; i < part.size(); ++i) {
      const ExpertTokens& et = part[i];
      for (std::size_t j = 0; j < et.tokens.size(); ++j) {
        double* row = &acc[static_cast<std::size_t>(et.tokens[j] * h)];
        for (index_t c = 0; c < h; ++c) row[c] += et.gates[j] * down[i](static_cast<index_t>(j), c);
      }
    }
  }

  MoEParams p_;
  RMSNorm<Backend> norm_;
};

}  // namespace gptoss
