// Linear-layer throughput on the real gpt-oss shapes: the cpu_reference
// kernel, Eigen (dequantize-then-GEMM through Eigen::Map, one thread) and the
// fused cpu_fast kernels at each matmul precision, and for the bf16 shapes
// the opt-in 8-bit copies (fast_int8); fast_int8act is the int8 precision
// (activations rounded to int8: MXFP4 weights, or the 8-bit copies of the
// bf16 shapes), for batches of 1, 32, 128
// and 512 tokens on 1 and 2 threads; for batches, also the row-streaming
// kernels ("_rows") that the 32-row panels replace; and, at batch 1, the same
// kernels on L2-resident slices ("_cached": their arithmetic ceiling). Every
// fast run is first validated against the reference on the first 64 output
// rows.
//
//   gptoss_bench_linear --benchmark_filter='mlp1.*fast_fp32'
//
// Counters: see bench_common.hpp (weight_GBps, bw_frac, GFLOPs, peak_frac).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include "gptoss/core/tensor_view.hpp"
#include "gptoss/formats/fp4_tensor.hpp"
#include "gptoss/formats/int8_matrix.hpp"
#include "gptoss/kernels/fast/linear.hpp"
#include "gptoss/kernels/reference/linear.hpp"

namespace {

using namespace gptoss;
using bench::FastRandom;

struct Shape {
  const char* name;
  index_t n, k;
  bool mxfp4;           // else bf16
  bool cached = false;  // one copy small enough to stay in L2: the kernel's arithmetic ceiling
};

// The gpt-oss-120b/20b matrices: expert mlp1 (2 * 2880 -> interleaved gate/linear)
// and mlp2 in MXFP4; attention qkv and out, and the unembedding, in bf16.
// The "_cached" shapes are slices of those rows that stay in each core's L2
// (read again every call): how fast each kernel can go when memory is not
// the limit, to set against the DRAM-bound shapes' bytes/s.
constexpr Shape kShapes[] = {
    {"mlp1_mxfp4", 5760, 2880, true},  {"mlp2_mxfp4", 2880, 2880, true},
    {"qkv_bf16", 5120, 2880, false},   {"out_bf16", 2880, 4096, false},
    {"unembed_bf16", 201088, 2880, false},
    {"mlp1_mxfp4_cached", 512, 2880, true, true}, {"qkv_bf16_cached", 128, 2880, false, true},
};

enum class Impl { reference, eigen, fast_fp32, fast_bf16x2, fast_bf16, fast_int8, fast_int8act };

/// How the fast kernels take batches: the default (32-row panels decoded once
/// per call from kPanelMinTokens tokens on), or row streaming forced; or, at
/// batch 1, the same weights in ordinary 4 KiB pages ("_4k_pages": the
/// baseline for the huge pages the weights get, core/huge_pages.hpp), or,
/// at batch 1, rows read 4 side by side ("_grouped_rows": the baseline for
/// the one row at a time used by default, Bf16DecodeRows for bf16 weights
/// at the fp32 and bf16 precisions, Mxfp4DecodeRows for MXFP4 at bf16,
/// bf16x2 and int8).
enum class Path { default_path, rows, small_pages, grouped_rows };

const char* path_suffix(Path path) {
  switch (path) {
    case Path::default_path: return "";
    case Path::rows: return "_rows";
    case Path::small_pages: return "_4k_pages";
    case Path::grouped_rows: return "_grouped_rows";
  }
  return "?";
}

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::reference: return "reference";
    case Impl::eigen: return "eigen_dequant_gemm";
    case Impl::fast_fp32: return "fast_fp32";
    case Impl::fast_bf16x2: return "fast_bf16x2";
    case Impl::fast_bf16: return "fast_bf16";
    case Impl::fast_int8: return "fast_int8";
    case Impl::fast_int8act: return "fast_int8act";
  }
  return "?";
}

/// Weights of one shape, created on first use and kept. A decode step reads
/// every weight matrix once from DRAM, but this machine's last-level cache
/// holds tens of megabytes: a benchmark that reused one copy would time L3
/// reads. So each shape gets enough identical copies to fill kColdBytes, and
/// every run uses the next copy (the unembedding, 1.16 GB, needs only one).
constexpr double kColdBytes = 256e6;

