// cpu_fast linear layer: y (T, N) = x (T, K) W^T + bias for MXFP4, bf16 and
// fp32 weights, same signature and semantics as the reference overload.
//
// Work split: rows of W go to the thread pool in contiguous ranges, one per
// thread, each walked front to back; a thread that finishes early takes the
// back half of what another has not started (parallel_for_stealing). Inside a
// range, blocks of kRowBlock rows are multiplied with tiles of up to
// kMaxTokens tokens by the ISA's micro-kernels (linear_avx512.hpp,
// linear_avx2.hpp, linear_portable.hpp), K cut into blocks whose activation
// tile stays in L1 when several tokens share it; a micro-kernel call takes a
// group of 4 rows (2 for AVX2 batches), except one-token products of bf16
// weights on AVX-512, one row per call (Bf16DecodeRows). Each weight byte is read
// from memory once per call (batch 1: exactly once; batches: once per row
// block, reused from cache for every token tile). The activations are
// repacked once per call into the order the micro-kernel's decoder produces.
// From panel_min_tokens() tokens on (16 by default), the AVX-512 tier
// instead decodes each group of 32 rows once into a panel and multiplies
// every token with it (panel_avx512.hpp): decoding is then shared by all
// tokens and 32 x 12 accumulators stay in registers.
//
// Precision (set_matmul_precision or GPTOSS_MATMUL_PRECISION): fp32, the
// default, multiplies fp32 activations exactly (fp32 products, fp32 sums);
// bf16 rounds activations to bf16 and uses AVX512_BF16 dot products
// (about 2^-9 relative error per product); bf16x2 splits each activation into
// two bf16 terms (error at most 2^-17 of sum |w x|). The bf16 precisions need
// AVX512_BF16 and apply to MXFP4 and bf16 weights; elsewhere fp32 is used.
// int8, the least precise and fastest, rounds activations to int8 in blocks
// of 32 (one fp32 scale, max |x| / 127, per block) for MXFP4 and 8-bit
// weights' products, row streaming and panels alike, and multiplies them
// with AVX512_VNNI integer dot products (the E2M1 codes and the 8-bit
// weights are small integers: exact); bf16 weights' products run as bf16
// does.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gptoss/core/backend.hpp"
#include "gptoss/core/bf16.hpp"
#include "gptoss/core/cpu_features.hpp"
#include "gptoss/core/huge_pages.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/core/thread_pool.hpp"
#include "gptoss/core/weight_matrix.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/kernels/fast/linear_avx2.hpp"
#include "gptoss/kernels/fast/linear_avx512.hpp"
#include "gptoss/kernels/fast/linear_portable.hpp"
#include "gptoss/kernels/fast/panel_avx512.hpp"
#include "gptoss/kernels/reference/linear.hpp"

namespace gptoss {

/// How the fast linear kernels multiply fp32 activations (see linear.hpp).
enum class MatmulPrecision : int { fp32 = 0, bf16x2 = 1, bf16 = 2, int8 = 3 };

constexpr std::string_view matmul_precision_name(MatmulPrecision p) noexcept {
  switch (p) {
    case MatmulPrecision::fp32: return "fp32";
    case MatmulPrecision::bf16x2: return "bf16x2";
    case MatmulPrecision::bf16: return "bf16";
    case MatmulPrecision::int8: return "int8";
  }
  return "?";
}

/// The precision named `name` (fp32, bf16x2, bf16, int8), if any.
constexpr std::optional<MatmulPrecision> matmul_precision_from_name(std::string_view name) noexcept {
  for (MatmulPrecision p : {MatmulPrecision::fp32, MatmulPrecision::bf16x2, MatmulPrecision::bf16,
                            MatmulPrecision::int8}) {
    if (matmul_precision_name(p) == name) return p;
  }
  return std::nullopt;
}

namespace detail {
/// The starting precision: GPTOSS_MATMUL_PRECISION when it names one, else
/// fp32 (tools check the variable with matmul_precision_from_name and
/// reject an unknown name).
inline std::atomic<int>& matmul_precision_setting() noexcept {
  static std::atomic<int> setting{[] {
    const char* value = std::getenv("GPTOSS_MATMUL_PRECISION");
    if (value == nullptr) return 0;
    return static_cast<int>(matmul_precision_from_name(value).value_or(MatmulPrecision::fp32));
  }()};
  return setting;
}
}  // namespace detail

/// The precision of later fast linear calls (all threads).
inline void set_matmul_precision(MatmulPrecision p) noexcept {
  detail::matmul_precision_setting().store(static_cast<int>(p), std::memory_order_relaxed);
}
inline MatmulPrecision matmul_precision() noexcept {
  return static_cast<MatmulPrecision>(detail::matmul_precision_setting().load(std::memory_order_relaxed));
}

}  // namespace gptoss

