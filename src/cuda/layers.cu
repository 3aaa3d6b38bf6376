// Kernels of the non-linear layer parts: RMSNorm, YaRN rotation with the
// KV-cache write, flash-style sink attention (sliding window, GQA), router
// top-k + softmax, clipped SwiGLU, embedding lookup and the MoE combine.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "gptoss/cuda/device_math.cuh"
#include "gptoss/cuda/kernels.hpp"

namespace gptoss::cuda {

namespace {

using namespace device;  // the shared kernel helpers (device_math.cuh)
using std::int32_t;
using std::uint16_t;

void require(bool ok, const std::string& what) {
  if (!ok) throw ShapeError(what);
}

// --- RMSNorm: one block per row ---------------------------------------------

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads)
rms_norm_kernel(const float* x, int dim, const uint16_t* scale, float eps, float* out) {
  __shared__ float partial[kNormThreads / kWarp];
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * dim;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) sum += x[row + i] * x[row + i];
  sum = device::warp_sum(sum);
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = sum;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kNormThreads / kWarp; ++w) total += partial[w];
  const float inv = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[row + i] = x[row + i] * inv * bf16_to_float(scale[i]);
}

// --- YaRN rotation of q and k, cache write of k and v: one block per token --

constexpr int kRopeThreads = 256;

__global__ void __launch_bounds__(kRopeThreads)
rope_qkv_kernel(const float* qkv, int nq, int nkv, int d, int first, const double* inv_freq,
                double concentration, float* q, float* k_cache, float* v_cache) {
  extern __shared__ float trig[];  // cos (D/2), sin (D/2)
  const int half = d / 2, t = static_cast<int>(blockIdx.x);
  const long long p = static_cast<long long>(first) + t;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double angle = static_cast<double>(p) * inv_freq[i];
    trig[i] = static_cast<float>(cos(angle) * concentration);
    trig[half + i] = static_cast<float>(sin(angle) * concentration);
  }
  __syncthreads();
  const int width = d * (nq + 2 * nkv);
  const float* row = qkv + static_cast<std::size_t>(t) * width;
  // rotated pairs of the nq query and nkv key heads
  for (int idx = threadIdx.x; idx < (nq + nkv) * half; idx += blockDim.x) {
    const int head = idx / half, i = idx % half;
    const float x1 = row[head * d + i], x2 = row[head * d + i + half];
    const float c = trig[i], s = trig[half + i];
    float* dst = head < nq ? q + (static_cast<std::size_t>(t) * nq + head) * d
                           : k_cache + (static_cast<std::size_t>(p) * nkv + (head - nq)) * d;
    dst[i] = x1 * c - x2 * s;
    dst[i + half] = x2 * c + x1 * s;
  }
  for (int idx = threadIdx.x; idx < nkv * d; idx += blockDim.x) {
    v_cache[static_cast<std::size_t>(p) * nkv * d + idx] = row[(nq + nkv) * d + idx];
  }
}

// --- Sink attention: one block per (query token, KV head) -------------------
// Warp w handles query head g * group + w; K/V tiles of 32 keys are loaded
// into shared memory once for the whole group. Lane l scores key j0 + l,
// then the tile's probabilities are broadcast to accumulate lane-owned
// output dimensions l, l + 32, ...
//
// With few query tokens (decode) the keys are also split into chunks over
// blockIdx.z, so a long context occupies every multiprocessor: each chunk
// writes its unnormalized output, running max and sum (no sink), and
// attention_combine_kernel merges the chunks with the sink.

constexpr int kKeysPerTile = kWarp;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxGroupWarps = 16;
constexpr long long kSplitBelowBlocks = 128;  // split the keys when T x nkv is below this
constexpr long long kTargetBlocks = 256;      // aim for this many blocks with the split
constexpr long long kMinChunk = 64;           // keys per chunk at least

