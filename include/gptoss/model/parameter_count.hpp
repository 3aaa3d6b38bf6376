// Parameter and byte counts of a model, from its weight shapes alone (so it
// also works before weights are bound, e.g. to plan a load).
//
// Expert parameters are those of the MoE expert MLPs (mlp1/mlp2 weights and
// biases); a token uses experts_per_token of num_experts experts, and the
// embedding table is a lookup, not a product, so (as on the gpt-oss model
// card: 20.9B total, 3.6B active for gpt-oss-20b)
//   active = total - embedding - expert + expert * experts_per_token / num_experts.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gptoss/core/bf16.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/model/checkpoint_layout.hpp"

namespace gptoss {

struct ParameterCount {
  std::int64_t total = 0;
  std::int64_t expert = 0;     // in all experts together
  std::int64_t embedding = 0;  // the input embedding table
  std::int64_t active_per_token = 0;
  std::map<std::string, std::int64_t> bytes_by_dtype;  // "BF16", "MXFP4", "F32"
  // Bytes of every block's attention half (block.N.attn.*) and feed-forward
  // half (block.N.mlp.*), and of the expert MLPs among the latter.
  std::int64_t attention_bytes = 0;
  std::int64_t feed_forward_bytes = 0;
  std::int64_t expert_bytes = 0;
  std::int64_t bytes() const {
    std::int64_t n = 0;
    for (const auto& [dtype, b] : bytes_by_dtype) n += b;
    return n;
  }
};

namespace detail {

class ParameterCounter {
 public:
  template <class T, std::size_t R>
  void operator()(const std::string& name, const TensorView<const T, R>&, const std::array<index_t, R>& shape) {
    add(name, shape, dtype_label<T>(), static_cast<double>(sizeof(T)));
  }
  template <class Format>
  void operator()(const std::string& name, const std::vector<FP4TensorView<Format>>&,
                  const std::array<index_t, 3>& shape) {
    add(name, shape, Format::kHasGlobalScale ? "NVFP4" : "MXFP4", (Format::kBytesPerBlock + 1.0) / Format::kBlockSize);
  }
  template <class Format, std::size_t R>
  void operator()(const std::string& name, const FP4TensorView<Format>&, const std::array<index_t, R>& shape) {
    add(name, shape, "MXFP4", (Format::kBytesPerBlock + 1.0) / Format::kBlockSize);
  }
  template <class T>
  void operator()(const std::string& name, const std::vector<MatrixView<const T>>&,
                  const std::array<index_t, 3>& shape) {
    add(name, shape, dtype_label<T>(), static_cast<double>(sizeof(T)));
  }
  template <class Ptr, std::size_t N, std::size_t R>
  void operator()(const std::string& name, const RowSplit<Ptr, N>&, const std::array<index_t, R>& shape) {
    using T = typename std::remove_cvref_t<decltype(*std::declval<Ptr>())>::element_type;
    add(name, shape, dtype_label<std::remove_const_t<T>>(), static_cast<double>(sizeof(T)));
  }

  ParameterCount count;

 private:
  template <class T>
  static const char* dtype_label() {
    return std::is_same_v<T, bf16> ? "BF16" : std::is_same_v<T, float> ? "F32" : "other";
  }
  template <std::size_t R>
  void add(const std::string& name, const std::array<index_t, R>& shape, const char* dtype,
           double bytes_per_element) {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    count.total += n;
    const auto bytes = static_cast<std::int64_t>(static_cast<double>(n) * bytes_per_element);
    if (name.rfind("embedding.", 0) == 0) count.embedding += n;
    const bool in_block = name.rfind("block.", 0) == 0;
    if (in_block && name.find(".attn.") != std::string::npos) count.attention_bytes += bytes;
    if (in_block && name.find(".mlp.") != std::string::npos) count.feed_forward_bytes += bytes;
    if (name.find(".mlp.mlp1_") != std::string::npos || name.find(".mlp.mlp2_") != std::string::npos) {
      count.expert += n;
      count.expert_bytes += bytes;
    }
    count.bytes_by_dtype[dtype] += bytes;
  }
};

}  // namespace detail

/// Counts the parameters of any model with visit_weights() and dims().
template <class Model>
ParameterCount count_parameters(const Model& model) {
  detail::ParameterCounter counter;
  model.visit_weights(model.weights(), counter);
  ParameterCount c = counter.count;
  const auto& d = model.dims();
  c.active_per_token =
      c.total - c.embedding - c.expert + c.expert * d.experts_per_token / d.num_experts;
  return c;
}

}  // namespace gptoss
