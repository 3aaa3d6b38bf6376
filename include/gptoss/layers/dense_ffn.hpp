// DenseFFN: a dense feed-forward block, the alternative to MoEBlock: every
// token goes through one clipped-SwiGLU MLP with biases.
//
//   t = RMSNorm(x)                                    (T, H)
//   u = t W1^T + b1                                   (T, 2I) interleaved (gate, linear)
//   s = clipped SwiGLU(u)                             (T, I)  as the MoE experts
//   out = x + s W2^T + b2                             (T, H)
//
// The weight storage is the template parameter WeightMatrix: any
// WeightMatrix (FP4TensorView for MXFP4, MatrixView<const bf16> or
// MatrixView<const float>). Checkpoint names (`block.{i}.mlp.` + name):
// norm.scale, mlp1_weight (2I, H), mlp1_bias, mlp2_weight (H, I),
// mlp2_bias; MXFP4 matrices are stored as `.blocks` / `.scales` pairs as the
// MoE experts are, without the expert dimension.
#pragma once

#include <array>
#include <string>

#include "gptoss/config/model_dims.hpp"
#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/weight_matrix.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/kernels/fast/swiglu.hpp"
#include "gptoss/layers/rms_norm.hpp"

namespace gptoss {

/// Shape of a dense feed-forward block. From ModelDims, `intermediate` is
/// the dims' intermediate size (the dense configs set it to the MLP width).
struct DenseFFNParams {
  index_t hidden = 2880;
  index_t intermediate = 2880;
  float swiglu_limit = 7.0f;
  float rms_eps = 1e-5f;

  static DenseFFNParams from(const ModelDims& d) {
    return {d.hidden, d.intermediate, d.swiglu_limit, d.rms_eps};
  }
};

/// Weights of a dense feed-forward block, named as in the checkpoint.
template <WeightMatrix Matrix>
struct DenseFFNWeights {
  RMSNormWeights norm;               // norm.scale  (H)
  Matrix mlp1_weight;                // mlp1_weight (2I, H)
  VectorView<const bf16> mlp1_bias;  // mlp1_bias   (2I)
  Matrix mlp2_weight;                // mlp2_weight (H, I)
  VectorView<const bf16> mlp2_bias;  // mlp2_bias   (H)
};

template <WeightMatrix Matrix = MatrixView<const bf16>, class Backend = cpu_reference>
class DenseFFN {
 public:
  using Params = DenseFFNParams;
  using Weights = DenseFFNWeights<Matrix>;

  explicit DenseFFN(const DenseFFNParams& p) : p_(p), norm_(p.hidden, p.rms_eps) {
    if (p.hidden <= 0 || p.intermediate <= 0) {
      throw ConfigError("DenseFFN: hidden " + std::to_string(p.hidden) + " and intermediate " +
                        std::to_string(p.intermediate) + " sizes must be positive");
    }
  }

  const DenseFFNParams& params() const noexcept { return p_; }

  /// Calls f(name, tensor, expected shape) for every weight, with the
  /// checkpoint's names; W is Weights or const Weights.
  template <class W, class F>
  void visit_weights(W& w, F&& f) const {
    const index_t h = p_.hidden, i = p_.intermediate;
    f("norm.scale", w.norm.scale, std::array{h});
    f("mlp1_weight", w.mlp1_weight, std::array{2 * i, h});
    f("mlp1_bias", w.mlp1_bias, std::array{2 * i});
    f("mlp2_weight", w.mlp2_weight, std::array{h, i});
    f("mlp2_bias", w.mlp2_bias, std::array{h});
  }

  /// Checks every weight's shape; throws ShapeError naming the tensor.
  void check(const Weights& w) const {
    const index_t h = p_.hidden, i = p_.intermediate;
    require_shape(w.norm.scale, {h}, "mlp norm.scale");
    require_matrix(w.mlp1_weight, 2 * i, h, "mlp mlp1_weight");
    require_shape(w.mlp1_bias, {2 * i}, "mlp mlp1_bias");
    require_matrix(w.mlp2_weight, h, i, "mlp mlp2_weight");
    require_shape(w.mlp2_bias, {h}, "mlp mlp2_bias");
  }

  /// out (T, H) = x + MLP(RMSNorm(x)); out may alias x.
  void forward(const Weights& w, MatrixView<const float> x, MatrixView<float> out) const {
    check(w);
    if (x.extent(1) != p_.hidden || out.shape() != x.shape()) {
      throw ShapeError("DenseFFN: input " + shape_string(x.shape()) + " and output " +
                       shape_string(out.shape()) + " must both be (T, " +
                       std::to_string(p_.hidden) + ")");
    }
    const index_t t_count = x.extent(0), h = p_.hidden, inter = p_.intermediate;
    Tensor<float, 2> normed({t_count, h}), up({t_count, 2 * inter}), act({t_count, inter}),
        down({t_count, h});
    norm_.forward(w.norm, x, normed.view());
    kernels::linear(Backend{}, w.mlp1_weight, w.mlp1_bias, MatrixView<const float>(normed.view()), up.view());
    kernels::swiglu(Backend{}, up.view(), kernels::kSwigluAlpha, p_.swiglu_limit, act.view());
    kernels::linear(Backend{}, w.mlp2_weight, w.mlp2_bias, MatrixView<const float>(act.view()), down.view());
    for (index_t t = 0; t < t_count; ++t) {
      for (index_t c = 0; c < h; ++c) out(t, c) = x(t, c) + down(t, c);
    }
  }

 private:
  static void require_matrix(const Matrix& m, index_t r, index_t c, const char* name) {
    if (rows(m) != r || cols(m) != c) {
      throw ShapeError(std::string(name) + ": expected shape " + shape_string(std::array{r, c}) +
                       ", got " + shape_string(std::array{rows(m), cols(m)}));
    }
  }

  DenseFFNParams p_;
  RMSNorm<Backend> norm_;
};

}  // namespace gptoss