__global__ void attention_kernel(const float* q, const float* k_cache, const float* v_cache,
                                 int first, int nq, int nkv, int d, const uint16_t* sinks,
                                 float scale, int window, float* out, int chunk, float* part_o,
                                 float* part_ml) {
  extern __shared__ float smem[];
  const int stride = d + 1;  // padded rows: lane-per-key reads hit distinct banks
  float* ks = smem;                             // (32, D + 1)
  float* vs = ks + kKeysPerTile * stride;       // (32, D + 1)
  float* qs = vs + kKeysPerTile * stride;       // (warps, D)

  const int t = static_cast<int>(blockIdx.x), g = static_cast<int>(blockIdx.y);
  const int group = nq / nkv;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  const long long p = static_cast<long long>(first) + t;
  const long long lo = window > 0 ? max(0LL, p - window + 1) : 0LL;
  // keys [begin, last] of this block: all visible ones, or chunk blockIdx.z of them
  const bool split = chunk > 0;
  const int z = static_cast<int>(blockIdx.z);
  const long long begin = split ? lo + static_cast<long long>(z) * chunk : lo;
  const long long last = split ? min(p, begin + chunk - 1) : p;
  const int tokens = static_cast<int>(gridDim.x);
  constexpr int kDims = kMaxHeadDim / kWarp;

  for (int h0 = 0; h0 < group; h0 += warps) {
    const int local = h0 + warp;
    const bool active = local < group;
    const int h = g * group + local;
    if (active) {
      for (int i = lane; i < d; i += kWarp) qs[warp * d + i] = q[(static_cast<std::size_t>(t) * nq + h) * d + i];
    }
    // running max and sum, seeded by the sink (exp(sink - m) = 1); chunks leave it to the combine
    float m = split ? -INFINITY : (active ? bf16_to_float(sinks[h]) : 0.0f);
    float l = split ? 0.0f : 1.0f;
    float o[kDims] = {};
    for (long long j0 = begin; j0 <= last; j0 += kKeysPerTile) {
      __syncthreads();  // the previous tile (and qs) are consumed / written
      for (int idx = threadIdx.x; idx < kKeysPerTile * d; idx += blockDim.x) {
        const int r = idx / d, c = idx % d;
        const long long j = j0 + r;
        float kv = 0.0f, vv = 0.0f;
        if (j <= last) {
          const std::size_t at = (static_cast<std::size_t>(j) * nkv + g) * d + c;
          kv = k_cache[at];
          vv = v_cache[at];
        }
        ks[r * stride + c] = kv;
        vs[r * stride + c] = vv;
      }
      __syncthreads();
      if (!active) continue;
      const long long j = j0 + lane;
      float s = -INFINITY;
      if (j <= last) {
        float dot = 0.0f;
        for (int i = 0; i < d; ++i) dot += qs[warp * d + i] * ks[lane * stride + i];
        s = dot * scale;
      }
      const float m_new = fmaxf(m, device::warp_max(s));
      const float alpha = expf(m - m_new);
      const float pj = j <= last ? expf(s - m_new) : 0.0f;
      l = l * alpha + device::warp_sum(pj);
#pragma unroll
      for (int i = 0; i < kDims; ++i) o[i] *= alpha;
      const int keys = static_cast<int>(min(static_cast<long long>(kKeysPerTile), last - j0 + 1));
      for (int r = 0; r < keys; ++r) {
        const float pr = __shfl_sync(device::kFullMask, pj, r);
#pragma unroll
        for (int i = 0; i < kDims; ++i) {
          const int c = lane + i * kWarp;
          if (c < d) o[i] += pr * vs[r * stride + c];
        }
      }
      m = m_new;
    }
    if (active && split) {
      const std::size_t row = (static_cast<std::size_t>(z) * tokens + t) * nq + h;  // (chunks, T, nq)
#pragma unroll
      for (int i = 0; i < kDims; ++i) {
        const int c = lane + i * kWarp;
        if (c < d) part_o[row * d + c] = o[i];
      }
      if (lane == 0) {
        part_ml[2 * row] = m;
        part_ml[2 * row + 1] = l;
      }
    } else if (active) {
#pragma unroll
      for (int i = 0; i < kDims; ++i) {
        const int c = lane + i * kWarp;
        if (c < d) out[static_cast<std::size_t>(t) * nq * d + static_cast<std::size_t>(h) * d + c] = o[i] / l;
      }
    }
    __syncthreads();  // qs is rewritten by the next head pass
  }
}