/// Identical copies of one shape's weights, each from Allocator: MXFP4
/// blocks and scales (MXFP4 shapes) or bf16 values (bf16 shapes).
template <template <class> class Allocator>
struct CopySet {
  std::vector<std::vector<std::uint8_t, Allocator<std::uint8_t>>> blocks, scales;
  std::vector<std::vector<bf16, Allocator<bf16>>> dense;

  std::size_t size() const { return blocks.empty() ? dense.size() : blocks.size(); }
  bool empty() const { return size() == 0; }
  FP4TensorView<MXFP4Checkpoint> fp4_view(std::size_t c, index_t n, index_t k) const {
    return {blocks[c].data(), scales[c].data(), n, k};
  }
  MatrixView<const bf16> dense_view(std::size_t c, index_t n, index_t k) const {
    return dense.empty() ? MatrixView<const bf16>{} : MatrixView<const bf16>{dense[c].data(), {n, k}};
  }
  /// The same copies in another allocator's memory.
  template <template <class> class Other>
  void copy_from(const CopySet<Other>& o) {
    for (const auto& v : o.blocks) blocks.emplace_back(v.begin(), v.end());
    for (const auto& v : o.scales) scales.emplace_back(v.begin(), v.end());
    for (const auto& v : o.dense) dense.emplace_back(v.begin(), v.end());
  }
};

template <class T>
using HugePages = HugePageAllocator<T>;
template <class T>
using SmallPages = std::allocator<T>;

struct Weights {
  CopySet<HugePages> copies;             // huge pages, as the library's weights get
  CopySet<SmallPages> copies_4k;         // the same in 4 KiB pages, made on first use
  std::vector<Int8Matrix> int8;          // 8-bit copies of dense, made on first use
  Tensor<bf16, 1> bias;
  std::vector<float> dequantized;        // Eigen's buffer, allocated on its first run
  std::size_t current = 0;
  index_t n = 0, k = 0;

  void next() { current = (current + 1) % copies.size(); }
  FP4TensorView<MXFP4Checkpoint> fp4_view(Path path = Path::default_path) const {
    return path == Path::small_pages ? copies_4k.fp4_view(current, n, k) : copies.fp4_view(current, n, k);
  }
  MatrixView<const bf16> dense_view(Path path = Path::default_path) const {
    return path == Path::small_pages ? copies_4k.dense_view(current, n, k) : copies.dense_view(current, n, k);
  }
  Int8MatrixView int8_view() const { return int8[current].view(); }
};

Weights& weights_for(const Shape& s) {
  static std::map<std::string, std::unique_ptr<Weights>> cache;
  auto& slot = cache[s.name];
  if (!slot) {
    slot = std::make_unique<Weights>();
    slot->n = s.n;
    slot->k = s.k;
    const double bytes = s.mxfp4 ? s.n * s.k * 17.0 / 32.0 : s.n * s.k * 2.0;
    const auto copies = s.cached ? std::size_t{1}
                                 : static_cast<std::size_t>(std::max(1.0, std::ceil(kColdBytes / bytes)));
    if (s.mxfp4) {
      const auto blocks_per_row = static_cast<std::size_t>((s.k + 31) / 32);
      std::vector<std::uint8_t, HugePages<std::uint8_t>> blocks(static_cast<std::size_t>(s.n) * blocks_per_row * 16);
      std::vector<std::uint8_t, HugePages<std::uint8_t>> scales(static_cast<std::size_t>(s.n) * blocks_per_row);
      bench::fill_bytes(blocks.data(), blocks.size(), 11);
      FastRandom rng(12);
      // Block scales around 2^-5 .. 2^-2: the range of the real experts.
      for (auto& b : scales) b = static_cast<std::uint8_t>(122 + rng.next() % 4);
      slot->copies.blocks.assign(copies, blocks);
      slot->copies.scales.assign(copies, scales);
    } else {
      std::vector<bf16, HugePages<bf16>> first(static_cast<std::size_t>(s.n * s.k));
      bench::fill_uniform(first.data(), first.size(), 0.05f, 13);
      slot->copies.dense.assign(copies, first);
    }
    slot->bias = Tensor<bf16, 1>({s.n});
    bench::fill_uniform(slot->bias.data(), static_cast<std::size_t>(s.n), 0.1f, 14);
  }
  return *slot;
}

