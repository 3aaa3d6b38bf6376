// Linear-layer kernels: MXFP4 and bf16 matrix-vector products on CUDA
// cores (weights decoded in registers, fp32 products), a tensor-core GEMM
// (weights dequantized in registers into shared memory as bf16, WMMA
// 16x16x16 bf16 tiles, fp32 accumulation) for dense and expert-grouped
// prefill, and the device-side grouping of routed entries by expert.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <string>

#include "gptoss/cuda/device_math.cuh"
#include "gptoss/cuda/kernels.hpp"

namespace gptoss::cuda {

namespace {

using namespace device;  // the shared kernel helpers (device_math.cuh)
using std::int32_t;
using std::uint16_t;
using std::uint8_t;

// ---------------------------------------------------------------------------
// Matrix-vector products: one warp per output row. Lane l reads the row's
// 16-byte chunks l, l + 32, ... (coalesced) and multiplies each decoded
// chunk by up to kTokens input rows at once, so the weights are read once
// per kTokens tokens.

constexpr int kGemvWarps = 8;  // rows per block
constexpr int kTokens = 4;     // input rows per weight pass

struct GemvArgs {
  const uint8_t* blocks;   // MXFP4: (count, N, K/32, 16)
  const uint8_t* scales;   // MXFP4: (count, N, K/32)
  const uint16_t* weight;  // bf16: (N, K)
  const uint16_t* bias;    // (count, N) or null
  const int32_t* experts;  // (entries) or null: dense
  int x_row_divisor;
  const float* x;          // (T, K) dense; (., K) per entry
  int tokens;
  int n, k;
  const float* residual;   // (T, N) or null
  float* y;                // (T, N) dense; (entries, N)
};

/// Chunk c (8 elements for bf16, 32 for MXFP4) of a row times kTokens rows of x.
template <bool Mxfp4>
__global__ void __launch_bounds__(kGemvWarps * kWarp) gemv_kernel(GemvArgs a) {
  __shared__ float lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = device::kE2M1[threadIdx.x];
  __syncthreads();
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  const int row = static_cast<int>(blockIdx.x) * kGemvWarps + warp;
  if (row >= a.n) return;

  const std::size_t n = static_cast<std::size_t>(a.n), k = static_cast<std::size_t>(a.k);
  std::size_t matrix = 0;
  const float* x = a.x;
  float* y = a.y;
  int tokens = a.tokens;
  const float* residual = a.residual;
  if (a.experts != nullptr) {
    const int entry = static_cast<int>(blockIdx.y);
    matrix = static_cast<std::size_t>(a.experts[entry]);
    x += static_cast<std::size_t>(entry / a.x_row_divisor) * k;
    y += static_cast<std::size_t>(entry) * n;
    tokens = 1;
    residual = nullptr;
  }
  const float bias = a.bias ? bf16_to_float(a.bias[matrix * n + row]) : 0.0f;

  for (int t0 = 0; t0 < tokens; t0 += kTokens) {
    float acc[kTokens] = {};
    if constexpr (Mxfp4) {
      const std::size_t groups = k / 32;
      const uint8_t* blocks = a.blocks + (matrix * n + row) * groups * 16;
      const uint8_t* scales = a.scales + (matrix * n + row) * groups;
      for (std::size_t g = lane; g < groups; g += kWarp) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(blocks + g * 16));
        const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
        float w[32];
        device::decode_mxfp4_bytes<16>(words, __ldg(scales + g), lut, w);
#pragma unroll
        for (int tt = 0; tt < kTokens; ++tt) {
          if (t0 + tt >= tokens) break;
          const float4* xv = reinterpret_cast<const float4*>(x + static_cast<std::size_t>(t0 + tt) * k + g * 32);
          float s = 0.0f;
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const float4 v = __ldg(xv + i);
            s += w[4 * i] * v.x + w[4 * i + 1] * v.y + w[4 * i + 2] * v.z + w[4 * i + 3] * v.w;
          }
          acc[tt] += s;
        }
      }
    } else if (k % 8 == 0) {
      const uint16_t* wrow = a.weight + static_cast<std::size_t>(row) * k;
      for (std::size_t c = lane; c < k / 8; c += kWarp) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(wrow + c * 8));
        const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
        float w[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          w[2 * i] = __uint_as_float(words[i] << 16);
          w[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
        }
#pragma unroll
        for (int tt = 0; tt < kTokens; ++tt) {
          if (t0 + tt >= tokens) break;
          const float4* xv = reinterpret_cast<const float4*>(x + static_cast<std::size_t>(t0 + tt) * k + c * 8);
          const float4 v0 = __ldg(xv), v1 = __ldg(xv + 1);
          acc[tt] += w[0] * v0.x + w[1] * v0.y + w[2] * v0.z + w[3] * v0.w + w[4] * v1.x +
                     w[5] * v1.y + w[6] * v1.z + w[7] * v1.w;
        }
      }
    } else {
      const uint16_t* wrow = a.weight + static_cast<std::size_t>(row) * k;
      for (std::size_t c = lane; c < k; c += kWarp) {
        const float w = bf16_to_float(wrow[c]);
#pragma unroll
        for (int tt = 0; tt < kTokens; ++tt) {
          if (t0 + tt >= tokens) break;
          acc[tt] += w * x[static_cast<std::size_t>(t0 + tt) * k + c];
        }
      }
    }