/// out (T, nq D) from `chunks` partial results: M = max(sink, m_z),
/// L = exp(sink - M) + sum l_z exp(m_z - M), out = sum o_z exp(m_z - M) / L.
/// An empty chunk has m = -inf, l = 0, o = 0 and adds nothing.
__global__ void attention_combine_kernel(const float* part_o, const float* part_ml, int chunks, int nq,
                                         int d, const uint16_t* sinks, float* out) {
  const int t = static_cast<int>(blockIdx.x), h = static_cast<int>(blockIdx.y);
  const int tokens = static_cast<int>(gridDim.x);
  const float sink = bf16_to_float(sinks[h]);
  float big = sink;
  for (int z = 0; z < chunks; ++z) big = fmaxf(big, part_ml[2 * ((static_cast<std::size_t>(z) * tokens + t) * nq + h)]);
  float sum = expf(sink - big);
  for (int z = 0; z < chunks; ++z) {
    const std::size_t row = (static_cast<std::size_t>(z) * tokens + t) * nq + h;
    sum += part_ml[2 * row + 1] * expf(part_ml[2 * row] - big);
  }
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.0f;
    for (int z = 0; z < chunks; ++z) {
      const std::size_t row = (static_cast<std::size_t>(z) * tokens + t) * nq + h;
      acc += part_o[row * d + c] * expf(part_ml[2 * row] - big);
    }
    out[(static_cast<std::size_t>(t) * nq + h) * d + c] = acc / sum;
  }
}

// --- Router: one thread per token ---------------------------------------------

__device__ bool ranks_before(float a, int ia, float b, int ib) {
  // descending, NaN last, ties to the lower index
  if (isnan(a) || isnan(b)) return isnan(b) && (!isnan(a) || ia < ib);
  return a > b || (a == b && ia < ib);
}

constexpr int kMaxTopK = 32;

__global__ void route_kernel(const float* logits, int tokens, int e_count, int k, int32_t* indices,
                             float* weights) {
  const int t = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (t >= tokens) return;
  const float* row = logits + static_cast<std::size_t>(t) * e_count;
  int chosen[kMaxTopK];
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < e_count; ++e) {
      bool taken = false;
      for (int i = 0; i < j; ++i) taken = taken || chosen[i] == e;
      if (taken) continue;
      if (best < 0 || ranks_before(row[e], e, row[best], best)) best = e;
    }
    chosen[j] = best;
  }
  const float top = row[chosen[0]];
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) sum += expf(row[chosen[j]] - top);
  for (int j = 0; j < k; ++j) {
    indices[static_cast<std::size_t>(t) * k + j] = chosen[j];
    weights[static_cast<std::size_t>(t) * k + j] = expf(row[chosen[j]] - top) / sum;
  }
}

// --- Elementwise ----------------------------------------------------------------

__global__ void swiglu_kernel(const float* x, long long pairs, float alpha, float limit, float* out) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= pairs) return;
  float glu = x[2 * i], lin = x[2 * i + 1];
  glu = limit < glu ? limit : glu;  // NaN stays NaN, as the reference's clamps
  lin = lin < -limit ? -limit : (limit < lin ? limit : lin);
  out[i] = glu / (1.0f + expf(-alpha * glu)) * (lin + 1.0f);
}

__global__ void embed_kernel(const int32_t* tokens, const uint16_t* table, int hidden, float* out) {
  const int t = static_cast<int>(blockIdx.x);
  const std::size_t src = static_cast<std::size_t>(tokens[t]) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    out[static_cast<std::size_t>(t) * hidden + i] = bf16_to_float(table[src + i]);
  }
}

__global__ void combine_kernel(const float* x, const float* y, const int32_t* position,
                               const float* weights, int k, int hidden, float* out) {
  const int t = static_cast<int>(blockIdx.x);
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      const int entry = t * k + j;
      const int pos = position ? position[entry] : entry;
      acc += weights[entry] * y[static_cast<std::size_t>(pos) * hidden + i];
    }
    const std::size_t at = static_cast<std::size_t>(t) * hidden + i;
    out[at] = x[at] + acc;
  }
}

// --- Random fill (benchmarks): splitmix64 of (seed, index) ----------------------

__device__ std::uint64_t mix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void fill_bf16_kernel(uint16_t* p, std::size_t n, std::uint64_t seed, float lo, float hi) {
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(mix(seed ^ (i * 0xd1342543de82ef95ull)) >> 40) * 0x1p-24f;
    const float v = lo + (hi - lo) * u;
    p[i] = static_cast<uint16_t>(__float_as_uint(v) >> 16);  // truncation is fine for random data
  }
}

