// Reference attention with learned sink logits, GQA and an optional sliding
// window, in float64: the oracle for every fast attention kernel.
//
// For query head h (KV head h / (nq / nkv)) at absolute position p, key j at
// absolute position pk[j] is visible iff pk[j] <= p and (window == 0 or
// p - window < pk[j]). The softmax runs over the visible scores
// scale * q.k plus the head's sink logit; the sink's probability is dropped.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/tensor_view.hpp"

namespace gptoss::kernels {

/// One part of the keys a query attends over: keys k (S, nkv, D) and values
/// v (S, nkv, D) at positions (S), in any order. A KV cache's storage and a
/// step's new tokens are two parts; attention over several parts equals
/// attention over their concatenation, without building it.
struct KeyValuePart {
  TensorView<const float, 3> k;        // (S, nkv, D)
  TensorView<const float, 3> v;        // (S, nkv, D)
  VectorView<const index_t> positions; // (S)
};

/// Throws ShapeError unless every part is (S_i, nkv, D) with S_i positions
/// and there is at least one part.
inline void check_key_value_parts(std::span<const KeyValuePart> parts, index_t nkv, index_t d,
                                  const char* who) {
  if (parts.empty()) throw ShapeError(std::string(who) + ": no key/value parts");
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const KeyValuePart& p = parts[i];
    if (p.k.extent(1) != nkv || p.k.extent(2) != d || p.v.shape() != p.k.shape() ||
        p.positions.extent(0) != p.k.extent(0)) {
      throw ShapeError(std::string(who) + ": key/value part " + std::to_string(i) + " has k " +
                       shape_string(p.k.shape()) + ", v " + shape_string(p.v.shape()) + ", " +
                       std::to_string(p.positions.extent(0)) + " positions; expected (S, " +
                       std::to_string(nkv) + ", " + std::to_string(d) + ") twice and S positions");
    }
  }
}

/// out (T, nq * D) = attention of q (T, nq, D) at positions q_pos (T) over
/// keys k (S, nkv, D) and values v (S, nkv, D) at positions k_pos (S), with
/// sinks (nq) and the given scale; window 0 means unlimited.
inline void sink_attention(cpu_reference, TensorView<const float, 3> q,
                           VectorView<const index_t> q_pos, TensorView<const float, 3> k,
                           TensorView<const float, 3> v, VectorView<const index_t> k_pos,
                           VectorView<const float> sinks, float scale, index_t window,
                           MatrixView<float> out) {
  const index_t t_count = q.extent(0), nq = q.extent(1), d = q.extent(2);
  const index_t s_count = k.extent(0), nkv = k.extent(1);
  if (nkv == 0 || nq % nkv != 0 || k.extent(2) != d || v.shape() != k.shape() ||
      q_pos.extent(0) != t_count || k_pos.extent(0) != s_count || sinks.extent(0) != nq ||
      out.extent(0) != t_count || out.extent(1) != nq * d) {
    throw ShapeError("sink_attention: q " + shape_string(q.shape()) + ", k " +
                     shape_string(k.shape()) + ", v " + shape_string(v.shape()) + ", sinks " +
                     shape_string(sinks.shape()) + ", out " + shape_string(out.shape()) +
                     " do not fit");
  }
  const index_t group = nq / nkv;
  std::vector<double> w(static_cast<std::size_t>(s_count));
  for (index_t t = 0; t < t_count; ++t) {
    const index_t p = q_pos[t];
    for (index_t h = 0; h < nq; ++h) {
      const index_t kv = h / group;
      double max_score = sinks[h];
      for (index_t j = 0; j < s_count; ++j) {
        const bool visible = k_pos[j] <= p && (window == 0 || p - window < k_pos[j]);
        if (!visible) {
          w[j] = -std::numeric_limits<double>::infinity();
          continue;
        }
        double dot = 0.0;
        for (index_t i = 0; i < d; ++i) dot += static_cast<double>(q(t, h, i)) * k(j, kv, i);
        w[j] = dot * scale;
        max_score = std::max(max_score, w[j]);
      }
      double denom = std::exp(static_cast<double>(sinks[h]) - max_score);
      for (index_t j = 0; j < s_count; ++j) {
        w[j] = std::exp(w[j] - max_score);
        denom += w[j];
      }
      for (index_t i = 0; i < d; ++i) {
        double acc = 0.0;
        // Only visible keys: a masked key's value (NaN or infinite, say)
        // must not reach a query that cannot see it, as 0 x NaN would.
        for (index_t j = 0; j < s_count; ++j) {
          if (k_pos[j] <= p && (window == 0 || p - window < k_pos[j])) acc += w[j] * v(j, kv, i);
        }
        out(t, h * d + i) = static_cast<float>(acc / denom);
      }
    }
  }
}

/// As above, over the union of `parts` (each (S_i, nkv, D) with S_i
/// positions): the oracle concatenates them and attends over the result.
inline void sink_attention(cpu_reference, TensorView<const float, 3> q,
                           VectorView<const index_t> q_pos, std::span<const KeyValuePart> parts,
                           VectorView<const float> sinks, float scale, index_t window,
                           MatrixView<float> out) {
  if (parts.empty()) throw ShapeError("sink_attention: no key/value parts");
  const index_t nkv = parts[0].k.extent(1), d = parts[0].k.extent(2);
  check_key_value_parts(parts, nkv, d, "sink_attention");
  index_t s_count = 0;
  for (const KeyValuePart& p : parts) s_count += p.k.extent(0);
  Tensor<float, 3> k({s_count, nkv, d}), v({s_count, nkv, d});
  Tensor<index_t, 1> k_pos({s_count});
  index_t at = 0;
  for (const KeyValuePart& p : parts) {
    const index_t n = p.k.extent(0);
    std::copy_n(p.k.data(), n * nkv * d, k.data() + at * nkv * d);
    std::copy_n(p.v.data(), n * nkv * d, v.data() + at * nkv * d);
    for (index_t j = 0; j < n; ++j) k_pos(at + j) = p.positions[j];
    at += n;
  }
  sink_attention(cpu_reference{}, q, q_pos, k.view(), v.view(), k_pos.view(), sinks, scale, window,
                 out);
}

}  // namespace gptoss::kernels