/// The 8-bit copies of a bf16 shape (one quantization, copied).
void ensure_int8(Weights& w) {
  if (!w.int8.empty()) return;
  const Int8Matrix first = quantize_int8(w.copies.dense_view(0, w.n, w.k), "bench weights");
  w.int8.assign(w.copies.size(), first);
}

/// Runs the chosen implementation once: y (T, N) = x (T, K) W^T + bias.
void run_linear(const Shape& s, Weights& w, Impl impl, const Tensor<float, 2>& x, Tensor<float, 2>& y,
                Path path = Path::default_path) {
  const VectorView<const bf16> bias = w.bias.view();
  const FP4TensorView<MXFP4Checkpoint> fp4 = s.mxfp4 ? w.fp4_view(path) : FP4TensorView<MXFP4Checkpoint>{};
  const MatrixView<const bf16> dense = w.dense_view(path);
  switch (impl) {
    case Impl::fast_int8:
      kernels::linear(cpu_fast{}, w.int8_view(), bias, x.view(), y.view());
      return;
    case Impl::fast_int8act:
      if (s.mxfp4) {
        kernels::linear(cpu_fast{}, fp4, bias, x.view(), y.view());
      } else {
        kernels::linear(cpu_fast{}, w.int8_view(), bias, x.view(), y.view());
      }
      return;
    case Impl::reference:
      if (s.mxfp4) {
        kernels::linear(cpu_reference{}, fp4, bias, x.view(), y.view());
      } else {
        kernels::linear(cpu_reference{}, dense, bias, x.view(), y.view());
      }
      return;
    case Impl::eigen: {
      // Dequantize (or widen) every call: the unfused alternative to the
      // fused kernels, which never materialise float weights.
      using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      w.dequantized.resize(static_cast<std::size_t>(s.n * s.k));
      float* buffer = w.dequantized.data();
      for (index_t r = 0; r < s.n; ++r) {
        std::span<float> row(buffer + r * s.k, static_cast<std::size_t>(s.k));
        if (s.mxfp4) {
          fp4.decode_row(r, row);
        } else {
          decode_row(dense, r, row);
        }
      }
      const Eigen::Map<const RowMajor> wm(buffer, s.n, s.k);
      const Eigen::Map<const RowMajor> xm(x.data(), x.extent(0), s.k);
      Eigen::Map<RowMajor> ym(y.data(), x.extent(0), s.n);
      ym.noalias() = xm * wm.transpose();
      for (index_t t = 0; t < x.extent(0); ++t) {
        for (index_t r = 0; r < s.n; ++r) ym(t, r) += bias[r].to_float();
      }
      return;
    }
    default:
      if (s.mxfp4) {
        kernels::linear(cpu_fast{}, fp4, bias, x.view(), y.view());
      } else {
        kernels::linear(cpu_fast{}, dense, bias, x.view(), y.view());
      }
  }
}

/// Whether the implementation multiplies the 8-bit copies of a bf16 shape.
bool uses_int8_copies(const Shape& s, Impl impl) {
  return !s.mxfp4 && (impl == Impl::fast_int8 || impl == Impl::fast_int8act);
}

MatmulPrecision precision_of(Impl impl) {
  switch (impl) {
    case Impl::fast_bf16x2: return MatmulPrecision::bf16x2;
    case Impl::fast_bf16: return MatmulPrecision::bf16;
    case Impl::fast_int8act: return MatmulPrecision::int8;
    default: return MatmulPrecision::fp32;
  }
}

/// Relative error allowed per output, in units of sum_k |w x| (see the test).
double tolerance_of(Impl impl) {
  switch (impl) {
    case Impl::fast_bf16x2: return 2e-5;
    case Impl::fast_bf16:
    case Impl::fast_int8act: return 4e-3;  // without AVX512_VNNI, int8 runs as bf16
    default: return 1e-5;
  }
}

/// x with every row rounded as the int8 precision rounds activations
/// (round_activations_int8), back in float.
Tensor<float, 2> int8_rounded(const Tensor<float, 2>& x) {
  Tensor<float, 2> r(x.shape());
  for (index_t t = 0; t < x.extent(0); ++t) kernels::fast::round_activations_int8(&x(t, 0), x.extent(1), &r(t, 0));
  return r;
}