__global__ void fill_mxfp4_kernel(std::uint8_t* blocks, std::uint8_t* scales, std::size_t groups,
                                  std::uint64_t seed, int scale_byte) {
  for (std::size_t g = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t a = mix(seed ^ (2 * g)), b = mix(seed ^ (2 * g + 1));
    uint4 v;
    v.x = static_cast<unsigned>(a);
    v.y = static_cast<unsigned>(a >> 32);
    v.z = static_cast<unsigned>(b);
    v.w = static_cast<unsigned>(b >> 32);
    reinterpret_cast<uint4*>(blocks)[g] = v;
    scales[g] = static_cast<std::uint8_t>(scale_byte - 1 + static_cast<int>(mix(seed + g) % 3));
  }
}

}  // namespace

void fill_random(bf16* p, std::size_t n, std::uint64_t seed, float lo, float hi, stream_t stream) {
  if (n == 0) return;
  fill_bf16_kernel<<<1024, 256, 0, stream>>>(reinterpret_cast<uint16_t*>(p), n, seed, lo, hi);
  check_launch("fill_bf16_kernel");
}

void fill_random_mxfp4(std::uint8_t* blocks, std::uint8_t* scales, std::size_t groups, std::uint64_t seed,
                       std::uint8_t scale_byte, stream_t stream) {
  require(scale_byte >= 1 && scale_byte <= 253, "fill_random_mxfp4: scale byte " + std::to_string(scale_byte) +
                                                    " must leave room for +-1");
  if (groups == 0) return;
  fill_mxfp4_kernel<<<1024, 256, 0, stream>>>(blocks, scales, groups, seed, scale_byte);
  check_launch("fill_mxfp4_kernel");
}

void rms_norm(const float* x, int tokens, int dim, const bf16* scale, float eps, float* out,
              stream_t stream) {
  require(tokens > 0 && dim > 0, "rms_norm: shape (" + std::to_string(tokens) + ", " + std::to_string(dim) + ") must be positive");
  rms_norm_kernel<<<static_cast<unsigned>(tokens), kNormThreads, 0, stream>>>(x, dim, bits(scale), eps, out);
  check_launch("rms_norm_kernel");
}

void rope_qkv(const float* qkv, int tokens, int num_heads, int num_kv_heads, int head_dim,
              int first_position, const double* inv_freq, double concentration, float* q,
              float* k_cache, float* v_cache, stream_t stream) {
  require(tokens > 0 && num_heads > 0 && num_kv_heads > 0 && head_dim > 0 && head_dim % 2 == 0 &&
              first_position >= 0,
          "rope_qkv: " + std::to_string(tokens) + " tokens, " + std::to_string(num_heads) + "/" +
              std::to_string(num_kv_heads) + " heads of " + std::to_string(head_dim) +
              " at position " + std::to_string(first_position));
  const std::size_t shared = static_cast<std::size_t>(head_dim) * sizeof(float);
  rope_qkv_kernel<<<static_cast<unsigned>(tokens), kRopeThreads, shared, stream>>>(
      qkv, num_heads, num_kv_heads, head_dim, first_position, inv_freq, concentration, q, k_cache, v_cache);
  check_launch("rope_qkv_kernel");
}