#pragma unroll
    for (int tt = 0; tt < kTokens; ++tt) {
      const float sum = device::warp_sum(acc[tt]);  // every lane takes part
      if (lane == 0 && t0 + tt < tokens) {
        const std::size_t at = static_cast<std::size_t>(t0 + tt) * n + row;
        y[at] = (residual ? residual[at] : 0.0f) + sum + bias;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Tensor-core GEMM: a block computes a (64 rows of x) x (64 outputs) tile of
// y with 4 warps of 2x2 WMMA 16x16 fragments, stepping K by 64. The x tile
// is rounded to bf16 in shared memory; the weight tile is decoded there
// (MXFP4 values are exact in bf16). Rows come from a dense range or from an
// expert tile of the grouping table.

constexpr int kBM = kGemmTileRows, kBN = 64, kBK = 64;
constexpr int kPad = 8;          // bf16 elements of row padding (keeps 32-byte fragment alignment)
constexpr int kGemmThreads = 128;

struct GemmArgs {
  const uint8_t* blocks;   // MXFP4 (count, N, K/32, 16)
  const uint8_t* scales;   // MXFP4 (count, N, K/32)
  const uint16_t* weight;  // bf16 (N, K)
  const uint16_t* bias;    // (count, N) or null
  const float* x;
  int rows;                // dense: T
  int n, k;
  const float* residual;   // dense only, (T, N) or null
  float* y;
  // expert tiles (null: dense)
  const int32_t* tile_expert;
  const int32_t* tile_begin;
  const int32_t* tile_end;
  const int32_t* sorted_entry;  // gather rows when non-null
  int x_row_divisor;
};

template <bool Mxfp4>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(GemmArgs a) {
  using namespace nvcuda;
  __shared__ __align__(128) __nv_bfloat16 as[kBM][kBK + kPad];
  __shared__ __align__(128) __nv_bfloat16 bs[kBN][kBK + kPad];
  __shared__ __align__(128) float cs[kBM][kBN + 4];
  __shared__ float lut[16];
  __shared__ int src_row[kBM];  // x row of each tile row, -1 outside

  int expert = 0, begin = 0, end = 0;
  const int tile = static_cast<int>(blockIdx.y);
  if (a.tile_expert != nullptr) {
    expert = a.tile_expert[tile];
    if (expert < 0) return;  // whole block: before any barrier
    begin = a.tile_begin[tile];
    end = a.tile_end[tile];
  } else {
    begin = tile * kBM;
    end = min(a.rows, begin + kBM);
  }
  const int tid = static_cast<int>(threadIdx.x);
  if (tid < 16) lut[tid] = device::kE2M1[tid];
  if (tid < kBM) {
    const int r = begin + tid;
    int src = -1;
    if (r < end) src = a.sorted_entry ? a.sorted_entry[r] / a.x_row_divisor : r;
    src_row[tid] = src;
  }
  __syncthreads();

  const int n0 = static_cast<int>(blockIdx.x) * kBN;
  const std::size_t n = static_cast<std::size_t>(a.n), k = static_cast<std::size_t>(a.k);
  const std::size_t groups = k / 32;
  const std::size_t matrix = static_cast<std::size_t>(expert);
  const int warp = tid / kWarp;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (std::size_t k0 = 0; k0 < k; k0 += kBK) {
    // x tile: 64 rows x 64 floats = 1024 float4, 8 per thread.
#pragma unroll
    for (int i = 0; i < kBM * kBK / 4 / kGemmThreads; ++i) {
      const int idx = tid + i * kGemmThreads;
      const int r = idx / (kBK / 4), c = (idx % (kBK / 4)) * 4;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      const int src = src_row[r];
      if (src >= 0 && k0 + c < k) {
        v = __ldg(reinterpret_cast<const float4*>(a.x + static_cast<std::size_t>(src) * k + k0 + c));
      }
      __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(&as[r][c]);
      dst[0] = __floats2bfloat162_rn(v.x, v.y);
      dst[1] = __floats2bfloat162_rn(v.z, v.w);
    }
    // weight tile: 64 rows x 64 elements.
    if constexpr (Mxfp4) {
      // two MXFP4 blocks (32 contiguous bytes) per row: one 16-byte block per thread.
      const int r = tid / 2, half = tid % 2;
      const std::size_t g = k0 / 32 + half;
      float w[32];
      if (n0 + r < a.n && g < groups) {
        const std::size_t b = (matrix * n + n0 + r) * groups + g;
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(a.blocks + b * 16));
        const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
        device::decode_mxfp4_bytes<16>(words, __ldg(a.scales + b), lut, w);
      } else {
#pragma unroll
        for (int i = 0; i < 32; ++i) w[i] = 0.0f;
      }
      __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(&bs[r][half * 32]);
#pragma unroll
      for (int i = 0; i < 16; ++i) dst[i] = __floats2bfloat162_rn(w[2 * i], w[2 * i + 1]);
    } else {
      // 64 rows x 8 chunks of 8 bf16: 4 uint4 per thread.
#pragma unroll
      for (int i = 0; i < kBN * kBK / 8 / kGemmThreads; ++i) {
        const int idx = tid + i * kGemmThreads;
        const int r = idx / (kBK / 8), c = (idx % (kBK / 8)) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (n0 + r < a.n && k0 + c < k) {
          v = __ldg(reinterpret_cast<const uint4*>(a.weight + static_cast<std::size_t>(n0 + r) * k + k0 + c));
        }
        *reinterpret_cast<uint4*>(&bs[r][c]) = v;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &as[wm + 16 * i][kk], kBK + kPad);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &bs[wn + 16 * j][kk], kBK + kPad);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&cs[wm + 16 * i][wn + 16 * j], acc[i][j], kBN + 4, wmma::mem_row_major);
  __syncthreads();
  for (int idx = tid; idx < kBM * kBN; idx += kGemmThreads) {
    const int r = idx / kBN, c = idx % kBN;
    const int out_row = begin + r, col = n0 + c;
    if (out_row >= end || col >= a.n) continue;
    const std::size_t at = static_cast<std::size_t>(out_row) * n + col;
    const float b = a.bias ? bf16_to_float(a.bias[matrix * n + col]) : 0.0f;
    a.y[at] = (a.residual ? a.residual[at] : 0.0f) + cs[r][c] + b;
  }
}

// ---------------------------------------------------------------------------
// Grouping routed entries by expert: one block counts, scans, fills the tile
// table and scatters the entries (positions within an expert by atomics).

constexpr int kGroupThreads = 1024;

__global__ void __launch_bounds__(kGroupThreads)
group_kernel(const int32_t* experts, int entries, int num_experts, ExpertGrouping g) {
  extern __shared__ int shared[];
  int* count = shared;                 // (E)
  int* cursor = shared + num_experts;  // (E)
  const int tid = static_cast<int>(threadIdx.x);
  for (int e = tid; e < num_experts; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int i = tid; i < entries; i += blockDim.x) atomicAdd(&count[experts[i]], 1);
  __syncthreads();
  if (tid == 0) {
    int offset = 0, tiles = 0;
    for (int e = 0; e < num_experts; ++e) {
      cursor[e] = offset;
      for (int r = 0; r < count[e]; r += kGemmTileRows) {
        g.tile_expert[tiles] = e;
        g.tile_begin[tiles] = offset + r;
        g.tile_end[tiles] = offset + min(count[e], r + kGemmTileRows);
        ++tiles;
      }
      offset += count[e];
    }
    for (; tiles < g.max_tiles; ++tiles) {
      g.tile_expert[tiles] = -1;
      g.tile_begin[tiles] = 0;
      g.tile_end[tiles] = 0;
    }
  }
  __syncthreads();
  for (int i = tid; i < entries; i += blockDim.x) {
    const int pos = atomicAdd(&cursor[experts[i]], 1);
    g.sorted_entry[pos] = i;
    g.entry_position[i] = pos;
  }
}

void check_mxfp4(const DeviceMXFP4& w, const char* what) {
  if (w.rows <= 0 || w.cols <= 0 || w.cols % 32 != 0 || w.count <= 0) {
    throw ShapeError(std::string(what) + ": MXFP4 weight (" + std::to_string(w.count) + " x " +
                     std::to_string(w.rows) + ", " + std::to_string(w.cols) +
                     ") needs positive sizes and cols divisible by 32");
  }
}

void launch_gemm(bool mxfp4, const GemmArgs& a, unsigned tiles, stream_t stream) {
  const dim3 grid(blocks_for(a.n, kBN), tiles);
  if (mxfp4) {
    gemm_kernel<true><<<grid, kGemmThreads, 0, stream>>>(a);
  } else {
    gemm_kernel<false><<<grid, kGemmThreads, 0, stream>>>(a);
  }
  check_launch("gemm_kernel");
}

void launch_gemv(bool mxfp4, const GemvArgs& a, unsigned entries, stream_t stream) {
  const dim3 grid(blocks_for(a.n, kGemvWarps), entries);
  if (mxfp4) {
    gemv_kernel<true><<<grid, kGemvWarps * kWarp, 0, stream>>>(a);
  } else {
    gemv_kernel<false><<<grid, kGemvWarps * kWarp, 0, stream>>>(a);
  }
  check_launch("gemv_kernel");
}

void check_tokens(int tokens, const char* what) {
  if (tokens <= 0) throw ShapeError(std::string(what) + ": token count " + std::to_string(tokens) + " must be positive");
  if (tokens > 65535 * kGemmTileRows) throw ShapeError(std::string(what) + ": " + std::to_string(tokens) + " tokens exceed one launch");
}

}  // namespace