/// Compares y's first rows with the reference on those rows; returns the
/// worst error / bound ratio (<= 1 passes). Where the int8 precision rounds
/// the activations to int8, the reference gets the same rounded activations.
double validate(const Shape& s, Weights& w, Impl impl, const Tensor<float, 2>& x_in, const Tensor<float, 2>& y) {
  const bool rounded = impl == Impl::fast_int8act && kernels::fast::int8_activations_active();
  const Tensor<float, 2> x = rounded ? int8_rounded(x_in) : x_in;
  const double rel = rounded ? 1e-5 : tolerance_of(impl);
  const index_t rows = std::min<index_t>(64, s.n), t_count = x.extent(0);
  Tensor<float, 2> ref({t_count, rows});
  const Tensor<bf16, 1> bias_rows = [&] {
    Tensor<bf16, 1> b({rows});
    std::copy_n(w.bias.data(), rows, b.data());
    return b;
  }();
  const MatrixView<const bf16> dense = w.dense_view().slice(0, rows);
  std::vector<float> row(static_cast<std::size_t>(s.k));
  std::vector<float> actual, expected;
  std::vector<double> bound;
  const Int8MatrixView int8 = uses_int8_copies(s, impl) ? Int8MatrixView(w.int8_view().values(), w.int8_view().scales(), rows, s.k)
                                                      : Int8MatrixView{};
  if (s.mxfp4) {
    kernels::linear(cpu_reference{}, w.fp4_view().row_range(0, rows), bias_rows.view(), x.view(), ref.view());
  } else if (!int8.empty()) {
    kernels::linear(cpu_reference{}, int8, bias_rows.view(), x.view(), ref.view());
  } else {
    kernels::linear(cpu_reference{}, dense, bias_rows.view(), x.view(), ref.view());
  }
  for (index_t r = 0; r < rows; ++r) {
    if (s.mxfp4) {
      w.fp4_view().decode_row(r, row);
    } else if (!int8.empty()) {
      int8.decode_row(r, row);
    } else {
      decode_row(dense, r, row);
    }
    for (index_t t = 0; t < t_count; ++t) {
      double magnitude = 0.0;
      for (index_t i = 0; i < s.k; ++i) magnitude += std::fabs(static_cast<double>(row[i]) * x(t, i));
      actual.push_back(y(t, r));
      expected.push_back(ref(t, r));
      bound.push_back(rel * magnitude + 1e-6);
    }
  }
  return bench::worst_error_ratio(actual.data(), expected.data(), bound.data(), actual.size());
}

/// Puts the kernel settings a benchmark changes back to their defaults when
/// it ends, however it ends (a benchmark that fails validation returns early).
struct DefaultKernelSettingsOnExit {
  ~DefaultKernelSettingsOnExit() {
    set_matmul_precision(MatmulPrecision::fp32);
    kernels::fast::set_panel_min_tokens(kernels::fast::kPanelMinTokens);
    kernels::fast::set_bf16_decode_rows(kernels::fast::Bf16DecodeRows::one);
    kernels::fast::set_mxfp4_decode_rows(kernels::fast::Mxfp4DecodeRows::one);
  }
};