void sink_attention(const float* q, const float* k_cache, const float* v_cache, int first_position,
                    int tokens, int num_heads, int num_kv_heads, int head_dim, const bf16* sinks,
                    float scale, int window, float* out, stream_t stream) {
  require(tokens > 0 && tokens <= 2147483647 && num_kv_heads > 0 && num_kv_heads <= 65535 &&
              num_heads % num_kv_heads == 0 && head_dim > 0 && head_dim <= kMaxHeadDim &&
              first_position >= 0 && window >= 0,
          "sink_attention: " + std::to_string(tokens) + " tokens, " + std::to_string(num_heads) + "/" +
              std::to_string(num_kv_heads) + " heads of " + std::to_string(head_dim) +
              " (at most " + std::to_string(kMaxHeadDim) + "), window " + std::to_string(window));
  const int group = num_heads / num_kv_heads;
  const int warps = group < kMaxGroupWarps ? group : kMaxGroupWarps;
  const std::size_t shared =
      (2 * static_cast<std::size_t>(kKeysPerTile) * (head_dim + 1) + static_cast<std::size_t>(warps) * head_dim) *
      sizeof(float);
  // Split the keys when (T x nkv) blocks alone would leave the device idle.
  const long long p_last = static_cast<long long>(first_position) + tokens - 1;
  const long long span = window > 0 ? std::min<long long>(window, p_last + 1) : p_last + 1;
  int chunk = 0, chunks = 1;
  if (static_cast<long long>(tokens) * num_kv_heads < kSplitBelowBlocks && span > kMinChunk) {
    const long long wanted = (kTargetBlocks + static_cast<long long>(tokens) * num_kv_heads - 1) /
                             (static_cast<long long>(tokens) * num_kv_heads);
    long long c = (span + wanted - 1) / wanted;
    c = std::max<long long>(kMinChunk, (c + kKeysPerTile - 1) / kKeysPerTile * kKeysPerTile);
    chunks = static_cast<int>((span + c - 1) / c);
    if (chunks > 1) chunk = static_cast<int>(c);
  }
  if (chunk == 0) {
    const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(num_kv_heads));
    attention_kernel<<<grid, warps * kWarp, shared, stream>>>(q, k_cache, v_cache, first_position, num_heads,
                                                              num_kv_heads, head_dim, bits(sinks), scale,
                                                              window, out, 0, nullptr, nullptr);
    check_launch("attention_kernel");
    return;
  }
  // Partial results live in stream-ordered memory for the two kernels.
  const std::size_t rows = static_cast<std::size_t>(chunks) * tokens * num_heads;
  void* part = nullptr;
  const cudaError_t status = cudaMallocAsync(&part, rows * (head_dim + 2) * sizeof(float), stream);
  if (status != cudaSuccess) {
    throw CudaError(std::string("cudaMallocAsync for attention partials: ") + cudaGetErrorString(status));
  }
  float* part_o = static_cast<float*>(part);
  float* part_ml = part_o + rows * head_dim;
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(num_kv_heads), static_cast<unsigned>(chunks));
  attention_kernel<<<grid, warps * kWarp, shared, stream>>>(q, k_cache, v_cache, first_position, num_heads,
                                                            num_kv_heads, head_dim, bits(sinks), scale, window,
                                                            out, chunk, part_o, part_ml);
  check_launch("attention_kernel");
  attention_combine_kernel<<<dim3(static_cast<unsigned>(tokens), static_cast<unsigned>(num_heads)), 64, 0, stream>>>(
      part_o, part_ml, chunks, num_heads, head_dim, bits(sinks), out);
  check_launch("attention_combine_kernel");
  (void)cudaFreeAsync(part, stream);
}

void route_top_k(const float* logits, int tokens, int num_experts, int k, int32_t* indices,
                 float* weights, stream_t stream) {
  require(tokens > 0 && k > 0 && k <= num_experts && k <= kMaxTopK,
          "route_top_k: top-" + std::to_string(k) + " of " + std::to_string(num_experts) +
              " experts (k at most " + std::to_string(kMaxTopK) + ") for " + std::to_string(tokens) + " tokens");
  route_kernel<<<blocks_for(tokens, 128), 128, 0, stream>>>(logits, tokens, num_experts, k, indices, weights);
  check_launch("route_kernel");
}

void swiglu(const float* x, int rows, int intermediate, float alpha, float limit, float* out,
            stream_t stream) {
  require(rows > 0 && intermediate > 0, "swiglu: shape (" + std::to_string(rows) + ", " +
                                            std::to_string(intermediate) + ") must be positive");
  const long long pairs = static_cast<long long>(rows) * intermediate;
  swiglu_kernel<<<blocks_for(pairs, 256), 256, 0, stream>>>(x, pairs, alpha, limit, out);
  check_launch("swiglu_kernel");
}

void embed(const std::int32_t* tokens, int count, const bf16* table, int hidden, float* out,
           stream_t stream) {
  require(count > 0 && hidden > 0, "embed: " + std::to_string(count) + " tokens of width " + std::to_string(hidden));
  embed_kernel<<<static_cast<unsigned>(count), 256, 0, stream>>>(tokens, bits(table), hidden, out);
  check_launch("embed_kernel");
}

void moe_combine(const float* x, const float* y, const std::int32_t* entry_position,
                 const float* weights, int tokens, int k, int hidden, float* out, stream_t stream) {
  require(tokens > 0 && k > 0 && hidden > 0, "moe_combine: " + std::to_string(tokens) + " tokens, top-" +
                                                 std::to_string(k) + ", width " + std::to_string(hidden));
  combine_kernel<<<static_cast<unsigned>(tokens), 256, 0, stream>>>(x, y, entry_position, weights, k, hidden, out);
  check_launch("combine_kernel");
}

}  // namespace gptoss::cuda