void linear(DeviceMXFP4 w, const bf16* bias, const float* x, int tokens, const float* residual,
            float* y, LinearPath path, stream_t stream) {
  check_mxfp4(w, "linear");
  check_tokens(tokens, "linear");
  if (path == LinearPath::tensor_core) {
    GemmArgs a{w.blocks, w.scales, nullptr, bits(bias), x, tokens, w.rows, w.cols, residual, y,
               nullptr, nullptr, nullptr, nullptr, 1};
    launch_gemm(true, a, blocks_for(tokens, kBM), stream);
  } else {
    GemvArgs a{w.blocks, w.scales, nullptr, bits(bias), nullptr, 1, x, tokens, w.rows, w.cols, residual, y};
    launch_gemv(true, a, 1, stream);
  }
}

void linear(DeviceBF16 w, const bf16* bias, const float* x, int tokens, const float* residual,
            float* y, LinearPath path, stream_t stream) {
  if (w.rows <= 0 || w.cols <= 0) {
    throw ShapeError("linear: bf16 weight (" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
                     ") must have positive sizes");
  }
  check_tokens(tokens, "linear");
  // The tensor-core tile loader reads whole 32-element chunks of K.
  if (path == LinearPath::tensor_core && w.cols % 32 == 0) {
    GemmArgs a{nullptr, nullptr, bits(w.data), bits(bias), x, tokens, w.rows, w.cols, residual, y,
               nullptr, nullptr, nullptr, nullptr, 1};
    launch_gemm(false, a, blocks_for(tokens, kBM), stream);
  } else {
    GemvArgs a{nullptr, nullptr, bits(w.data), bits(bias), nullptr, 1, x, tokens, w.rows, w.cols, residual, y};
    launch_gemv(false, a, 1, stream);
  }
}