void bm_linear(benchmark::State& state, const Shape s, const Impl impl, const index_t t_count,
               const int threads, const Path path) {
  const DefaultKernelSettingsOnExit restore;
  set_num_threads(threads);
  kernels::fast::set_panel_min_tokens(path == Path::rows ? INT64_MAX : kernels::fast::kPanelMinTokens);
  kernels::fast::set_bf16_decode_rows(path == Path::grouped_rows ? kernels::fast::Bf16DecodeRows::grouped
                                                                 : kernels::fast::Bf16DecodeRows::one);
  kernels::fast::set_mxfp4_decode_rows(path == Path::grouped_rows ? kernels::fast::Mxfp4DecodeRows::grouped
                                                                  : kernels::fast::Mxfp4DecodeRows::one);
  set_matmul_precision(precision_of(impl));
  Weights& w = weights_for(s);
  if (uses_int8_copies(s, impl)) ensure_int8(w);
  if (path == Path::small_pages && w.copies_4k.empty()) w.copies_4k.copy_from(w.copies);
  Tensor<float, 2> x({t_count, s.k}), y({t_count, s.n});
  bench::fill_uniform(x.data(), static_cast<std::size_t>(x.size()), 1.0f, 21 + t_count);
  run_linear(s, w, impl, x, y, path);  // warm-up, and the output to validate
  const double ratio = validate(s, w, impl, x, y);
  state.counters["err_ratio"] = ratio;
  if (!(ratio <= 1.0)) {
    state.SkipWithError("result differs from the reference beyond the tolerance");
    return;
  }
  const double seconds = bench::timed_loop(state, [&] {
    w.next();  // a copy not read since kColdBytes of others: from DRAM
    run_linear(s, w, impl, x, y, path);
  });
  const double weight_bytes = s.mxfp4                ? static_cast<double>(w.fp4_view().nbytes())
                              : uses_int8_copies(s, impl) ? static_cast<double>(w.int8[w.current].bytes())
                                                        : static_cast<double>(s.n * s.k * 2);
  bench::set_throughput_counters(state, weight_bytes, 2.0 * s.n * s.k * t_count, seconds, threads);
}

void register_benchmarks() {
  for (const Shape& s : kShapes) {
    const std::string shape = std::string(s.name) + "_" + std::to_string(s.n) + "x" + std::to_string(s.k);
    for (Impl impl : {Impl::reference, Impl::eigen, Impl::fast_fp32, Impl::fast_bf16x2, Impl::fast_bf16,
                      Impl::fast_int8, Impl::fast_int8act}) {
      const bool huge = s.n > 100000;
      if (impl == Impl::fast_int8 && s.mxfp4) continue;  // 8-bit copies are for the bf16 matrices
      if (impl == Impl::eigen && huge) continue;  // a 2.3 GB float copy: not worth it
      if (s.cached && (impl == Impl::reference || impl == Impl::eigen)) continue;
      for (index_t t : {1, 32, 64, 128, 512}) {
        if (s.cached && t > 1) continue;  // the ceiling of the decode (row-streaming) kernels
        if (impl == Impl::reference && t > 1) continue;  // float64 loops: minutes
        if (impl == Impl::eigen && t == 64) continue;
        if (huge && t > 32) continue;
        for (int threads : {1, 2}) {
          if ((impl == Impl::reference || impl == Impl::eigen) && threads > 1) continue;
          if ((impl == Impl::fast_bf16x2 || impl == Impl::fast_bf16) && !has_avx512_bf16()) {
            continue;  // the bf16 precisions would measure fp32 again
          }
          if (impl == Impl::fast_int8act && !has_avx512_vnni()) continue;
          const bool fast = impl != Impl::reference && impl != Impl::eigen;
          for (Path path : {Path::default_path, Path::rows, Path::small_pages, Path::grouped_rows}) {
            // The row-streaming baseline, next to the panels it is replaced by.
            if (path == Path::rows && (!fast || t < kernels::fast::kPanelMinTokens)) continue;
            // The page-size baseline: decode (batch 1) from DRAM, fp32 and bf16.
            if (path == Path::small_pages &&
                (t != 1 || s.cached || (impl != Impl::fast_fp32 && impl != Impl::fast_bf16))) {
              continue;
            }
            // The row-grouping baseline: one-token products of bf16 weights
            // at fp32 and bf16, and MXFP4 at bf16x2 and with int8 activations.
            const bool mxfp4_runs = s.mxfp4 && (impl == Impl::fast_bf16x2 || impl == Impl::fast_int8act);
            const bool bf16_rows = !s.mxfp4 && impl == Impl::fast_fp32;
            if (path == Path::grouped_rows && (t != 1 || (impl != Impl::fast_bf16 && !mxfp4_runs && !bf16_rows))) {
              continue;
            }
            const std::string name = "linear/" + shape + "/" + impl_name(impl) + path_suffix(path) +
                                     "/T:" + std::to_string(t) + "/threads:" + std::to_string(threads);
            benchmark::RegisterBenchmark(name.c_str(), bm_linear, s, impl, t, threads, path)
                ->Apply(bench::timed_in_microseconds);
          }
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) { return gptoss::bench::run_main(argc, argv, register_benchmarks); }
