// Attention probabilities with learned sinks, for inspection: the softmax
// distribution over keys that sink attention averages the values with, for
// chosen query heads, and the share of the softmax denominator held by each
// head's sink logit. Plain loops in float64, the same visibility rule as the
// attention kernels (key j at position pk[j] is visible to a query at p iff
// pk[j] <= p and, for window W > 0, p - W < pk[j] or pk[j] < S, S the number
// of sink tokens: 0 for gpt-oss, see layers/sink_policy.hpp), so for every query
//
//   sum_j probs[h, t, j] + sink[h, t] = 1,   out[t, h] = sum_j probs[h, t, j] v[j, h / group].
//
// Nothing calls this on the fast path: it is a separate pass run only when
// an observer asks for attention maps.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/error.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss::kernels {

/// probs (H', T, S) and sink (H', T) of query heads `heads` (H') for q (T,
/// nq, D) at positions q_pos (T) over keys k (S, nkv, D) at positions k_pos
/// (S), with sinks (nq; -inf: no learned sink), the score scale and window
/// (0: unlimited), and the first sink_tokens positions visible to every later
/// query. Keys a query cannot see get probability 0.
inline void sink_attention_probabilities(cpu_reference, TensorView<const float, 3> q,
                                         VectorView<const index_t> q_pos,
                                         TensorView<const float, 3> k,
                                         VectorView<const index_t> k_pos,
                                         VectorView<const float> sinks, float scale, index_t window,
                                         VectorView<const index_t> heads,
                                         TensorView<float, 3> probs, MatrixView<float> sink,
                                         index_t sink_tokens = 0) {
  const index_t t_count = q.extent(0), nq = q.extent(1), d = q.extent(2);
  const index_t s_count = k.extent(0), nkv = k.extent(1), h_count = heads.extent(0);
  if (nkv == 0 || nq % nkv != 0 || k.extent(2) != d || q_pos.extent(0) != t_count ||
      k_pos.extent(0) != s_count || sinks.extent(0) != nq ||
      probs.shape() != std::array{h_count, t_count, s_count} ||
      sink.shape() != std::array{h_count, t_count}) {
    throw ShapeError("sink_attention_probabilities: q " + shape_string(q.shape()) + ", k " +
                     shape_string(k.shape()) + ", sinks " + shape_string(sinks.shape()) +
                     ", heads " + shape_string(heads.shape()) + ", probs " +
                     shape_string(probs.shape()) + ", sink " + shape_string(sink.shape()) +
                     " do not fit");
  }
  for (index_t i = 0; i < h_count; ++i) {
    if (heads[i] < 0 || heads[i] >= nq) {
      throw RangeError("sink_attention_probabilities: query head " + std::to_string(heads[i]) +
                       " is outside [0, " + std::to_string(nq) + ")");
    }
  }
  const index_t group = nq / nkv;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  std::vector<double> score(static_cast<std::size_t>(s_count));
  for (index_t i = 0; i < h_count; ++i) {
    const index_t h = heads[i], kv = h / group;
    for (index_t t = 0; t < t_count; ++t) {
      const index_t p = q_pos[t];
      double max_score = sinks[h];
      for (index_t j = 0; j < s_count; ++j) {
        const bool visible =
            k_pos[j] <= p && (window == 0 || p - window < k_pos[j] || k_pos[j] < sink_tokens);
        double dot = 0.0;
        for (index_t c = 0; visible && c < d; ++c) dot += static_cast<double>(q(t, h, c)) * k(j, kv, c);
        score[static_cast<std::size_t>(j)] = visible ? dot * scale : neg_inf;
        max_score = std::max(max_score, score[static_cast<std::size_t>(j)]);
      }
      const double sink_term = std::exp(static_cast<double>(sinks[h]) - max_score);  // 0 for a -inf sink
      double denom = sink_term;
      for (double& s : score) {
        s = std::exp(s - max_score);
        denom += s;
      }
      for (index_t j = 0; j < s_count; ++j) {
        probs(i, t, j) = static_cast<float>(score[static_cast<std::size_t>(j)] / denom);
      }
      sink(i, t) = static_cast<float>(sink_term / denom);
    }
  }
}

}  // namespace gptoss::kernels
