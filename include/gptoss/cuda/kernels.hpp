// The CUDA kernels of every gpt-oss layer, declared as plain C++ launchers
// over raw device pointers (row-major, shapes next to each parameter). Each
// launcher checks its shape arguments (ShapeError naming them) and enqueues
// its kernels on `stream` without waiting: no launcher copies to or from the
// host, so a whole forward step runs without a host round trip. Defined in
// src/cuda/*.cu; the CPU reference kernels (gptoss/kernels/reference) are
// their oracle in tests/cuda.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gptoss/core/bf16.hpp"
#include "gptoss/cuda/runtime.hpp"

namespace gptoss::cuda {

/// A device MXFP4 matrix (or `count` same-shape matrices back to back, the
/// experts of a layer): blocks (count, rows, cols/32, 16), scales
/// (count, rows, cols/32), gpt-oss nibble order (element 2j low, 2j+1 high).
struct DeviceMXFP4 {
  const std::uint8_t* blocks = nullptr;
  const std::uint8_t* scales = nullptr;
  int rows = 0;
  int cols = 0;  // a multiple of 32
  int count = 1;
};

/// A device bf16 matrix (rows, cols).
struct DeviceBF16 {
  const bf16* data = nullptr;
  int rows = 0;
  int cols = 0;
};

/// How a linear layer multiplies: fp32 CUDA cores (matrix-vector kernel,
/// weights decoded in registers, exact products), or tensor cores (weights
/// and activations rounded to bf16 in shared memory, fp32 accumulation).
enum class LinearPath { vector, tensor_core };

/// Rows of a GEMM tile (tokens) and of an expert tile table entry.
inline constexpr int kGemmTileRows = 64;

/// y (T, N) = residual (T, N, optional) + x (T, K) W^T + bias (N, optional);
/// y may alias residual. W is (N, K).
void linear(DeviceMXFP4 w, const bf16* bias, const float* x, int tokens, const float* residual,
            float* y, LinearPath path, stream_t stream = nullptr);
void linear(DeviceBF16 w, const bf16* bias, const float* x, int tokens, const float* residual,
            float* y, LinearPath path, stream_t stream = nullptr);

/// Expert matrix-vector products for a few routed entries: entry i uses
/// expert experts[i] of w (count E, each (N, K)) and input row
/// x[i / x_row_divisor] (x: (., K)); y (entries, N) = x W_e^T + bias[e]
/// (bias: (E, N), optional).
void expert_linear_vector(DeviceMXFP4 w, const bf16* bias, const std::int32_t* experts, int entries,
                          const float* x, int x_row_divisor, float* y, stream_t stream = nullptr);

/// Device-side grouping of routed entries by expert, made by group_by_expert:
/// sorted position -> entry, entry -> sorted position, and a table of tiles
/// (expert, first and end sorted row) for the grouped GEMM; unused tiles
/// have expert -1. max_tiles = expert_tile_bound(entries, experts).
struct ExpertGrouping {
  std::int32_t* sorted_entry = nullptr;   // (entries)
  std::int32_t* entry_position = nullptr; // (entries)
  std::int32_t* tile_expert = nullptr;    // (max_tiles)
  std::int32_t* tile_begin = nullptr;     // (max_tiles)
  std::int32_t* tile_end = nullptr;       // (max_tiles)
  int max_tiles = 0;
};

/// Upper bound on the tiles of kGemmTileRows rows that `entries` routed
/// entries over `experts` experts need: ceil(entries / 64) + experts.
constexpr int expert_tile_bound(int entries, int experts) noexcept {
  return (entries + kGemmTileRows - 1) / kGemmTileRows + experts;
}

/// Sorts the entries (experts: (entries) expert ids in [0, num_experts)) by
/// expert on the device and fills g. Within an expert the order is
/// unspecified; results do not depend on it.
void group_by_expert(const std::int32_t* experts, int entries, int num_experts, ExpertGrouping g,
                     stream_t stream = nullptr);

/// Grouped GEMM on tensor cores: sorted row r of y (entries, N) =
/// x[row(r)] W_e^T + bias[e] for its tile's expert e, where row(r) =
/// sorted_entry[r] / x_row_divisor when gather is true, else r.
void expert_linear_grouped(DeviceMXFP4 w, const bf16* bias, const ExpertGrouping& g, int entries,
                           const float* x, bool gather, int x_row_divisor, float* y,
                           stream_t stream = nullptr);

/// out (T, H) = x (T, H) + sum_j weights(t, j) * y[pos(t, j)], pos =
/// entry_position[t k + j] (or t k + j when entry_position is null).
/// out may alias x.
void moe_combine(const float* x, const float* y, const std::int32_t* entry_position,
                 const float* weights, int tokens, int k, int hidden, float* out,
                 stream_t stream = nullptr);

/// out (T, D) = x / sqrt(mean(x^2) + eps) * scale (D); out may alias x.
void rms_norm(const float* x, int tokens, int dim, const bf16* scale, float eps, float* out,
              stream_t stream = nullptr);

/// Splits qkv (T, D (nq + 2 nkv)) into q (T, nq, D) and the cache rows
/// first_position + t of k_cache / v_cache (capacity, nkv, D), rotating q
/// and k by YaRN at position first_position + t: inv_freq (D/2) as YaRNRope
/// computes it, angles in float64, cos/sin times concentration.
void rope_qkv(const float* qkv, int tokens, int num_heads, int num_kv_heads, int head_dim,
              int first_position, const double* inv_freq, double concentration, float* q,
              float* k_cache, float* v_cache, stream_t stream = nullptr);

/// Flash-style attention with sinks for the T queries at positions
/// first_position + t against cache rows [0, first_position + T): query t
/// sees rows j <= p and, with window > 0, p - window < j. One pass with an
/// online softmax seeded by the head's sink logit; each KV head is loaded
/// once per query group. out (T, nq D).
void sink_attention(const float* q, const float* k_cache, const float* v_cache, int first_position,
                    int tokens, int num_heads, int num_kv_heads, int head_dim, const bf16* sinks,
                    float scale, int window, float* out, stream_t stream = nullptr);

/// indices (T, k) and weights (T, k) from logits (T, E): top-k by
/// descending logit (ties to the lower index, NaN last), softmax over the k.
void route_top_k(const float* logits, int tokens, int num_experts, int k, std::int32_t* indices,
                 float* weights, stream_t stream = nullptr);

/// out (R, I) = clipped SwiGLU of x (R, 2I) with interleaved (gate, linear).
void swiglu(const float* x, int rows, int intermediate, float alpha, float limit, float* out,
            stream_t stream = nullptr);

/// out (T, H) = table[tokens] widened to float; table (V, H). Ids must have
/// been checked on the host.
void embed(const std::int32_t* tokens, int count, const bf16* table, int hidden, float* out,
           stream_t stream = nullptr);

/// Fills p (n) with bf16 values uniform in [lo, hi), from a hash of
/// (seed, index): the same on every device, no host memory involved.
void fill_random(bf16* p, std::size_t n, std::uint64_t seed, float lo, float hi, stream_t stream = nullptr);
/// Fills an MXFP4 array of `groups` blocks with random codes and scale bytes
/// in [scale_byte - 1, scale_byte + 1].
void fill_random_mxfp4(std::uint8_t* blocks, std::uint8_t* scales, std::size_t groups, std::uint64_t seed,
                       std::uint8_t scale_byte, stream_t stream = nullptr);

}  // namespace gptoss::cuda