void expert_linear_vector(DeviceMXFP4 w, const bf16* bias, const int32_t* experts, int entries,
                          const float* x, int x_row_divisor, float* y, stream_t stream) {
  check_mxfp4(w, "expert_linear_vector");
  if (entries <= 0 || entries > 65535 || x_row_divisor <= 0) {
    throw ShapeError("expert_linear_vector: " + std::to_string(entries) +
                     " entries (need 1..65535) with row divisor " + std::to_string(x_row_divisor));
  }
  GemvArgs a{w.blocks, w.scales, nullptr, bits(bias), experts, x_row_divisor, x, 1, w.rows, w.cols, nullptr, y};
  launch_gemv(true, a, static_cast<unsigned>(entries), stream);
}

void group_by_expert(const int32_t* experts, int entries, int num_experts, ExpertGrouping g,
                     stream_t stream) {
  if (entries <= 0 || num_experts <= 0 || num_experts > 4096 ||
      g.max_tiles < expert_tile_bound(entries, num_experts)) {
    throw ShapeError("group_by_expert: " + std::to_string(entries) + " entries over " +
                     std::to_string(num_experts) + " experts with " + std::to_string(g.max_tiles) +
                     " tiles (need " + std::to_string(expert_tile_bound(entries, num_experts)) + ")");
  }
  const std::size_t shared = 2 * static_cast<std::size_t>(num_experts) * sizeof(int);
  group_kernel<<<1, kGroupThreads, shared, stream>>>(experts, entries, num_experts, g);
  check_launch("group_kernel");
}

void expert_linear_grouped(DeviceMXFP4 w, const bf16* bias, const ExpertGrouping& g, int entries,
                           const float* x, bool gather, int x_row_divisor, float* y, stream_t stream) {
  check_mxfp4(w, "expert_linear_grouped");
  if (entries <= 0 || x_row_divisor <= 0 || g.max_tiles <= 0 || g.max_tiles > 65535) {
    throw ShapeError("expert_linear_grouped: " + std::to_string(entries) + " entries, " +
                     std::to_string(g.max_tiles) + " tiles, row divisor " + std::to_string(x_row_divisor));
  }
  GemmArgs a{w.blocks, w.scales, nullptr, bits(bias), x, entries, w.rows, w.cols, nullptr, y,
             g.tile_expert, g.tile_begin, g.tile_end, gather ? g.sorted_entry : nullptr, x_row_divisor};
  launch_gemm(true, a, static_cast<unsigned>(g.max_tiles), stream);
}

}  // namespace gptoss::cuda
