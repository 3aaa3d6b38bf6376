// Reference MoE routing: top-k of the router logits (ties to the lower
// expert index, as torch.topk), then a softmax over the k selected logits.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss::kernels {

/// indices (T, k) and weights (T, k) from logits (T, E), by descending logit.
inline void route_top_k(cpu_reference, MatrixView<const float> logits,
                        MatrixView<std::int32_t> indices, MatrixView<float> weights) {
  const index_t t_count = logits.extent(0), e_count = logits.extent(1), k = indices.extent(1);
  if (k <= 0 || k > e_count || indices.extent(0) != t_count || weights.shape() != indices.shape()) {
    throw ShapeError("route_top_k: logits " + shape_string(logits.shape()) + ", indices " +
                     shape_string(indices.shape()) + ", weights " + shape_string(weights.shape()) +
                     " do not fit");
  }
  std::vector<std::int32_t> order(static_cast<std::size_t>(e_count));
  for (index_t t = 0; t < t_count; ++t) {
    std::iota(order.begin(), order.end(), 0);
    // NaN logits would break the ordering: they sort last, deterministically.
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
      const float la = logits(t, a), lb = logits(t, b);
      if (std::isnan(la) || std::isnan(lb)) return !std::isnan(la) && std::isnan(lb);
      return la > lb;
    });
    double max_logit = logits(t, order[0]);
    double sum = 0.0;
    for (index_t i = 0; i < k; ++i) sum += std::exp(logits(t, order[i]) - max_logit);
    for (index_t i = 0; i < k; ++i) {
      indices(t, i) = order[i];
      weights(t, i) = static_cast<float>(std::exp(logits(t, order[i]) - max_logit) / sum);
    }
  }
}

}  // namespace gptoss::kernels
