// linear_group: several independent products y_i = x_i W_i^T + b_i at once,
// each computed exactly as kernels::linear computes it. Any backend runs them
// one after another; the fast CPU path runs a group of MXFP4 products with
// few tokens (an MoE layer's experts during decode) in one pass of the
// thread pool, which saves the threads a start and a meeting per product.
//
//   std::vector<kernels::LinearTask<FP4TensorView<MXFP4Checkpoint>>> tasks;
//   tasks.push_back({w1[e], b1[e], x_e, up_e});   // x_e (T_e, K), up_e (T_e, N)
//   kernels::linear_group(cpu_fast{}, std::span(tasks));
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/kernels/reference/linear.hpp"

namespace gptoss::kernels {

/// One product of a group: y (T, N) = x (T, K) W^T + bias.
template <class Weights>
struct LinearTask {
  Weights w;                    // (N, K)
  VectorView<const bf16> bias;  // (N) or empty
  MatrixView<const float> x;    // (T, K)
  MatrixView<float> y;          // (T, N)
};

/// Every task's product, one after another.
template <class Backend, class Weights>
void linear_group(Backend, std::span<const LinearTask<Weights>> tasks) {
  for (const LinearTask<Weights>& t : tasks) linear(Backend{}, t.w, t.bias, t.x, t.y);
}

/// MXFP4 products on the fast CPU path: on the AVX-512 tier, when every
/// product streams rows (fewer tokens than the panel path takes) and has at
/// least a micro-kernel's rows, all of them in one pass of the pool; else
/// one after another. The results equal kernels::linear's for each task.
inline void linear_group(cpu_fast, std::span<const LinearTask<FP4TensorView<MXFP4Checkpoint>>> tasks) {
  bool one_pass = false;
#if GPTOSS_X86
  one_pass = tasks.size() > 1 && active_isa() == Isa::avx512;
#endif
  for (const auto& t : tasks) {
    check_linear_shapes(t.w.rows(), t.w.cols(), t.bias, t.x, t.y);
#if GPTOSS_X86
    one_pass = one_pass && t.w.rows() >= fast::kMaxGroupRows && t.x.extent(0) > 0 &&
               !fast::use_panels(t.x.extent(0), t.w.blocks_per_row() * 16);
#endif
  }
  if (!one_pass) {
    for (const auto& t : tasks) linear(cpu_fast{}, t.w, t.bias, t.x, t.y);
    return;
  }
#if GPTOSS_X86
  std::vector<fast::RowsTask<fast::Mxfp4Rows>> rows;
  rows.reserve(tasks.size());
  for (const auto& t : tasks) {
    rows.push_back({fast::Mxfp4Rows{t.w.blocks(), t.w.scales(), t.w.rows(), t.w.blocks_per_row()}, t.w.rows(),
                    t.w.cols(), t.bias, t.x, t.y});
  }
  const std::span<const fast::RowsTask<fast::Mxfp4Rows>> all(rows);
  auto exact = [&](std::size_t i, int64_t r, int64_t t0, int64_t count) {
    const auto& t = tasks[i];
    fast::exact_linear_row(t.w, r, t.bias, t.x, t.y, t0, count);
  };
  fast::with_avx512_mxfp4_family([&]<class Family>() { fast::run_linear_group<Family>(all, exact); });
#endif
}

}  // namespace gptoss::kernels