namespace gptoss::kernels::fast {

inline constexpr int64_t kRowBlock = 16;  // rows per block (a multiple of every R)
// Row blocks a thread claims at a time from its share of a product
// (ThreadPool::parallel_for_stealing): 64 rows, so claims cost nothing next
// to the rows' bytes and the last claim of a product is short.
inline constexpr int64_t kStealChunkBlocks = 4;
inline constexpr int64_t kMaxGroupRows = 4;  // the largest R of any family
inline constexpr int64_t kActivationTileBytes = 24 << 10;  // K-block: x tile kept in L1

/// How a one-token product with bf16 weights walks its rows on AVX-512, at
/// the fp32, bf16 and bf16x2 precisions. A bf16 row is long (5760 bytes at
/// K = 2880); reading one row per micro-kernel call (`one`, the default)
/// gives each core a single forward stream, and whole-model decode at the
/// bf16 precision is 4-7% faster than with 4 rows read side by side
/// (`grouped`, as batches do; kept as the benchmarks' baseline).
/// docs/performance.md, "One bf16 row at a time"; the one-row kernels keep
/// independent partial sums ("One bf16 row, partial sums") and leave the
/// stream to the hardware prefetchers, which is what made one row pay at
/// the fp32 precision too ("A single bf16 row without software prefetch").
/// 8-bit rows, which cost more arithmetic per byte, read 4 rows at a time.
/// MXFP4 rows: Mxfp4DecodeRows.
enum class Bf16DecodeRows : int { one = 1, grouped = 4 };

inline std::atomic<int>& bf16_decode_rows_setting() noexcept {
  static std::atomic<int> setting{static_cast<int>(Bf16DecodeRows::one)};
  return setting;
}
inline Bf16DecodeRows bf16_decode_rows() noexcept {
  return static_cast<Bf16DecodeRows>(bf16_decode_rows_setting().load(std::memory_order_relaxed));
}
inline void set_bf16_decode_rows(Bf16DecodeRows rows) noexcept {
  bf16_decode_rows_setting().store(static_cast<int>(rows), std::memory_order_relaxed);
}

/// How a one-token MXFP4 product walks its rows at the bf16, bf16x2 and
/// int8 precisions. `one` (the default): each row read whole before the
/// next, in runs of 4 chunks (mxfp4_bf16_rows_avx512, mxfp4_int8_rows_avx512),
/// so each core reads one forward stream; `grouped`: 4 rows side by side, as
/// batches do (kept as the benchmarks' baseline). docs/performance.md,
/// "MXFP4 rows in runs of 4 chunks".
enum class Mxfp4DecodeRows : int { one = 1, grouped = 4 };

inline std::atomic<int>& mxfp4_decode_rows_setting() noexcept {
  static std::atomic<int> setting{static_cast<int>(Mxfp4DecodeRows::one)};
  return setting;
}
inline Mxfp4DecodeRows mxfp4_decode_rows() noexcept {
  return static_cast<Mxfp4DecodeRows>(mxfp4_decode_rows_setting().load(std::memory_order_relaxed));
}
inline void set_mxfp4_decode_rows(Mxfp4DecodeRows rows) noexcept {
  mxfp4_decode_rows_setting().store(static_cast<int>(rows), std::memory_order_relaxed);
}

/// Per-thread scratch buffers, one per Slot, of at least n elements, 64-byte
/// aligned: the micro-kernels load packed activations 64 bytes at a time, and
/// from a buffer with malloc's 16-byte alignment every such load crossed two
/// cache lines unless the buffer happened to start on one.
enum class ScratchSlot { packed_activations, decoded_row, padded_weights, rounding, panel, panel_scales, panel_rows };
template <class T, ScratchSlot Slot>
T* scratch_buffer(std::size_t n) {
  thread_local std::vector<T, HugePageAllocator<T>> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// ---- families: a micro-kernel with its activation layout ------------------
//
// A family provides Rows (the weight view it reads), XElem (packed activation
// element), kLanes (accumulator width), kMaxTokens, kChunk (K elements per
// chunk), kFlagsRows (whether rows can be flagged for exact recomputation),
// rows_for(tokens) (rows per micro-kernel call, divides kRowBlock),
// chunks(k), packed_stride(k), pack_token(x, k, out), tile<TT>(...) (the
// micro-kernel), sum_lanes(acc, count, sums) (reduces accumulators) and,
// when kFlagsRows, flag_rows(w, row, rows, bad) (rows to recompute exactly).

/// Packs one token: out[c C + p] = x[c C + local(p)] (0 past k) for every
/// chunk c of C elements in [0, stride): the activations in the order a
/// micro-kernel's decoder produces the weights.
template <int C, class Local>
void gather_chunks(const float* x, int64_t k, int64_t stride, float* out, Local local) {
  std::array<std::int32_t, C> source{};
  for (int p = 0; p < C; ++p) source[static_cast<std::size_t>(p)] = static_cast<std::int32_t>(local(p));
  for (int64_t base = 0; base < stride; base += C) {
    if (base + C <= k) {
      for (int p = 0; p < C; ++p) out[base + p] = x[base + source[static_cast<std::size_t>(p)]];
    } else {
      for (int p = 0; p < C; ++p) {
        const int64_t s = base + source[static_cast<std::size_t>(p)];
        out[base + p] = s < k ? x[s] : 0.0f;
      }
    }
  }
}

/// Rounds one block of 32 activations to int8 as the int8 precision does:
/// scale = max |x| / 127, q = x * (127 / max |x|) rounded to nearest (ties to
/// even; blocks under 2^-64 are first scaled by 2^64, exactly). Returns the scale (0 for an all-zero block; NaN when the block
/// holds a NaN or an infinity, so that the products come out NaN as the fp32
/// path's would). The AVX-512 packer (pack_int8_activations_avx512) gives
/// the same q and scales; tests use this one to form the activations the
/// kernel multiplies.
inline float quantize_activation_block_int8(const float* x, std::int8_t* q) noexcept {
  float amax = 0.0f;
  bool finite = true;
  for (int i = 0; i < 32; ++i) {
    finite = finite && std::isfinite(x[i]);
    amax = std::max(amax, std::fabs(x[i]));
  }
  if (!finite || amax == 0.0f) {
    std::fill(q, q + 32, std::int8_t{0});
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  // Blocks below 2^-64 are scaled up by 2^64 first (exactly), so that
  // 127 / max |x| stays finite for subnormal activations.
  const float boost = amax < 0x1p-64f ? 0x1p64f : 1.0f, boosted = amax * boost;
  const float inv = 127.0f / boosted;
  for (int i = 0; i < 32; ++i) {
    const float r = std::nearbyint(x[i] * boost * inv);
    q[i] = static_cast<std::int8_t>(std::clamp(r, -127.0f, 127.0f));
  }
  return boosted / 127.0f / boost;
}

/// Rounds one row x (k) as the int8 precision rounds activations: each block
/// of 32 (a last partial block padded with zeros) by
/// quantize_activation_block_int8; rounded[i] = q_i x scale. half_step[i],
/// when given, is half the block's scale (the most rounding moves x_i).
inline void round_activations_int8(const float* x, int64_t k, float* rounded, float* half_step = nullptr) noexcept {
  std::int8_t q[32];
  for (int64_t b = 0; b < k; b += 32) {
    const int64_t count = std::min<int64_t>(32, k - b);
    float block[32] = {};
    std::copy_n(x + b, count, block);
    const float scale = quantize_activation_block_int8(block, q);
    for (int64_t i = 0; i < count; ++i) {
      rounded[b + i] = static_cast<float>(q[i]) * scale;
      if (half_step != nullptr) half_step[b + i] = 0.5f * scale;
    }
  }
}

#if GPTOSS_X86

/// What the AVX-512 MXFP4 families share: 64-byte chunks of 4 blocks (128
/// weights) per row, 4-row groups, 16-lane accumulators, rows with extreme
/// scale bytes flagged for exact recomputation.
struct Avx512Mxfp4Family {
  using Rows = Mxfp4Rows;
  static constexpr int kLanes = 16;
  static constexpr int64_t kChunk = 128;
  static constexpr bool kFlagsRows = true;
  static constexpr int rows_for(int /*tokens*/) { return 4; }
  static int64_t chunks(int64_t k) { return (k / 32 + 3) / 4; }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    sum_lanes16_avx512(acc, count, sums);
  }
  static void flag_rows(const Rows& w, int64_t row, int64_t rows, std::uint32_t* bad) {
    flag_extreme_scales_avx512(w, row, rows, bad);
  }
};

struct Avx512Mxfp4F32 : Avx512Mxfp4Family {
  using XElem = float;
  static constexpr int kMaxTokens = 3;
  static int64_t packed_stride(int64_t k) { return chunks(k) * 128; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<128>(x, k, packed_stride(k), out, [](int p) {
      const int n = p / 16, i = p % 16;
      return 32 * (i / 4) + 8 * (i % 4) + n;
    });
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    mxfp4_f32_tile_avx512<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

/// MXFP4 x bf16 activations (the bf16 and bf16x2 precisions). At one token
/// the 4 rows of a call are read one after another (Mxfp4DecodeRows).
template <bool Split>
struct Avx512Mxfp4Bf16 : Avx512Mxfp4Family {
  using XElem = std::uint16_t;
  static constexpr int kMaxTokens = Split ? 3 : 4;
  static int64_t packed_stride(int64_t k) { return chunks(k) * 128 * (Split ? 2 : 1); }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    const int64_t logical = chunks(k) * 128;
    float* ordered = scratch_buffer<float, ScratchSlot::rounding>(static_cast<std::size_t>(logical));
    gather_chunks<128>(x, k, logical, ordered, [](int p) {
      const int n = p / 32, m = p % 32;
      return 32 * (m / 8) + 4 * (m % 8) + n;
    });
    round_planes_bf16_avx512(ordered, logical / 32, Split, out);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    if constexpr (TT == 1) {
      if (mxfp4_decode_rows() == Mxfp4DecodeRows::one) {
        mxfp4_bf16_rows_avx512<Split>(w, row, rows_for(1), c0, c1, x, acc);
        return;
      }
    }
    mxfp4_bf16_tile_avx512<rows_for(TT), TT, Split>(w, row, c0, c1, x, stride, acc);
  }
};

/// MXFP4 x int8 activations (the int8 precision), AVX512_VNNI.
struct Avx512Mxfp4Int8 : Avx512Mxfp4Family {
  using XElem = std::uint8_t;
  static constexpr int kMaxTokens = 4;
  static int64_t packed_stride(int64_t k) { return chunks(k) * kInt8ChunkBytes; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    pack_int8_activations_avx512(x, k, chunks(k), out);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    if constexpr (TT == 1) {
      if (mxfp4_decode_rows() == Mxfp4DecodeRows::one) {
        mxfp4_int8_rows_avx512(w, row, rows_for(1), c0, c1, x, acc);
        return;
      }
    }
    mxfp4_int8_tile_avx512<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

/// What the AVX-512 families with fp32 activations in natural order share:
/// chunks of Chunk elements, 16-lane accumulators, no flagged rows.
template <int64_t Chunk>
struct Avx512NaturalF32 {
  using XElem = float;
  static constexpr int kLanes = 16;
  static constexpr int64_t kChunk = Chunk;
  static constexpr bool kFlagsRows = false;
  static int64_t chunks(int64_t k) { return (k + Chunk - 1) / Chunk; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * Chunk; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<Chunk>(x, k, packed_stride(k), out, [](int p) { return p; });
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) { sum_lanes16_avx512(acc, count, sums); }
};

struct Avx512DenseF32 : Avx512NaturalF32<16> {
  using Rows = DenseRows<float>;
  static constexpr int kMaxTokens = 6;
  static constexpr int rows_for(int /*tokens*/) { return 4; }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    dense_f32_tile_avx512<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

struct Avx512Int8F32 : Avx512NaturalF32<32> {
  using Rows = Int8Rows;
  static constexpr int kMaxTokens = 4;
  static constexpr int rows_for(int /*tokens*/) { return 4; }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    int8_f32_tile_avx512<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

/// 8-bit weights x int8 activations (the int8 precision), AVX512_VNNI.
struct Avx512Int8Int8 {
  using Rows = Int8Rows;
  using XElem = std::uint8_t;
  static constexpr int kLanes = 16, kMaxTokens = 4;
  static constexpr int64_t kChunk = 64;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int /*tokens*/) { return 4; }
  static int64_t chunks(int64_t k) { return (k + 63) / 64; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * kInt8DenseChunkBytes; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    pack_int8_dense_activations_avx512(x, k, chunks(k), out);
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) { sum_lanes16_avx512(acc, count, sums); }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    int8_int8_tile_avx512<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

/// bf16 weights x fp32 activations (the fp32 precision); OneTokenRows rows
/// per call at one token (Bf16DecodeRows), 4 for batches.
template <int OneTokenRows>
struct Avx512DenseBf16F32 {
  using Rows = DenseRows<bf16>;
  using XElem = float;
  static constexpr int kLanes = 16, kMaxTokens = 4;
  static constexpr int64_t kChunk = 32;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int tokens) { return tokens == 1 ? OneTokenRows : 4; }
  static int64_t chunks(int64_t k) { return (k + 31) / 32; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * 32; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<32>(x, k, packed_stride(k), out, [](int i) { return i < 16 ? 2 * i : 2 * (i - 16) + 1; });
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    sum_lanes16_avx512(acc, count, sums);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    dense_bf16_f32_tile_avx512<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

/// bf16 weights x bf16 (Split: hi + lo) activations (the bf16 and bf16x2
/// precisions); OneTokenRows rows per call at one token (Bf16DecodeRows), 4
/// for batches.
template <bool Split, int OneTokenRows>
struct Avx512DenseBf16Bf16 {
  using Rows = DenseRows<bf16>;
  using XElem = std::uint16_t;
  static constexpr int kLanes = 16, kMaxTokens = 6;
  static constexpr int64_t kChunk = 32;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int tokens) { return tokens == 1 ? OneTokenRows : 4; }
  static int64_t chunks(int64_t k) { return (k + 31) / 32; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * 32 * (Split ? 2 : 1); }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    const int64_t logical = chunks(k) * 32;
    float* ordered = scratch_buffer<float, ScratchSlot::rounding>(static_cast<std::size_t>(logical));
    gather_chunks<32>(x, k, logical, ordered, [](int p) { return p; });
    round_planes_bf16_avx512(ordered, logical / 32, Split, out);
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    sum_lanes16_avx512(acc, count, sums);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    dense_bf16_bf16_tile_avx512<rows_for(TT), TT, Split>(w, row, c0, c1, x, stride, acc);
  }
};

struct Avx2Mxfp4F32 {
  using Rows = Mxfp4Rows;
  using XElem = float;
  static constexpr int kLanes = 8, kMaxTokens = 4;
  static constexpr int64_t kChunk = 32;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int tokens) { return tokens == 1 ? 4 : 2; }
  static int64_t chunks(int64_t k) { return k / 32; }
  static int64_t packed_stride(int64_t k) { return k; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<32>(x, k, packed_stride(k), out, [](int i) {
      const int half = i / 16, j = i % 16;
      return 16 * half + (j < 8 ? 2 * j : 2 * (j - 8) + 1);
    });
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    sum_lanes8_avx2(acc, count, sums);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    mxfp4_f32_tile_avx2<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

struct Avx2DenseF32 {
  using Rows = DenseRows<float>;
  using XElem = float;
  static constexpr int kLanes = 8, kMaxTokens = 4;
  static constexpr int64_t kChunk = 8;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int tokens) { return tokens <= 2 ? 4 : 2; }
  static int64_t chunks(int64_t k) { return (k + 7) / 8; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * 8; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<kChunk>(x, k, packed_stride(k), out, [](int p) { return p; });
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    sum_lanes8_avx2(acc, count, sums);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    dense_f32_tile_avx2<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

struct Avx2DenseBf16F32 {
  using Rows = DenseRows<bf16>;
  using XElem = float;
  static constexpr int kLanes = 8, kMaxTokens = 4;
  static constexpr int64_t kChunk = 16;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int tokens) { return tokens == 1 ? 4 : 2; }
  static int64_t chunks(int64_t k) { return (k + 15) / 16; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * 16; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<16>(x, k, packed_stride(k), out, [](int i) { return i < 8 ? 2 * i : 2 * (i - 8) + 1; });
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    sum_lanes8_avx2(acc, count, sums);
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    dense_bf16_f32_tile_avx2<rows_for(TT), TT>(w, row, c0, c1, x, stride, acc);
  }
};

#endif  // GPTOSS_X86

#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
template <class RowsT>
struct Portable {
  using Rows = RowsT;
  using XElem = float;
  static constexpr int kLanes = kPortableLanes, kMaxTokens = 4;
  static constexpr int64_t kChunk = 32;
  static constexpr bool kFlagsRows = false;
  static constexpr int rows_for(int /*tokens*/) { return 1; }
  static int64_t chunks(int64_t k) { return (k + 31) / 32; }
  static int64_t packed_stride(int64_t k) { return chunks(k) * 32; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    gather_chunks<kChunk>(x, k, packed_stride(k), out, [](int p) { return p; });
  }
  static void sum_lanes(const float* acc, int64_t count, float* sums) {
    for (int64_t i = 0; i < count; ++i) {
      float sum = 0.0f;
      for (int l = 0; l < kLanes; ++l) sum += acc[i * kLanes + l];
      sums[i] = sum;
    }
  }
  template <int TT>
  static void tile(const Rows& w, int64_t row, int64_t c0, int64_t c1, const XElem* x,
                   int64_t stride, float* acc) {
    tile_portable<1, TT>(w, row, c0, c1, x, stride, acc);
  }
};
#endif

// ---- the driver ------------------------------------------------------------

/// Calls fn(std::integral_constant<int, tokens>{}) for a run-time token
/// count in [1, Max]: the micro-kernels take their token count at compile time.
template <int Max, int TT = 1, class Fn>
void with_token_count(int tokens, const Fn& fn) {
  if constexpr (TT <= Max) {
    if (tokens == TT) {
      fn(std::integral_constant<int, TT>{});
    } else {
      with_token_count<Max, TT + 1>(tokens, fn);
    }
  }
}

/// Rows [r0, r1) of y for every token. A micro-kernel call covers R whole
/// rows; the last group of the matrix is shifted back to end at its last row
/// (recomputing a few rows, written once). `exact_row(r, t0, count)`
/// recomputes y[t0 : t0 + count, r] for the rows the family flags. A row
/// block is flagged after its first micro-kernel pass, which has just read
/// the scales the flags come from, so the scan reads them from cache
/// (scanned before it, they came from memory; docs/performance.md, "MXFP4
/// row kernels: the last chunk's scales, and the scale scan").
template <class Family, class ExactRow>
void linear_rows(const typename Family::Rows& w, int64_t chunks, const typename Family::XElem* xp,
                 int64_t stride, int64_t t_count, VectorView<const bf16> bias, MatrixView<float> y,
                 int64_t r0, int64_t r1, const ExactRow& exact_row) {
  constexpr int L = Family::kLanes;
  alignas(64) float acc[kRowBlock * Family::kMaxTokens * L];
  alignas(64) float sums[kRowBlock * Family::kMaxTokens];
  std::uint32_t bad[kRowBlock];
  const int64_t chunk_bytes =
      Family::packed_stride(Family::kChunk) * static_cast<int64_t>(sizeof(typename Family::XElem));
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t rows_here = std::min(kRowBlock, r1 - rb);
    std::fill(bad, bad + kRowBlock, 0u);
    for (int64_t t0 = 0; t0 < t_count; t0 += Family::kMaxTokens) {
      const int tt = static_cast<int>(std::min<int64_t>(Family::kMaxTokens, t_count - t0));
      const int64_t group = Family::rows_for(tt);
      const auto group_row = [&](int64_t g) { return std::min(rb + g, w.rows - group); };
      const int64_t groups_rows = (rows_here + group - 1) / group * group;
      std::fill(acc, acc + groups_rows * tt * L, 0.0f);
      const int64_t k_block =
          tt == 1 ? chunks : std::max<int64_t>(1, kActivationTileBytes / (tt * chunk_bytes));
      const typename Family::XElem* x_tile = xp + t0 * stride;
      for (int64_t c0 = 0; c0 < chunks; c0 += k_block) {
        const int64_t c1 = std::min(chunks, c0 + k_block);
        for (int64_t g = 0; g < rows_here; g += group) {
          with_token_count<Family::kMaxTokens>(tt, [&](auto count) {
            Family::template tile<decltype(count)::value>(w, group_row(g), c0, c1, x_tile, stride, acc + g * tt * L);
          });
        }
      }
      Family::sum_lanes(acc, groups_rows * tt, sums);
      for (int64_t g = 0; g < rows_here; g += group) {
        const int64_t first = group_row(g);
        for (int64_t i = rb + g - first; i < group && first + i < rb + rows_here; ++i) {
          const int64_t r = first + i;
          const float b = bias.empty() ? 0.0f : bias[r].to_float();
          for (int j = 0; j < tt; ++j) y(t0 + j, r) = sums[(g + i) * tt + j] + b;
        }
      }
      if constexpr (Family::kFlagsRows) {
        if (t0 == 0) Family::flag_rows(w, rb, rows_here, bad);
        for (int64_t i = 0; i < rows_here; ++i) {
          if (bad[i] != 0) exact_row(rb + i, t0, tt);
        }
      }
    }
  }
}

/// A matrix of fewer than kMaxGroupRows rows, copied (still encoded) into
/// per-thread scratch with its last row repeated up to kMaxGroupRows rows,
/// so that every micro-kernel call reads whole rows.
inline Mxfp4Rows padded_rows(const Mxfp4Rows& w) {
  const int64_t row_blocks = w.blocks_per_row;
  auto* bytes = scratch_buffer<std::uint8_t, ScratchSlot::padded_weights>(
      static_cast<std::size_t>(kMaxGroupRows * row_blocks * 17));
  std::uint8_t* scales = bytes + kMaxGroupRows * row_blocks * 16;
  for (int64_t r = 0; r < kMaxGroupRows; ++r) {
    const int64_t src = std::min(r, w.rows - 1);
    std::copy_n(w.blocks + src * row_blocks * 16, row_blocks * 16, bytes + r * row_blocks * 16);
    std::copy_n(w.scales + src * row_blocks, row_blocks, scales + r * row_blocks);
  }
  return {bytes, scales, kMaxGroupRows, row_blocks};
}
inline Int8Rows padded_rows(const Int8Rows& w) {
  const int64_t row_bytes = w.blocks_per_row * 32;
  auto* bytes = scratch_buffer<std::uint8_t, ScratchSlot::padded_weights>(
      static_cast<std::size_t>(kMaxGroupRows * (row_bytes + w.blocks_per_row * 4)));
  auto* values = reinterpret_cast<std::int8_t*>(bytes + kMaxGroupRows * w.blocks_per_row * 4);
  auto* scales = reinterpret_cast<float*>(bytes);
  for (int64_t r = 0; r < kMaxGroupRows; ++r) {
    const int64_t src = std::min(r, w.rows - 1);
    std::copy_n(w.values + src * row_bytes, row_bytes, values + r * row_bytes);
    std::copy_n(w.scales + src * w.blocks_per_row, w.blocks_per_row, scales + r * w.blocks_per_row);
  }
  return {values, scales, kMaxGroupRows, w.blocks_per_row};
}
template <class T>
DenseRows<T> padded_rows(const DenseRows<T>& w) {
  auto* data = reinterpret_cast<T*>(scratch_buffer<std::uint8_t, ScratchSlot::padded_weights>(
      static_cast<std::size_t>(kMaxGroupRows * w.cols) * sizeof(T)));
  for (int64_t r = 0; r < kMaxGroupRows; ++r) {
    std::copy_n(w.data + std::min(r, w.rows - 1) * w.cols, w.cols, data + r * w.cols);
  }
  return {data, kMaxGroupRows, w.cols};
}

/// Whether a product of n x k weights with t_count tokens goes to the pool:
/// below about 2^18 multiply-adds (tens of microseconds) a round trip is not
/// worth it.
inline bool worth_parallel(int64_t n, int64_t k, int64_t t_count) {
  return n * k * t_count >= (int64_t{1} << 18);
}

/// Packs every token of x (T, K) with pack_token(x_row, k, out) into
/// per-thread scratch, `stride` elements per token (across the pool when
/// `parallel` and there is enough to pack).
template <class XElem, class PackToken>
const XElem* pack_activations(MatrixView<const float> x, int64_t k, int64_t stride, bool parallel,
                              const PackToken& pack_token) {
  const int64_t t_count = x.extent(0);
  XElem* packed = scratch_buffer<XElem, ScratchSlot::packed_activations>(static_cast<std::size_t>(t_count * stride));
  auto pack = [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) pack_token(&x(t, 0), k, packed + t * stride);
  };
  if (parallel && t_count * k >= (int64_t{1} << 16)) {
    thread_pool().parallel_for(0, t_count, 1, pack);
  } else {
    pack(0, t_count);
  }
  return packed;
}

/// Packs x into the family's layout and runs linear_rows over the pool.
template <class Family, class ExactRow>
void run_linear(const typename Family::Rows& weights, int64_t n, int64_t k,
                VectorView<const bf16> bias, MatrixView<const float> x, MatrixView<float> y,
                const ExactRow& exact_row) {
  using XElem = typename Family::XElem;
  const typename Family::Rows w = n < kMaxGroupRows ? padded_rows(weights) : weights;
  const int64_t t_count = x.extent(0), stride = Family::packed_stride(k);
  const int64_t chunks = Family::chunks(k);
  const bool parallel = worth_parallel(n, k, t_count);
  const XElem* packed = pack_activations<XElem>(x, k, stride, parallel, Family::pack_token);
  ThreadPool& pool = thread_pool();
  auto rows = [&](int64_t first, int64_t last) {
    linear_rows<Family>(w, chunks, packed, stride, t_count, bias, y, first, last, exact_row);
  };
  if (parallel) {
    pool.parallel_for_stealing(0, n, kRowBlock, kStealChunkBlocks, rows);
  } else {
    rows(0, n);
  }
}

/// One product of a group run by run_linear_group: y (T, N) = x (T, K) W^T + bias.
template <class Rows>
struct RowsTask {
  Rows w;
  int64_t n = 0, k = 0;
  VectorView<const bf16> bias;
  MatrixView<const float> x;
  MatrixView<float> y;
};

/// run_linear for several products in one pass of the pool: their rows are
/// laid end to end (each product starting on a row block) and split across
/// the threads as one range, so the threads start and meet once, and a
/// thread that finishes its share steals from the next product's rows.
/// `exact_row(task, r, t0, count)` recomputes the rows the family flags.
/// Every task has at least kMaxGroupRows rows and one token or more (the
/// callers check).
template <class Family, class ExactRow>
void run_linear_group(std::span<const RowsTask<typename Family::Rows>> tasks, const ExactRow& exact_row) {
  using XElem = typename Family::XElem;
  const std::size_t count = tasks.size();
  std::vector<int64_t> first_row(count + 1, 0), first_x(count + 1, 0);  // offsets, end to end
  for (std::size_t i = 0; i < count; ++i) {
    const RowsTask<typename Family::Rows>& task = tasks[i];
    first_row[i + 1] = first_row[i] + (task.n + kRowBlock - 1) / kRowBlock * kRowBlock;
    first_x[i + 1] = first_x[i] + task.x.extent(0) * Family::packed_stride(task.k);
  }
  XElem* packed = scratch_buffer<XElem, ScratchSlot::packed_activations>(static_cast<std::size_t>(first_x[count]));
  for (std::size_t i = 0; i < count; ++i) {
    const RowsTask<typename Family::Rows>& task = tasks[i];
    const int64_t stride = Family::packed_stride(task.k);
    for (int64_t t = 0; t < task.x.extent(0); ++t) Family::pack_token(&task.x(t, 0), task.k, packed + first_x[i] + t * stride);
  }
  auto rows = [&](int64_t first, int64_t last) {
    for (std::size_t i = 0; i < count; ++i) {
      const RowsTask<typename Family::Rows>& task = tasks[i];
      const int64_t lo = std::max(first, first_row[i]), hi = std::min(last, first_row[i] + task.n);
      if (lo >= hi) continue;
      linear_rows<Family>(task.w, Family::chunks(task.k), packed + first_x[i], Family::packed_stride(task.k),
                          task.x.extent(0), task.bias, task.y, lo - first_row[i], hi - first_row[i],
                          [&](int64_t r, int64_t t0, int64_t c) { exact_row(i, r, t0, c); });
    }
  };
  thread_pool().parallel_for_stealing(0, first_row[count], kRowBlock, kStealChunkBlocks, rows);
}

inline auto no_exact_rows = [](int64_t, int64_t, int64_t) {};

inline bool bf16_precision_active() {
  return matmul_precision() != MatmulPrecision::fp32 && has_avx512_bf16();
}

/// Whether products with MXFP4 and 8-bit weights now round their activations
/// to int8 (round_activations_int8), at every token count: the int8
/// precision on the AVX-512 tier with AVX512_VNNI. (bf16 and fp32 weights
/// never do; without VNNI the int8 precision runs as bf16.)
inline bool int8_activations_active() noexcept {
  return matmul_precision() == MatmulPrecision::int8 && has_avx512_vnni();
}

#if GPTOSS_X86
/// Calls run.template operator()<Family>() with the AVX-512 row-streaming
/// family of MXFP4 products at the current matmul precision (int8, bf16,
/// bf16x2 or fp32): the one place that choice is made, for single products
/// and for groups.
template <class Run>
void with_avx512_mxfp4_family(Run&& run) {
  if (int8_activations_active()) {
    run.template operator()<Avx512Mxfp4Int8>();
  } else if (bf16_precision_active()) {
    if (matmul_precision() == MatmulPrecision::bf16x2) {
      run.template operator()<Avx512Mxfp4Bf16<true>>();
    } else {
      run.template operator()<Avx512Mxfp4Bf16<false>>();
    }
  } else {
    run.template operator()<Avx512Mxfp4F32>();
  }
}
#endif

#if GPTOSS_X86

// ---- panels: many tokens ---------------------------------------------------
//
// From kPanelMinTokens tokens on, the AVX-512 tier decodes each group of 32
// weight rows once into a panel (panel_avx512.hpp) and multiplies every
// token with it; below, the row-streaming micro-kernels above are faster.

inline constexpr int64_t kPanelMinTokens = 16;

inline std::atomic<int64_t>& panel_min_tokens_setting() noexcept {
  static std::atomic<int64_t> setting{kPanelMinTokens};
  return setting;
}
/// The fewest tokens that take the panel path (kPanelMinTokens unless set;
/// benchmarks and tests set it to compare both paths on the same product).
inline int64_t panel_min_tokens() noexcept { return panel_min_tokens_setting().load(std::memory_order_relaxed); }
inline void set_panel_min_tokens(int64_t tokens) noexcept {
  panel_min_tokens_setting().store(std::max<int64_t>(tokens, 1), std::memory_order_relaxed);
}

/// A panel product: the panel element, the packed activation element and
/// layout, and the micro-kernel.
struct PanelF32 {
  using Elem = float;
  using XElem = float;
  static constexpr int kMaxTokens = 12;
  static int64_t panel_elems(int64_t k) { return panel_cols(k) * kPanelRows; }
  static int64_t packed_stride(int64_t k) { return panel_cols(k); }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    std::copy_n(x, k, out);
    std::fill(out + k, out + panel_cols(k), 0.0f);
  }
  template <int TT>
  static void tile(const Elem* panel, int64_t k, const XElem* x, int64_t stride, float* out,
                   PrefetchLines ahead) {
    panel_f32_tile_avx512<TT>(panel, panel_cols(k), x, stride, out, ahead);
  }
};

template <bool Split>
struct PanelBf16 {
  using Elem = std::uint32_t;
  using XElem = std::uint32_t;
  static constexpr int kMaxTokens = 12;
  static int64_t panel_elems(int64_t k) { return panel_cols(k) / 2 * kPanelRows; }
  static int64_t packed_stride(int64_t k) { return panel_cols(k) / 2 * (Split ? 2 : 1); }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    const int64_t kp = panel_cols(k);
    float* padded = scratch_buffer<float, ScratchSlot::rounding>(static_cast<std::size_t>(kp));
    std::copy_n(x, k, padded);
    std::fill(padded + k, padded + kp, 0.0f);
    round_planes_bf16_avx512(padded, kp / 32, Split, reinterpret_cast<std::uint16_t*>(out));
  }
  template <int TT>
  static void tile(const Elem* panel, int64_t k, const XElem* x, int64_t stride, float* out,
                   PrefetchLines ahead) {
    panel_bf16_tile_avx512<TT, Split>(panel, panel_cols(k), x, stride, out, ahead);
  }
};

/// The codes of an int8 panel: what makes them unsigned (taken back out with
/// the activations' sums) and the factor on the activations' scale.
struct Mxfp4PanelCodes {  // 2 x E2M1 + 12
  static constexpr int kOffset = 12;
  static constexpr float kScaleFactor = 0.5f;
};
struct Int8PanelCodes {  // w + 128
  static constexpr int kOffset = 128;
  static constexpr float kScaleFactor = 1.0f;
};

/// Int8 panels x int8 activations (the int8 precision, AVX512_VNNI).
template <class Codes>
struct PanelInt8 {
  using Elem = std::uint8_t;
  using XElem = std::uint8_t;
  static constexpr int kMaxTokens = 6;  // 2 x 6 integer and 2 x 6 fp32 accumulators
  static int64_t panel_elems(int64_t k) { return int8_panel_bytes(k); }
  static int64_t packed_stride(int64_t k) { return panel_cols(k) / 32 * kInt8PanelXBlockBytes; }
  static void pack_token(const float* x, int64_t k, XElem* out) {
    pack_int8_panel_activations_avx512(x, k, Codes::kOffset, Codes::kScaleFactor, out);
  }
  template <int TT>
  static void tile(const Elem* panel, int64_t k, const XElem* x, int64_t stride, float* out,
                   PrefetchLines ahead) {
    panel_int8_tile_avx512<TT>(panel, panel_cols(k), x, stride, out, ahead);
  }
};

/// Panels a thread claims at a time in run_panel_linear (the next panel's
/// rows are prefetched within a claim only).
inline constexpr int64_t kStealChunkPanels = 4;

/// y (T, N) = x W^T + bias by panels: build(row, rows, panel) decodes rows
/// [row, row + rows) of W, flag(row, rows, bad) marks rows to recompute with
/// exact_row(r, 0, T). While a panel's tiles compute, the rows of the next
/// panel ([row_bytes * row, ...) from `weights`) are prefetched into L2, so
/// that its build does not wait on memory.
template <class Panel, class Build, class Flag, class ExactRow>
void run_panel_linear(int64_t n, int64_t k, VectorView<const bf16> bias, MatrixView<const float> x,
                      MatrixView<float> y, const void* weights, int64_t row_bytes, const Build& build,
                      const Flag& flag, const ExactRow& exact_row) {
  using XElem = typename Panel::XElem;
  const int64_t t_count = x.extent(0), stride = Panel::packed_stride(k);
  const bool parallel = worth_parallel(n, k, t_count);
  const XElem* packed = pack_activations<XElem>(x, k, stride, parallel, Panel::pack_token);
  ThreadPool& pool = thread_pool();
  auto rows = [&](int64_t first, int64_t last) {
    auto* panel = scratch_buffer<typename Panel::Elem, ScratchSlot::panel>(
        static_cast<std::size_t>(Panel::panel_elems(k)));
    alignas(64) float out[Panel::kMaxTokens * kPanelRows];
    std::uint32_t bad[kPanelRows];
    for (int64_t row = first; row < last; row += kPanelRows) {
      const int64_t rows_here = std::min(kPanelRows, n - row);
      build(row, rows_here, panel);
      std::fill(bad, bad + kPanelRows, 0u);
      flag(row, rows_here, bad);
      float b[kPanelRows];
      for (int64_t i = 0; i < rows_here; ++i) b[i] = bias.empty() ? 0.0f : bias[row + i].to_float();
      const int64_t next = row + kPanelRows, next_rows = std::max<int64_t>(0, std::min(kPanelRows, last - next));
      PrefetchLines ahead;
      if (next_rows > 0) ahead = {static_cast<const char*>(weights) + next * row_bytes, (next_rows * row_bytes + 63) / 64};
      for (int64_t t0 = 0; t0 < t_count; t0 += Panel::kMaxTokens) {
        const int tt = static_cast<int>(std::min<int64_t>(Panel::kMaxTokens, t_count - t0));
        // One line per K step (kp / 2 steps of the bf16 tile: the smaller).
        const int64_t lines_now = std::min(ahead.lines, panel_cols(k) / 2);
        with_token_count<Panel::kMaxTokens>(tt, [&](auto count) {
          Panel::template tile<decltype(count)::value>(panel, k, packed + t0 * stride, stride, out, {ahead.bytes, lines_now});
        });
        ahead.bytes += 64 * lines_now;
        ahead.lines -= lines_now;
        for (int j = 0; j < tt; ++j) {
          float* y_row = &y(t0 + j, row);
          for (int64_t i = 0; i < rows_here; ++i) y_row[i] = out[j * kPanelRows + i] + b[i];
        }
      }
      for (int64_t i = 0; i < rows_here; ++i) {
        if (bad[i] != 0) exact_row(row + i, 0, t_count);
      }
    }
  };
  if (parallel) {
    pool.parallel_for_stealing(0, n, kPanelRows, kStealChunkPanels, rows);
  } else {
    rows(0, n);
  }
}

/// y (T, N) = bias (or 0): a product over K = 0 inputs, which the kernels
/// are not given (their buffers would be empty, some of them null).
inline void bias_only(VectorView<const bf16> bias, MatrixView<float> y) {
  for (index_t t = 0; t < y.extent(0); ++t) {
    for (index_t r = 0; r < y.extent(1); ++r) y(t, r) = bias.empty() ? 0.0f : bias[r].to_float();
  }
}

/// Whether the panel path takes a product of t_count tokens with rows of
/// row_bytes bytes (gather offsets of 16 rows must fit in 32 bits).
inline bool use_panels(int64_t t_count, int64_t row_bytes) {
  return t_count >= panel_min_tokens() && row_bytes < (int64_t{1} << 26);
}

/// run_panel_linear with the panel family of the current precision;
/// build(row, rows, panel) takes a float* (fp32) or std::uint32_t* (bf16
/// pairs) panel.
template <class Build, class Flag, class ExactRow>
void run_panels_at_precision(int64_t n, int64_t k, VectorView<const bf16> bias, MatrixView<const float> x,
                             MatrixView<float> y, const void* weights, int64_t row_bytes,
                             const Build& build, const Flag& flag, const ExactRow& exact) {
  if (!bf16_precision_active()) {
    run_panel_linear<PanelF32>(n, k, bias, x, y, weights, row_bytes, build, flag, exact);
  } else if (matmul_precision() == MatmulPrecision::bf16x2) {
    run_panel_linear<PanelBf16<true>>(n, k, bias, x, y, weights, row_bytes, build, flag, exact);
  } else {
    run_panel_linear<PanelBf16<false>>(n, k, bias, x, y, weights, row_bytes, build, flag, exact);
  }
}

/// Whether a panel of this element type holds bf16 pairs (else floats).
template <class PanelPointer>
inline constexpr bool kPairPanel = std::is_same_v<PanelPointer, std::uint32_t*>;

/// MXFP4 by panels at the current precision.
template <class ExactRow>
void mxfp4_panels(const Mxfp4Rows& w, int64_t n, int64_t k, VectorView<const bf16> bias,
                  MatrixView<const float> x, MatrixView<float> y, const ExactRow& exact) {
  const int64_t row_bytes = w.blocks_per_row * 16;
  auto flag = [&](int64_t row, int64_t rows, std::uint32_t* bad) { flag_extreme_scales_avx512(w, row, rows, bad); };
  auto build = [&](int64_t row, int64_t rows, auto* panel) {
    auto* scales = scratch_buffer<std::uint8_t, ScratchSlot::panel_scales>(
        static_cast<std::size_t>(w.blocks_per_row * kPanelRows));
    auto* raw = scratch_buffer<std::uint8_t, ScratchSlot::panel_rows>(static_cast<std::size_t>(row_bytes * kPanelRows));
    mxfp4_panel_avx512<kPairPanel<decltype(panel)>>(w, row, rows, scales, raw, panel);
  };
  if (int8_activations_active()) {
    auto build_int8 = [&](int64_t row, int64_t rows, std::uint8_t* panel) {
      auto* raw = scratch_buffer<std::uint8_t, ScratchSlot::panel_rows>(static_cast<std::size_t>(row_bytes * kPanelRows));
      mxfp4_int8_panel_avx512(w, row, rows, raw, panel);
    };
    run_panel_linear<PanelInt8<Mxfp4PanelCodes>>(n, k, bias, x, y, w.blocks, row_bytes, build_int8, flag, exact);
    return;
  }
  run_panels_at_precision(n, k, bias, x, y, w.blocks, row_bytes, build, flag, exact);
}

/// bf16 weights by panels at the current precision.
inline void bf16_panels(const DenseRows<bf16>& w, int64_t n, int64_t k, VectorView<const bf16> bias,
                        MatrixView<const float> x, MatrixView<float> y) {
  const int64_t row_bytes = k * static_cast<int64_t>(sizeof(bf16));
  auto flag = [](int64_t, int64_t, std::uint32_t*) {};
  auto build = [&](int64_t row, int64_t rows, auto* panel) {
    auto* raw = scratch_buffer<std::uint8_t, ScratchSlot::panel_rows>(static_cast<std::size_t>(row_bytes * kPanelRows));
    bf16_panel_avx512<kPairPanel<decltype(panel)>>(w, row, rows, raw, panel);
  };
  run_panels_at_precision(n, k, bias, x, y, w.data, row_bytes, build, flag, no_exact_rows);
}

/// 8-bit weights by fp32 panels (the weights are exact in fp32 and so are
/// the products' inputs), or by int8 panels when int8_activations_active().
inline void int8_panels(const Int8Rows& w, int64_t n, int64_t k, VectorView<const bf16> bias,
                        MatrixView<const float> x, MatrixView<float> y) {
  const int64_t row_bytes = w.blocks_per_row * 32;
  auto flag = [](int64_t, int64_t, std::uint32_t*) {};
  if (int8_activations_active()) {
    auto build_int8 = [&](int64_t row, int64_t rows, std::uint8_t* panel) {
      auto* raw = scratch_buffer<std::int8_t, ScratchSlot::panel_rows>(static_cast<std::size_t>(row_bytes * kPanelRows));
      int8_int8_panel_avx512(w, row, rows, raw, panel);
    };
    run_panel_linear<PanelInt8<Int8PanelCodes>>(n, k, bias, x, y, w.values, row_bytes, build_int8, flag, no_exact_rows);
    return;
  }
  auto build = [&](int64_t row, int64_t rows, float* panel) {
    auto* scales = scratch_buffer<float, ScratchSlot::panel_scales>(static_cast<std::size_t>(w.blocks_per_row * kPanelRows));
    auto* raw = scratch_buffer<std::int8_t, ScratchSlot::panel_rows>(static_cast<std::size_t>(row_bytes * kPanelRows));
    int8_panel_avx512(w, row, rows, scales, raw, panel);
  };
  run_panel_linear<PanelF32>(n, k, bias, x, y, w.values, row_bytes, build, flag, no_exact_rows);
}

/// Row streaming of bf16 weights with bf16 dot products (Split: bf16x2):
/// at one token, one row per micro-kernel call or a group of 4, as
/// set_bf16_decode_rows says (batches always take groups).
template <bool Split>
void run_bf16_dot_linear(const DenseRows<bf16>& rows, int64_t n, int64_t k, VectorView<const bf16> bias,
                         MatrixView<const float> x, MatrixView<float> y) {
  if (x.extent(0) == 1 && bf16_decode_rows() == Bf16DecodeRows::grouped) {
    run_linear<Avx512DenseBf16Bf16<Split, 4>>(rows, n, k, bias, x, y, no_exact_rows);
  } else {
    run_linear<Avx512DenseBf16Bf16<Split, 1>>(rows, n, k, bias, x, y, no_exact_rows);
  }
}

/// Row streaming of bf16 weights at the fp32 precision: at one token, one
/// row per micro-kernel call or a group of 4, as set_bf16_decode_rows says
/// (batches always take groups).
inline void run_bf16_f32_linear(const DenseRows<bf16>& rows, int64_t n, int64_t k, VectorView<const bf16> bias,
                                MatrixView<const float> x, MatrixView<float> y) {
  if (x.extent(0) == 1 && bf16_decode_rows() == Bf16DecodeRows::grouped) {
    run_linear<Avx512DenseBf16F32<4>>(rows, n, k, bias, x, y, no_exact_rows);
  } else {
    run_linear<Avx512DenseBf16F32<1>>(rows, n, k, bias, x, y, no_exact_rows);
  }
}

#endif  // GPTOSS_X86

/// Reference-exact y[t0 : t0 + count, r] (float64 sum, as cpu_reference).
template <class W>
void exact_linear_row(const W& w, int64_t r, VectorView<const bf16> bias, MatrixView<const float> x,
                      MatrixView<float> y, int64_t t0, int64_t count) {
  const int64_t k = cols(w);
  float* row = scratch_buffer<float, ScratchSlot::decoded_row>(static_cast<std::size_t>(k));
  decode_row(w, r, std::span<float>(row, static_cast<std::size_t>(k)));
  const double b = bias.empty() ? 0.0 : bias[r].to_float();
  for (int64_t t = t0; t < t0 + count; ++t) {
    double sum = 0.0;
    for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(row[i]) * x(t, i);
    y(t, r) = static_cast<float>(sum + b);
  }
}


}  // namespace gptoss::kernels::fast

namespace gptoss::kernels {

/// y (T, N) = x (T, K) W^T + bias for MXFP4 (checkpoint nibble order) weights.
inline void linear(cpu_fast, const FP4TensorView<MXFP4Checkpoint>& w, VectorView<const bf16> bias,
                   MatrixView<const float> x, MatrixView<float> y) {
  const int64_t n = w.rows(), k = w.cols();
  check_linear_shapes(n, k, bias, x, y);
  if (n == 0 || x.extent(0) == 0) return;
  if (k == 0) return fast::bias_only(bias, y);
  const fast::Mxfp4Rows rows{w.blocks(), w.scales(), n, w.blocks_per_row()};
  auto exact = [&](int64_t r, int64_t t0, int64_t count) {
    fast::exact_linear_row(w, r, bias, x, y, t0, count);
  };
  switch (active_isa()) {
#if GPTOSS_X86
    case Isa::avx512:
      if (fast::use_panels(x.extent(0), rows.blocks_per_row * 16)) {
        fast::mxfp4_panels(rows, n, k, bias, x, y, exact);
      } else {
        fast::with_avx512_mxfp4_family(
            [&]<class Family>() { fast::run_linear<Family>(rows, n, k, bias, x, y, exact); });
      }
      return;
    case Isa::avx2_fma:
      fast::run_linear<fast::Avx2Mxfp4F32>(rows, n, k, bias, x, y, exact);
      return;
#endif
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    case Isa::portable:
      fast::run_linear<fast::Portable<fast::Mxfp4Rows>>(rows, n, k, bias, x, y, exact);
      return;
#endif
    default:
      linear(cpu_reference{}, w, bias, x, y);
  }
}

/// y (T, N) = x (T, K) W^T + bias for bf16 weights.
inline void linear(cpu_fast, const MatrixView<const bf16>& w, VectorView<const bf16> bias,
                   MatrixView<const float> x, MatrixView<float> y) {
  const int64_t n = w.extent(0), k = w.extent(1);
  check_linear_shapes(n, k, bias, x, y);
  if (n == 0 || x.extent(0) == 0) return;
  if (k == 0) return fast::bias_only(bias, y);
  const fast::DenseRows<bf16> rows{w.data(), n, k};
  const auto& none = fast::no_exact_rows;
  switch (active_isa()) {
#if GPTOSS_X86
    case Isa::avx512:
      if (fast::use_panels(x.extent(0), k * 2)) {
        fast::bf16_panels(rows, n, k, bias, x, y);
      } else if (fast::bf16_precision_active()) {
        if (matmul_precision() == MatmulPrecision::bf16x2) {
          fast::run_bf16_dot_linear<true>(rows, n, k, bias, x, y);
        } else {
          fast::run_bf16_dot_linear<false>(rows, n, k, bias, x, y);
        }
      } else {
        fast::run_bf16_f32_linear(rows, n, k, bias, x, y);
      }
      return;
    case Isa::avx2_fma:
      fast::run_linear<fast::Avx2DenseBf16F32>(rows, n, k, bias, x, y, none);
      return;
#endif
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    case Isa::portable:
      fast::run_linear<fast::Portable<fast::DenseRows<bf16>>>(rows, n, k, bias, x, y, none);
      return;
#endif
    default:
      linear(cpu_reference{}, w, bias, x, y);
  }
}

/// y (T, N) = x (T, K) W^T + bias for 8-bit weights: fp32 arithmetic (each
/// weight decodes exactly as the reference decodes it) but at the int8
/// precision, which multiplies activations rounded to int8 with AVX512_VNNI.
inline void linear(cpu_fast, const Int8MatrixView& w, VectorView<const bf16> bias, MatrixView<const float> x,
                   MatrixView<float> y) {
  const int64_t n = w.rows(), k = w.cols();
  check_linear_shapes(n, k, bias, x, y);
  if (n == 0 || x.extent(0) == 0) return;
  if (k == 0) return fast::bias_only(bias, y);
  const fast::Int8Rows rows{w.values(), w.scales(), n, w.blocks_per_row()};
  const auto& none = fast::no_exact_rows;
  switch (active_isa()) {
#if GPTOSS_X86
    case Isa::avx512:
      if (fast::use_panels(x.extent(0), w.row_stride())) {
        fast::int8_panels(rows, n, k, bias, x, y);
      } else if (fast::int8_activations_active()) {
        fast::run_linear<fast::Avx512Int8Int8>(rows, n, k, bias, x, y, none);
      } else {
        fast::run_linear<fast::Avx512Int8F32>(rows, n, k, bias, x, y, none);
      }
      return;
#endif
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    case Isa::avx2_fma:
    case Isa::portable:
      fast::run_linear<fast::Portable<fast::Int8Rows>>(rows, n, k, bias, x, y, none);
      return;
#endif
    default:
      linear(cpu_reference{}, w, bias, x, y);
  }
}

/// y (T, N) = x (T, K) W^T + bias for fp32 weights (always fp32 precision).
inline void linear(cpu_fast, const MatrixView<const float>& w, VectorView<const bf16> bias,
                   MatrixView<const float> x, MatrixView<float> y) {
  const int64_t n = w.extent(0), k = w.extent(1);
  check_linear_shapes(n, k, bias, x, y);
  if (n == 0 || x.extent(0) == 0) return;
  if (k == 0) return fast::bias_only(bias, y);
  const fast::DenseRows<float> rows{w.data(), n, k};
  const auto& none = fast::no_exact_rows;
  switch (active_isa()) {
#if GPTOSS_X86
    case Isa::avx512:
      fast::run_linear<fast::Avx512DenseF32>(rows, n, k, bias, x, y, none);
      return;
    case Isa::avx2_fma:
      fast::run_linear<fast::Avx2DenseF32>(rows, n, k, bias, x, y, none);
      return;
#endif
#if defined(XSIMD_VERSION_MAJOR) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    case Isa::portable:
      fast::run_linear<fast::Portable<fast::DenseRows<float>>>(rows, n, k, bias, x, y, none);
      return;
#endif
    default:
      linear(cpu_reference{}, w, bias, x, y);
  }
}

}  // namespace gptoss::kernels
