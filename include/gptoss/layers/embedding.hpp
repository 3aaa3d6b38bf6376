// Token embedding and unembedding (gpt-oss: no bias, bf16 storage, fp32
// compute). Token ids are checked: an id outside [0, vocab) is a RangeError.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/int8_matrix.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/layers/dense_projection.hpp"

namespace gptoss {

/// Throws RangeError unless every id is in [0, vocab).
inline void check_token_ids(std::span<const std::int32_t> tokens, index_t vocab) {
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= vocab) {
      throw RangeError("token id " + std::to_string(tokens[t]) + " at position " +
                       std::to_string(t) + " is outside the vocabulary [0, " +
                       std::to_string(vocab) + ")");
    }
  }
}

/// Looks up rows of the embedding table: out (T, H) = table[tokens].
template <class Backend = cpu_reference>
class Embedding {
 public:
  struct Weights {
    MatrixView<const bf16> table;  // embedding.weight (V, H)
  };

  Embedding(index_t vocab, index_t hidden) : vocab_(vocab), hidden_(hidden) {}
  index_t vocab() const noexcept { return vocab_; }
  index_t hidden() const noexcept { return hidden_; }

  template <class W, class F>
  void visit_weights(W& w, F&& f) const { f("weight", w.table, std::array{vocab_, hidden_}); }

  void forward(const Weights& w, std::span<const std::int32_t> tokens, MatrixView<float> out) const {
    require_shape(w.table, {vocab_, hidden_}, "embedding.weight");
    require_shape(out, {static_cast<index_t>(tokens.size()), hidden_}, "embedding output");
    check_token_ids(tokens, vocab_);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      for (index_t i = 0; i < hidden_; ++i) {
        out(static_cast<index_t>(t), i) = w.table(tokens[t], i).to_float();
      }
    }
  }

 private:
  index_t vocab_, hidden_;
};

/// Projects hidden states to vocabulary logits: out (T, V) = x (T, H) W^T.
template <class Backend = cpu_reference>
class Unembedding {
 public:
  struct Weights {
    MatrixView<const bf16> weight;  // unembedding.weight (V, H)
    Int8MatrixView int8{};          // optional 8-bit copy (quantize_dense_int8); used when set
  };

  Unembedding(index_t vocab, index_t hidden) : vocab_(vocab), hidden_(hidden) {}
  index_t vocab() const noexcept { return vocab_; }
  index_t hidden() const noexcept { return hidden_; }

  template <class W, class F>
  void visit_weights(W& w, F&& f) const { f("weight", w.weight, std::array{vocab_, hidden_}); }

  void forward(const Weights& w, MatrixView<const float> x, MatrixView<float> out) const {
    require_shape(w.weight, {vocab_, hidden_}, "unembedding.weight");
    if (x.extent(1) != hidden_) {
      throw ShapeError("Unembedding: input " + shape_string(x.shape()) + " does not have " +
                       std::to_string(hidden_) + " columns");
    }
    require_shape(out, {x.extent(0), vocab_}, "unembedding output");
    dense_projection<Backend>(w.int8, w.weight, VectorView<const bf16>{}, x, out, "unembedding");
  }

 private:
  index_t vocab_, hidden_;
};

}  // namespace gptoss
