// The cpu_fast kernels against the cpu_reference oracle on fresh random
// inputs, on every ISA tier this machine runs (set_isa_limit), with odd
// sizes, special MXFP4 scale bytes, and outputs poisoned with NaN before each
// call so that every element is checked. Also the thread pool and the ISA
// detection / override they rely on.
//
// Tolerances: fp32 paths |fast - ref| <= 1e-5 * sum_k |w x| per output
// (linear) or rel 1e-5 of the tensor's largest value (attention, rope,
// swiglu, rmsnorm); the bf16x2 matmul precision 2e-5 * sum |w x| (its
// activation split carries 16 bits); the bf16 precision 4e-3 * sum |w x|
// (activations rounded to bf16: 2^-9 relative each).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "gptoss/gptoss.hpp"
#include "gptoss/kernels/fast/all.hpp"
#include "support/compare.hpp"
#include "support/random.hpp"

using namespace gptoss;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

/// Every tier this CPU can run, lowest first.
std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas) {
    if (static_cast<int>(isa) <= static_cast<int>(detected_isa())) out.push_back(isa);
  }
  return out;
}

template <class T, std::size_t R>
void poison(Tensor<T, R>& t) {
  std::fill(t.storage().begin(), t.storage().end(), kNaN);
}

/// Sets the matmul precision for a scope.
class ScopedPrecision {
 public:
  explicit ScopedPrecision(MatmulPrecision p) : previous_(matmul_precision()) { set_matmul_precision(p); }
  ~ScopedPrecision() { set_matmul_precision(previous_); }

 private:
  MatmulPrecision previous_;
};

/// Sets how one-token bf16 products walk their rows for a scope.
class ScopedBf16DecodeRows {
 public:
  explicit ScopedBf16DecodeRows(kernels::fast::Bf16DecodeRows rows) : previous_(kernels::fast::bf16_decode_rows()) {
    kernels::fast::set_bf16_decode_rows(rows);
  }
  ~ScopedBf16DecodeRows() { kernels::fast::set_bf16_decode_rows(previous_); }

 private:
  kernels::fast::Bf16DecodeRows previous_;
};

/// Sets how one-token MXFP4 products walk their rows for a scope.
class ScopedMxfp4DecodeRows {
 public:
  explicit ScopedMxfp4DecodeRows(kernels::fast::Mxfp4DecodeRows rows)
      : previous_(kernels::fast::mxfp4_decode_rows()) {
    kernels::fast::set_mxfp4_decode_rows(rows);
  }
  ~ScopedMxfp4DecodeRows() { kernels::fast::set_mxfp4_decode_rows(previous_); }

 private:
  kernels::fast::Mxfp4DecodeRows previous_;
};

/// Relative bound per precision, in units of sum_k |w x|.
double linear_tolerance(MatmulPrecision p, Isa isa) {
  const bool bf16_dot = isa == Isa::avx512 && cpu_features().avx512bf16;
  if (!bf16_dot || p == MatmulPrecision::fp32) return 1e-5;
  return p == MatmulPrecision::bf16x2 ? 2e-5 : 4e-3;
}

/// Checks fast against reference for y = x W^T + b, element by element:
/// |fast - ref| <= rel * sum_k |w_rk x_tk| + 1e-30, identical non-finite values
/// accepted (both NaN, or the same infinity).
template <class W>
void check_linear_result(const W& w, const Tensor<float, 2>& x, const Tensor<float, 2>& fast,
                         const Tensor<float, 2>& ref, double rel) {
  const index_t n = rows(w), k = cols(w), t_count = x.extent(0);
  std::vector<float> row(static_cast<std::size_t>(k));
  double worst_excess = -1.0;
  std::string worst;
  for (index_t r = 0; r < n; ++r) {
    decode_row(w, r, row);
    for (index_t t = 0; t < t_count; ++t) {
      const double a = fast(t, r), e = ref(t, r);
      if (std::isnan(a) && std::isnan(e)) continue;
      if (std::isinf(e) && a == e) continue;
      double magnitude = 0.0;
      for (index_t i = 0; i < k; ++i) magnitude += std::fabs(static_cast<double>(row[i]) * x(t, i));
      const double bound = rel * magnitude + 1e-30;
      const double err = std::fabs(a - e);
      const double excess = std::isnan(err) ? INFINITY : err - bound;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = "y(" + std::to_string(t) + ", " + std::to_string(r) + ") = " + std::to_string(a) +
                ", reference " + std::to_string(e) + ", bound " + std::to_string(bound);
      }
    }
  }
  INFO("worst element: " << worst);
  REQUIRE(worst_excess <= 0.0);
}

/// The activations the int8 precision multiplies: each block of 32 of every
/// row of x rounded by quantize_activation_block_int8, back in float; and
/// per element half its block's scale (the most rounding moves it).
struct Int8Activations {
  Tensor<float, 2> rounded;    // (T, K)
  Tensor<float, 2> half_step;  // (T, K)
};
Int8Activations int8_activations(const Tensor<float, 2>& x) {
  const index_t t_count = x.extent(0), k = x.extent(1);
  Int8Activations a{Tensor<float, 2>(x.shape()), Tensor<float, 2>(x.shape())};
  for (index_t t = 0; t < t_count; ++t) {
    kernels::fast::round_activations_int8(&x(t, 0), k, &a.rounded(t, 0), &a.half_step(t, 0));
  }
  return a;
}

/// Whether linear(cpu_fast) now rounds x to int8 for W (MXFP4 or 8-bit weights).
template <class W>
bool int8_activations_used() {
  return (std::is_same_v<W, FP4TensorView<MXFP4Checkpoint>> || std::is_same_v<W, Int8MatrixView>) &&
         kernels::fast::int8_activations_active();
}

/// Checks a product at the int8 precision. Every element must be within
/// 1e-5 sum |w x'| of the reference on the rounded activations x' (or, for
/// rows the kernel recomputes exactly because of extreme scales, within
/// 1e-5 sum |w x| of the reference on x), and always within the rounding's
/// own bound of the reference on x: sum_k |w_k| (half step of x_k) plus
/// 1e-5 sum |w x|.
template <class W>
void check_int8_result(const W& w, VectorView<const bf16> bias, const Tensor<float, 2>& x,
                       const Tensor<float, 2>& fast, const Tensor<float, 2>& ref) {
  const index_t n = rows(w), k = cols(w), t_count = x.extent(0);
  const Int8Activations a = int8_activations(x);
  Tensor<float, 2> ref_rounded({t_count, n});
  kernels::linear(cpu_reference{}, w, bias, a.rounded.view(), ref_rounded.view());
  std::vector<float> row(static_cast<std::size_t>(k));
  for (index_t r = 0; r < n; ++r) {
    decode_row(w, r, row);
    for (index_t t = 0; t < t_count; ++t) {
      const double y = fast(t, r), e = ref(t, r), e_rounded = ref_rounded(t, r);
      if (std::isnan(y) && (std::isnan(e) || std::isnan(e_rounded))) continue;
      if (std::isinf(y) && (y == e || y == e_rounded)) continue;
      double magnitude = 0.0, magnitude_rounded = 0.0, rounding = 0.0;
      for (index_t i = 0; i < k; ++i) {
        magnitude += std::fabs(static_cast<double>(row[i]) * x(t, i));
        magnitude_rounded += std::fabs(static_cast<double>(row[i]) * a.rounded(t, i));
        rounding += std::fabs(static_cast<double>(row[i])) * a.half_step(t, i);
      }
      INFO("y(" << t << ", " << r << ") = " << y << ", reference " << e << ", on rounded activations "
                << e_rounded);
      const bool matches_rounded = std::fabs(y - e_rounded) <= 1e-5 * magnitude_rounded + 1e-30;
      const bool matches_exact = std::fabs(y - e) <= 1e-5 * magnitude + 1e-30;
      REQUIRE((matches_rounded || matches_exact));
      REQUIRE(std::fabs(y - e) <= rounding * (1.0 + 1e-5) + 1e-5 * magnitude + 1e-30);
    }
  }
}

/// Runs linear(cpu_fast) on every tier and precision against the reference.
template <class W>
void check_linear_all_tiers(const W& w, const Tensor<float, 2>& x, VectorView<const bf16> bias) {
  const index_t n = rows(w), t_count = x.extent(0);
  Tensor<float, 2> ref({t_count, n}), fast({t_count, n});
  kernels::linear(cpu_reference{}, w, bias, x.view(), ref.view());
  for (Isa isa : runnable_isas()) {
    for (MatmulPrecision p : {MatmulPrecision::fp32, MatmulPrecision::bf16x2, MatmulPrecision::bf16,
                              MatmulPrecision::int8}) {
      ScopedIsaLimit limit(isa);
      ScopedPrecision precision(p);
      INFO("isa " << isa_name(isa) << ", precision " << matmul_precision_name(p));
      poison(fast);
      kernels::linear(cpu_fast{}, w, bias, x.view(), fast.view());
      if (int8_activations_used<W>()) {
        check_int8_result(w, bias, x, fast, ref);
        continue;
      }
      // 8-bit weights multiply in fp32 but where int8 activations are used
      // (above); the int8 precision's other products run as bf16's.
      const MatmulPrecision as = p == MatmulPrecision::int8 ? MatmulPrecision::bf16 : p;
      const double rel = std::is_same_v<W, Int8MatrixView> ? linear_tolerance(MatmulPrecision::fp32, isa)
                                                          : linear_tolerance(as, isa);
      check_linear_result(w, x, fast, ref, rel);
    }
  }
}

/// A random (rows, cols) MXFP4 matrix with scale bytes drawn from [lo, hi].
FP4Tensor<> random_mxfp4(test::Rng& rng, index_t rows, index_t cols, int lo, int hi) {
  FP4Tensor<> w(rows, cols);
  for (auto& b : w.blocks()) b = static_cast<std::uint8_t>(rng() & 0xff);
  for (auto& s : w.scales()) s = static_cast<std::uint8_t>(test::uniform_int(rng, lo, hi));
  return w;
}

Tensor<float, 2> random_activations(test::Rng& rng, index_t t_count, index_t k, float amplitude = 1.0f) {
  return test::random_matrix(rng, t_count, k, amplitude);
}

}  // namespace

// ---------------------------------------------------------------------------
// ISA detection and override

TEST_CASE("Fast kernels: ISA names round-trip and the limit caps the active tier", "[fast][isa]") {
  for (Isa isa : kAllIsas) REQUIRE(parse_isa(isa_name(isa)) == isa);
  REQUIRE_FALSE(parse_isa("avx1024").has_value());
  REQUIRE(static_cast<int>(active_isa()) <= static_cast<int>(detected_isa()));
  const Isa before = active_isa();
  {
    ScopedIsaLimit limit(Isa::scalar);
    REQUIRE(active_isa() == Isa::scalar);
    REQUIRE_FALSE(has_avx512_bf16());
    {
      ScopedIsaLimit inner(Isa::portable);
      REQUIRE(active_isa() == std::min(Isa::portable, detected_isa()));
    }
    REQUIRE(active_isa() == Isa::scalar);
  }
  REQUIRE(active_isa() == before);
  if (detected_isa() == Isa::avx512) {
    const CpuFeatures& f = cpu_features();
    REQUIRE((f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma));
  }
}

// ---------------------------------------------------------------------------
// Thread pool

TEST_CASE("Fast kernels: parallel_for covers every index once", "[fast][threads]") {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    REQUIRE(pool.size() == threads);
    for (std::int64_t count : {0, 1, 7, 16, 100, 1001}) {
      for (std::int64_t grain : {1, 4, 16, 1000}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(count));
        std::atomic<int> bad_ranges{0};
        pool.parallel_for(0, count, grain, [&](std::int64_t first, std::int64_t last) {
          // Non-empty, starting on a grain, a whole number of grains but the last.
          if (!(first < last && first % grain == 0 && (last == count || last % grain == 0))) bad_ranges++;
          for (std::int64_t i = first; i < last; ++i) hits[static_cast<std::size_t>(i)]++;
        });
        REQUIRE(bad_ranges.load() == 0);
        for (auto& h : hits) REQUIRE(h.load() == 1);
      }
    }
  }
}

TEST_CASE("Fast kernels: parallel_for_stealing covers every index once", "[fast][threads]") {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (std::int64_t count : {0, 1, 7, 16, 100, 1001, 4099}) {
      for (std::int64_t grain : {1, 4, 16, 1000}) {
        for (std::int64_t chunk : {1, 3, 64}) {
          std::vector<std::atomic<int>> hits(static_cast<std::size_t>(count));
          std::atomic<int> bad_ranges{0};
          pool.parallel_for_stealing(10, 10 + count, grain, chunk, [&](std::int64_t first, std::int64_t last) {
            // Non-empty, at most `chunk` grains, starting on a grain, whole grains but the last.
            const std::int64_t a = first - 10, b = last - 10;
            if (!(a < b && b - a <= chunk * grain && a % grain == 0 && (b == count || b % grain == 0))) bad_ranges++;
            for (std::int64_t i = a; i < b; ++i) hits[static_cast<std::size_t>(i)]++;
          });
          REQUIRE(bad_ranges.load() == 0);
          for (auto& h : hits) REQUIRE(h.load() == 1);
        }
      }
    }
  }
}

TEST_CASE("Fast kernels: parallel_for_stealing hands a stalled thread's share to the others",
          "[fast][threads]") {
  // The caller (thread 0) stalls on its first chunk until the worker has run
  // every other index (or 30 s pass): the worker finishes its own half, then
  // takes back halves of the caller's share until none is left. With a static
  // split it would run exactly half, and the caller would give up waiting.
  // (On a busy host the caller may start only after the worker has taken its
  // whole share: then the worker ran all of them and the caller none.)
  ThreadPool pool(2);
  constexpr std::int64_t count = 64;
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<std::int64_t> by_worker{0}, by_caller{0};
  pool.parallel_for_stealing(0, count, 1, 1, [&](std::int64_t first, std::int64_t last) {
    if (std::this_thread::get_id() != caller) {
      by_worker += last - first;
    } else if (by_caller.fetch_add(last - first) == 0) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (by_worker.load() < count - 1 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  });
  REQUIRE(by_worker.load() + by_caller.load() == count);
  REQUIRE(by_caller.load() <= 1);
  // An exception from one range reaches the caller, and the pool still works.
  REQUIRE_THROWS_AS(pool.parallel_for_stealing(0, 100, 1, 2, [&](std::int64_t first, std::int64_t last) {
    if (first <= 50 && 50 < last) throw std::runtime_error("index 50");
  }), std::runtime_error);
  std::atomic<std::int64_t> total{0};
  pool.parallel_for_stealing(0, 100, 1, 2, [&](std::int64_t first, std::int64_t last) { total += last - first; });
  REQUIRE(total.load() == 100);
}

TEST_CASE("Fast kernels: thread pool runs nested calls inline and rethrows", "[fast][threads]") {
  ThreadPool pool(3);
  std::atomic<int> total{0}, outer_calls{0};
  pool.parallel_for(0, 6, 1, [&](std::int64_t first, std::int64_t last) {
    outer_calls++;
    pool.parallel_for(0, 10, 1, [&](std::int64_t a, std::int64_t b) { total += static_cast<int>(b - a); });
    total += static_cast<int>(last - first) * 100;
  });
  // Every outer range ran the whole nested loop (inline) once.
  REQUIRE(outer_calls.load() >= 1);
  REQUIRE(total.load() == 6 * 100 + 10 * outer_calls.load());
  REQUIRE_THROWS_AS(pool.run(4, [](int task) {
    if (task == 2) throw std::runtime_error("task 2");
  }), std::runtime_error);
  // The pool still works after a task threw.
  std::atomic<int> count{0};
  pool.run(8, [&](int) { count++; });
  REQUIRE(count.load() == 8);
}

TEST_CASE("Fast kernels: set_num_threads replaces the process pool", "[fast][threads]") {
  const int before = num_threads();
  set_num_threads(3);
  REQUIRE(num_threads() == 3);
  set_num_threads(1);
  REQUIRE(num_threads() == 1);
  set_num_threads(before);
  REQUIRE(num_threads() == before);
}

#if !defined(__SANITIZE_ADDRESS__)
TEST_CASE("Fast kernels: a thread pool whose threads cannot start is an Error, not a crash", "[fast][threads]") {
  // In a child process with its address space capped a few stacks above what
  // it uses, so that the 8 MiB thread stacks run out after a handful.
  // (Not under AddressSanitizer, whose own mappings the cap would break.)
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::ifstream status("/proc/self/status");
    std::string key;
    long long vm_kb = -1;
    while (status >> key) {
      if (key == "VmSize:" && status >> vm_kb) break;
      status.ignore(1 << 20, '\n');
    }
    const rlim_t cap = static_cast<rlim_t>(vm_kb + 40 * 1024) * 1024;
    const rlimit limit{cap, cap};
    if (vm_kb < 0 || ::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(3);
    try {
      ThreadPool pool(64);
      ::_exit(1);
    } catch (const Error& e) {
      ::_exit(std::string(e.what()).find("could not be started") != std::string::npos ? 0 : 2);
    } catch (...) {
      ::_exit(4);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  INFO("child exit code (0: Error thrown, 1: no error, 2: other message, 3: no cap, 4: other exception)");
  CHECK(WEXITSTATUS(status) == 0);
}
#endif

TEST_CASE("Fast kernels: large buffers are huge-page aligned, whole and writable", "[fast][memory]") {
  const auto address = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
  SECTION("small buffers: 64-byte aligned, no huge-page padding") {
    for (std::size_t bytes : {std::size_t{1}, std::size_t{100}, kHugePageMinBytes - 1}) {
      const LargeBuffer b = allocate_large_bytes(bytes);
      REQUIRE(address(b.get()) % 64 == 0);
      std::fill_n(b.get(), bytes, std::byte{0x5a});  // the whole range is ours (ASan checks)
      REQUIRE(b[bytes - 1] == std::byte{0x5a});
    }
  }
  SECTION("large buffers: 2 MiB aligned, every byte writable, advice keeps contents") {
    const std::size_t bytes = kHugePageBytes * 2 + 12345;
    const LargeBuffer b = allocate_large_bytes(bytes);
    REQUIRE(address(b.get()) % (huge_pages_enabled() ? kHugePageBytes : 64) == 0);
    for (std::size_t i = 0; i < bytes; ++i) b[i] = static_cast<std::byte>(i * 7);
    advise_huge_pages(b.get(), bytes);  // again, after the first touch: a hint only
    for (std::size_t i = 0; i < bytes; i += 4093) REQUIRE(b[i] == static_cast<std::byte>(i * 7));
  }
  SECTION("advice needs a whole huge page inside the range") {
    REQUIRE_FALSE(advise_huge_pages(nullptr, kHugePageBytes * 4));
    const LargeBuffer b = allocate_large_bytes(kHugePageBytes * 2);
    REQUIRE_FALSE(advise_huge_pages(b.get() + 1, kHugePageBytes));  // no whole page inside
#if defined(__linux__)
    if (huge_pages_enabled() && std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) {
      REQUIRE(advise_huge_pages(b.get(), kHugePageBytes * 2));
    }
#endif
  }
  SECTION("GPTOSS_HUGE_PAGES values") {
    STATIC_REQUIRE(huge_pages_setting_from_name(nullptr) == true);
    STATIC_REQUIRE(huge_pages_setting_from_name("1") == true);
    STATIC_REQUIRE(huge_pages_setting_from_name("on") == true);
    STATIC_REQUIRE(huge_pages_setting_from_name("0") == false);
    STATIC_REQUIRE(huge_pages_setting_from_name("off") == false);
    STATIC_REQUIRE_FALSE(huge_pages_setting_from_name("").has_value());
    STATIC_REQUIRE_FALSE(huge_pages_setting_from_name("OFF").has_value());
    STATIC_REQUIRE_FALSE(huge_pages_setting_from_name("banana").has_value());
  }
  SECTION("HugePageAllocator: zeroed by default, uninitialised on request, copies") {
    std::vector<std::uint8_t, HugePageAllocator<std::uint8_t>> zeroed(kHugePageBytes + 3);
    REQUIRE(address(zeroed.data()) % (huge_pages_enabled() ? kHugePageBytes : 64) == 0);
    REQUIRE(std::all_of(zeroed.begin(), zeroed.end(), [](std::uint8_t v) { return v == 0; }));
    std::vector<float, HugePageAllocator<float, true>> raw(1000);
    REQUIRE(address(raw.data()) % 64 == 0);
    std::iota(raw.begin(), raw.end(), 0.5f);
    const auto copy = raw;
    REQUIRE(copy.size() == 1000);
    REQUIRE(copy[999] == 999.5f);
    REQUIRE_THROWS_AS(raw.get_allocator().allocate(std::size_t(-1) / 2), std::bad_array_new_length);
  }
}

TEST_CASE("Fast kernels: the read bandwidth probe sums exactly and rejects empty work", "[fast][memory]") {
  test::Rng rng(77);
  // Small integers in floats: every tier's sum is exact, whatever its order.
  std::vector<float, HugePageAllocator<float>> values(64 * 37);
  double expected = 0.0;
  for (float& v : values) {
    v = static_cast<float>(test::uniform_int(rng, -50, 50));
    expected += v;
  }
  REQUIRE(kernels::fast::detail::sum_floats_portable(values.data(), values.size()) == expected);
  REQUIRE(kernels::fast::detail::sum_floats(values.data(), values.size()) == expected);
#if GPTOSS_X86
  if (detected_isa() == Isa::avx512) REQUIRE(kernels::fast::detail::sum_floats_avx512(values.data(), values.size()) == expected);
  if (detected_isa() == Isa::avx512 || detected_isa() == Isa::avx2_fma) REQUIRE(kernels::fast::detail::sum_floats_avx2(values.data(), values.size()) == expected);
#endif
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    const double rate = kernels::fast::measure_read_bandwidth(pool, std::size_t{1} << 20, 2);
    REQUIRE(std::isfinite(rate));
    REQUIRE(rate > 0.0);
    REQUIRE_THROWS_AS(kernels::fast::measure_read_bandwidth(pool, 255 * static_cast<std::size_t>(threads), 1),
                      std::invalid_argument);
    REQUIRE_THROWS_AS(kernels::fast::measure_read_bandwidth(pool, std::size_t{1} << 20, 0), std::invalid_argument);
  }
}

// ---------------------------------------------------------------------------
// Linear

TEST_CASE("Fast linear: no inputs (K = 0) gives the bias, on the row and panel paths", "[fast][linear]") {
  Tensor<bf16, 1> bias({5});
  for (index_t r = 0; r < 5; ++r) bias(r) = bf16::from_float(0.5f * static_cast<float>(r) - 1.0f);
  const Tensor<bf16, 2> w_bf16({5, 0});
  const Tensor<float, 2> w_f32({5, 0});
  const Int8Matrix w_int8 = quantize_int8(w_bf16.view(), "w");
  for (const index_t t_count : {index_t{1}, index_t{16}, index_t{40}}) {
    const Tensor<float, 2> x({t_count, 0});
    for (const bool with_bias : {true, false}) {
      const VectorView<const bf16> b = with_bias ? bias.view() : VectorView<const bf16>{};
      Tensor<float, 2> want({t_count, 5});
      kernels::linear(cpu_reference{}, MatrixView<const bf16>(w_bf16.view()), b, x.view(), want.view());
      for (Isa isa : runnable_isas()) {
        ScopedIsaLimit limit(isa);
        INFO("T " << t_count << ", isa " << isa_name(isa) << (with_bias ? ", bias" : ""));
        Tensor<float, 2> y({t_count, 5});
        poison(y);
        kernels::linear(cpu_fast{}, MatrixView<const bf16>(w_bf16.view()), b, x.view(), y.view());
        CHECK(y.storage() == want.storage());
        poison(y);
        kernels::linear(cpu_fast{}, MatrixView<const float>(w_f32.view()), b, x.view(), y.view());
        CHECK(y.storage() == want.storage());
        poison(y);
        kernels::linear(cpu_fast{}, w_int8.view(), b, x.view(), y.view());
        CHECK(y.storage() == want.storage());
        CHECK(y(t_count - 1, 4) == (with_bias ? 1.0f : 0.0f));
      }
    }
  }
}

TEST_CASE("Fast linear: MXFP4 matches the reference on odd sizes", "[fast][linear][mxfp4]") {
  test::Rng rng(101);
  struct Shape { index_t n, k; };
  for (const Shape s : {Shape{1, 32}, Shape{3, 32}, Shape{5, 64}, Shape{7, 96}, Shape{17, 160},
                        Shape{33, 416}, Shape{40, 2880}}) {
    for (const index_t t_count : {1, 2, 3, 4, 7, 33}) {
      DYNAMIC_SECTION("N " << s.n << ", K " << s.k << ", T " << t_count) {
        const FP4Tensor<> w = random_mxfp4(rng, s.n, s.k, 118, 130);
        const Tensor<float, 2> x = random_activations(rng, t_count, s.k);
        const Tensor<bf16, 1> bias = test::random_bf16<1>(rng, {s.n}, -1.0f, 1.0f);
        check_linear_all_tiers(w.view(), x, bias.view());
        check_linear_all_tiers(w.view(), x, VectorView<const bf16>{});
      }
    }
  }
}

TEST_CASE("Fast linear: one-token MXFP4 rows, read one at a time or 4 side by side, match the reference",
          "[fast][linear][mxfp4]") {
  // At one token with bf16 dot products or int8 activations a row is read
  // whole before the next, in runs of 16 blocks, its last 1..16 blocks in
  // one masked run (Mxfp4DecodeRows::one, the default); `grouped` reads 4
  // rows side by side. Every remainder of the blocks per row modulo 16, rows of whole
  // runs only, and a product large enough for the thread pool.
  test::Rng rng(505);
  std::vector<index_t> block_counts;
  for (index_t b = 1; b <= 33; ++b) block_counts.push_back(b);
  block_counts.push_back(90);  // K = 2880
  for (const index_t blocks : block_counts) {
    const index_t k = 32 * blocks, n = blocks == 90 ? 97 : 5 + blocks % 4;
    DYNAMIC_SECTION("N " << n << ", K " << k) {
      const FP4Tensor<> w = random_mxfp4(rng, n, k, 118, 130);
      const Tensor<float, 2> x = random_activations(rng, 1, k);
      const Tensor<bf16, 1> bias = test::random_bf16<1>(rng, {n}, -1.0f, 1.0f);
      for (const auto rows : {kernels::fast::Mxfp4DecodeRows::one, kernels::fast::Mxfp4DecodeRows::grouped}) {
        INFO("MXFP4 decode rows " << static_cast<int>(rows));
        ScopedMxfp4DecodeRows scoped(rows);
        check_linear_all_tiers(w.view(), x, bias.view());
      }
    }
  }
}

TEST_CASE("Fast linear: MXFP4 special scale bytes", "[fast][linear][mxfp4]") {
  test::Rng rng(202);
  const index_t n = 13, k = 224;
  SECTION("bytes 0 and 1: subnormal weights") {
    const FP4Tensor<> w = random_mxfp4(rng, n, k, 0, 1);
    check_linear_all_tiers(w.view(), random_activations(rng, 5, k), VectorView<const bf16>{});
  }
  SECTION("large exponents, finite sums") {
    const FP4Tensor<> w = random_mxfp4(rng, n, k, 200, 230);
    check_linear_all_tiers(w.view(), random_activations(rng, 5, k), VectorView<const bf16>{});
  }
  SECTION("bytes 250..255: some weights infinite, tiny activations") {
    const FP4Tensor<> w = random_mxfp4(rng, n, k, 250, 255);
    check_linear_all_tiers(w.view(), random_activations(rng, 3, k, 1e-30f), VectorView<const bf16>{});
  }
  SECTION("a mix: most blocks ordinary, a few extreme") {
    FP4Tensor<> w = random_mxfp4(rng, n, k, 120, 128);
    for (std::size_t i = 0; i < w.scales().size(); i += 11) {
      w.scales()[i] = static_cast<std::uint8_t>(std::array{0, 1, 251, 252, 253}[i % 5]);
    }
    // Small activations keep the sums far from FLT_MAX, where fp32 partial
    // sums (fast) and a float64 sum (reference) overflow at different points.
    check_linear_all_tiers(w.view(), random_activations(rng, 4, k, 1e-6f), VectorView<const bf16>{});
  }
  SECTION("extreme rows in several row blocks, through the pool") {
    // Rows are flagged once per row block, after its first pass: flagged
    // rows in the first, a middle and the last block, with 1 token and with
    // more tokens than a micro-kernel call takes (flags kept across calls).
    FP4Tensor<> w = random_mxfp4(rng, 101, 2880, 122, 126);
    const index_t blocks = w.view().blocks_per_row();
    for (const index_t row : {index_t{0}, index_t{37}, index_t{100}}) {
      w.scales()[static_cast<std::size_t>(row * blocks + row % blocks)] = row == 37 ? 0 : 253;
    }
    for (const index_t t_count : {index_t{1}, index_t{6}}) {
      check_linear_all_tiers(w.view(), random_activations(rng, t_count, 2880, 1e-6f), VectorView<const bf16>{});
    }
  }
}

TEST_CASE("Fast linear: a group of MXFP4 products equals each product run alone", "[fast][linear][mxfp4][group]") {
  // Groups run in one pass of the pool when every product streams rows and
  // has a micro-kernel's rows (the first group); a product below that sends
  // the whole group one product at a time (the second). Shapes: row counts
  // that are not multiples of a row block, extreme-scale rows recomputed
  // exactly, several tokens, with and without bias.
  test::Rng rng(909);
  FP4Tensor<> big = random_mxfp4(rng, 101, 2880, 122, 126);
  const index_t blocks = big.view().blocks_per_row();
  big.scales()[static_cast<std::size_t>(37 * blocks + 5)] = 0;
  big.scales()[static_cast<std::size_t>(100 * blocks + 89)] = 253;
  const FP4Tensor<> wide = random_mxfp4(rng, 64, 96, 118, 130);
  const FP4Tensor<> four = random_mxfp4(rng, 4, 160, 118, 130);
  const FP4Tensor<> three = random_mxfp4(rng, 3, 64, 118, 130);
  const Tensor<bf16, 1> big_bias = test::random_bf16<1>(rng, {101}, -1.0f, 1.0f);
  const Tensor<bf16, 1> four_bias = test::random_bf16<1>(rng, {4}, -1.0f, 1.0f);
  const Tensor<float, 2> x_big = random_activations(rng, 1, 2880, 1e-6f), x_wide = random_activations(rng, 1, 96),
                         x_four = random_activations(rng, 3, 160), x_three = random_activations(rng, 2, 64);
  struct Case { const FP4Tensor<>* w; VectorView<const bf16> bias; const Tensor<float, 2>* x; };
  const std::vector<Case> one_pass{{&big, big_bias.view(), &x_big}, {&wide, {}, &x_wide}, {&four, four_bias.view(), &x_four}};
  std::vector<Case> with_small = one_pass;
  with_small.push_back({&three, {}, &x_three});

  for (const std::vector<Case>* cases : std::array<const std::vector<Case>*, 2>{&one_pass, &with_small}) {
    for (Isa isa : runnable_isas()) {
      for (MatmulPrecision p : {MatmulPrecision::fp32, MatmulPrecision::bf16x2, MatmulPrecision::bf16,
                                MatmulPrecision::int8}) {
        ScopedIsaLimit limit(isa);
        ScopedPrecision precision(p);
        INFO("isa " << isa_name(isa) << ", precision " << matmul_precision_name(p) << ", " << cases->size()
                    << " products");
        std::vector<Tensor<float, 2>> grouped, alone;
        std::vector<kernels::LinearTask<FP4TensorView<MXFP4Checkpoint>>> tasks;
        for (const Case& c : *cases) {
          grouped.emplace_back(std::array{c.x->extent(0), c.w->view().rows()});
          alone.emplace_back(std::array{c.x->extent(0), c.w->view().rows()});
          poison(grouped.back());
        }
        for (std::size_t i = 0; i < cases->size(); ++i) {
          const Case& c = (*cases)[i];
          tasks.push_back({c.w->view(), c.bias, c.x->view(), grouped[i].view()});
          kernels::linear(cpu_fast{}, c.w->view(), c.bias, c.x->view(), alone[i].view());
        }
        kernels::linear_group(cpu_fast{}, std::span<const kernels::LinearTask<FP4TensorView<MXFP4Checkpoint>>>(tasks));
        for (std::size_t i = 0; i < cases->size(); ++i) {
          INFO("product " << i);
          const auto& g = grouped[i].storage();
          const auto& a = alone[i].storage();
          // Equal, or NaN in both (row 100's infinite weights).
          CHECK(std::equal(g.begin(), g.end(), a.begin(), a.end(),
                           [](float u, float v) { return u == v || (std::isnan(u) && std::isnan(v)); }));
        }
      }
    }
  }
  // Any backend: one product after another, each as linear computes it.
  std::vector<kernels::LinearTask<FP4TensorView<MXFP4Checkpoint>>> tasks;
  Tensor<float, 2> y_wide({1, 64}), y_four({3, 4}), ref_wide({1, 64}), ref_four({3, 4});
  tasks.push_back({wide.view(), {}, x_wide.view(), y_wide.view()});
  tasks.push_back({four.view(), four_bias.view(), x_four.view(), y_four.view()});
  kernels::linear_group(cpu_reference{}, std::span<const kernels::LinearTask<FP4TensorView<MXFP4Checkpoint>>>(tasks));
  kernels::linear(cpu_reference{}, wide.view(), {}, x_wide.view(), ref_wide.view());
  kernels::linear(cpu_reference{}, four.view(), four_bias.view(), x_four.view(), ref_four.view());
  CHECK(y_wide.storage() == ref_wide.storage());
  CHECK(y_four.storage() == ref_four.storage());
  // A mis-shaped product is rejected as kernels::linear rejects it.
  Tensor<float, 2> wrong({1, 63});
  tasks[0].y = wrong.view();
  CHECK_THROWS_AS(kernels::linear_group(cpu_fast{}, std::span<const kernels::LinearTask<FP4TensorView<MXFP4Checkpoint>>>(tasks)),
                  ShapeError);
}

TEST_CASE("Fast linear: int8 activation blocks round to nearest even at max |x| / 127",
          "[fast][linear][int8]") {
  // max |x| = 254: scale 2, so x / 2 rounds to nearest, ties to even.
  std::array<float, 32> x{};
  x[0] = 254.0f;
  x[1] = -254.0f;
  x[2] = 3.0f;   // 1.5 -> 2
  x[3] = 5.0f;   // 2.5 -> 2
  x[4] = -7.0f;  // -3.5 -> -4
  x[5] = 0.9f;   // 0.45 -> 0
  x[6] = 101.2f; // 50.6 -> 51
  std::array<std::int8_t, 32> q{};
  CHECK(kernels::fast::quantize_activation_block_int8(x.data(), q.data()) == 2.0f);
  CHECK(std::vector<int>(q.begin(), q.begin() + 8) == std::vector<int>{127, -127, 2, 2, -4, 0, 51, 0});
  x.fill(0.0f);
  CHECK(kernels::fast::quantize_activation_block_int8(x.data(), q.data()) == 0.0f);
  CHECK(std::all_of(q.begin(), q.end(), [](std::int8_t v) { return v == 0; }));
  x[9] = kNaN;
  CHECK(std::isnan(kernels::fast::quantize_activation_block_int8(x.data(), q.data())));
  x[9] = -INFINITY;
  CHECK(std::isnan(kernels::fast::quantize_activation_block_int8(x.data(), q.data())));
  // A subnormal block keeps its relative precision (scaled by 2^64 first).
  x.fill(0.0f);
  x[0] = 1e-40f;
  x[1] = -0.5e-40f;
  const float scale = kernels::fast::quantize_activation_block_int8(x.data(), q.data());
  CHECK(q[0] == 127);
  CHECK(q[1] == -64);  // -63.5 -> -64 (even)
  CHECK(scale > 0.0f);
}

TEST_CASE("Fast linear: int8 precision on MXFP4 weights, special activations", "[fast][linear][int8][mxfp4]") {
  // Row streaming (3 tokens) and panels (kPanelMinTokens + 3); the special
  // blocks are in the first three tokens.
  test::Rng rng(909);
  const index_t n = 21, k = 352;
  const FP4Tensor<> w = random_mxfp4(rng, n, k, 118, 130);
  for (const index_t t_count : {index_t{3}, kernels::fast::kPanelMinTokens + 3}) {
    DYNAMIC_SECTION("zero, subnormal and mixed-magnitude blocks, T " << t_count) {
      Tensor<float, 2> x = random_activations(rng, t_count, k);
      for (index_t i = 0; i < 32; ++i) x(0, i) = 0.0f;                    // an all-zero block
      for (index_t i = 32; i < 64; ++i) x(1, i) *= 1e-39f;                // subnormal activations
      for (index_t i = 64; i < 96; ++i) x(2, i) = i == 64 ? 1e6f : x(2, i);  // one large outlier
      check_linear_all_tiers(w.view(), x, VectorView<const bf16>{});
    }
    DYNAMIC_SECTION("a NaN or an infinity makes its token's outputs NaN, T " << t_count) {
      Tensor<float, 2> x = random_activations(rng, t_count, k);
      x(0, 100) = kNaN;
      x(2, 351) = INFINITY;
      ScopedPrecision precision(MatmulPrecision::int8);
      Tensor<float, 2> y({t_count, n});
      kernels::linear(cpu_fast{}, w.view(), VectorView<const bf16>{}, x.view(), y.view());
      for (index_t r = 0; r < n; ++r) {
        CHECK(std::isnan(y(0, r)));
        CHECK(std::isfinite(y(1, r)));
        CHECK(!std::isfinite(y(2, r)));
        if (t_count > 3) CHECK(std::isfinite(y(t_count - 1, r)));  // a token after them, in another tile
      }
    }
  }
}

TEST_CASE("Fast linear: bf16 and fp32 weights match the reference on odd sizes", "[fast][linear]") {
  test::Rng rng(303);
  struct Shape { index_t n, k; };
  // 97 x 2880 is large enough to go to the thread pool at one token. At one
  // token, at every precision, bf16 rows are read one per call by default
  // and 4 per call after set_bf16_decode_rows(grouped): both are checked.
  for (const Shape s : {Shape{1, 1}, Shape{2, 17}, Shape{5, 32}, Shape{7, 33}, Shape{9, 100},
                        Shape{21, 2880}, Shape{97, 2880}}) {
    for (const index_t t_count : {1, 3, 5, 33}) {
      DYNAMIC_SECTION("N " << s.n << ", K " << s.k << ", T " << t_count) {
        const Tensor<bf16, 2> wb = test::random_bf16<2>(rng, {s.n, s.k}, -1.0f, 1.0f);
        const Tensor<float, 2> wf = test::random_matrix(rng, s.n, s.k);
        const Tensor<float, 2> x = random_activations(rng, t_count, s.k, 3.0f);
        const Tensor<bf16, 1> bias = test::random_bf16<1>(rng, {s.n}, -1.0f, 1.0f);
        for (const auto rows : {kernels::fast::Bf16DecodeRows::one, kernels::fast::Bf16DecodeRows::grouped}) {
          INFO("bf16 decode rows " << static_cast<int>(rows));
          ScopedBf16DecodeRows scoped(rows);
          check_linear_all_tiers(MatrixView<const bf16>(wb.view()), x, bias.view());
        }
        check_linear_all_tiers(MatrixView<const float>(wf.view()), x, bias.view());
      }
    }
  }
}

TEST_CASE("Fast linear: a non-finite bf16 weight reaches only its own row", "[fast][linear]") {
  // A row whose last chunk is partial (K = 33, 100) is followed in memory by
  // the next row; that row's infinities must not leak into it (the row
  // kernels read a partial chunk with a masked load), at one token (row
  // streaming, one row or 4 per call), at a small batch (4-row groups) and
  // at a batch large enough for panels.
  test::Rng rng(313);
  for (const index_t k : {index_t{33}, index_t{100}}) {
    for (const index_t t_count : {index_t{1}, index_t{5}, kernels::fast::kPanelMinTokens + 1}) {
      DYNAMIC_SECTION("K " << k << ", T " << t_count) {
        const index_t n = 9;
        Tensor<bf16, 2> w = test::random_bf16<2>(rng, {n, k}, -1.0f, 1.0f);
        w(4, 0) = bf16::from_float(INFINITY);
        w(4, 1) = bf16::from_float(-INFINITY);
        const Tensor<float, 2> x = random_activations(rng, t_count, k);
        Tensor<float, 2> y({t_count, n});
        for (Isa isa : runnable_isas()) {
          for (MatmulPrecision p : {MatmulPrecision::fp32, MatmulPrecision::bf16x2, MatmulPrecision::bf16}) {
            for (const auto rows : {kernels::fast::Bf16DecodeRows::one, kernels::fast::Bf16DecodeRows::grouped}) {
              ScopedIsaLimit limit(isa);
              ScopedPrecision precision(p);
              ScopedBf16DecodeRows scoped(rows);
              INFO("isa " << isa_name(isa) << ", precision " << matmul_precision_name(p) << ", decode rows "
                          << static_cast<int>(rows));
              kernels::linear(cpu_fast{}, MatrixView<const bf16>(w.view()), VectorView<const bf16>{}, x.view(),
                              y.view());
              for (index_t t = 0; t < t_count; ++t) {
                for (index_t r = 0; r < n; ++r) {
                  INFO("token " << t << ", row " << r);
                  CHECK(std::isfinite(y(t, r)) == (r != 4));
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("Fast linear: panel products (many tokens) match the reference", "[fast][linear][panel]") {
  // From kPanelMinTokens tokens on, AVX-512 decodes 32-row panels once per
  // call; around the threshold, partial panels, partial token tiles and K
  // that is not a multiple of 32 (bf16) or of 128 (MXFP4) are covered here.
  test::Rng rng(404);
  constexpr index_t kMin = kernels::fast::kPanelMinTokens;
  struct Shape { index_t n, k; };
  for (const Shape s : {Shape{1, 32}, Shape{31, 96}, Shape{33, 160}, Shape{70, 2880}}) {
    for (const index_t t_count : {kMin - 1, kMin, kMin + 13, 3 * kMin + 5}) {
      DYNAMIC_SECTION("MXFP4 N " << s.n << ", K " << s.k << ", T " << t_count) {
        const FP4Tensor<> w = random_mxfp4(rng, s.n, s.k, 118, 130);
        const Tensor<float, 2> x = random_activations(rng, t_count, s.k);
        const Tensor<bf16, 1> bias = test::random_bf16<1>(rng, {s.n}, -1.0f, 1.0f);
        check_linear_all_tiers(w.view(), x, bias.view());
      }
    }
  }
  for (const Shape s : {Shape{1, 1}, Shape{7, 33}, Shape{32, 64}, Shape{45, 101}, Shape{40, 2880}}) {
    for (const index_t t_count : {kMin, kMin + 13}) {
      DYNAMIC_SECTION("bf16 N " << s.n << ", K " << s.k << ", T " << t_count) {
        const Tensor<bf16, 2> wb = test::random_bf16<2>(rng, {s.n, s.k}, -1.0f, 1.0f);
        const Tensor<float, 2> x = random_activations(rng, t_count, s.k, 3.0f);
        const Tensor<bf16, 1> bias = test::random_bf16<1>(rng, {s.n}, -1.0f, 1.0f);
        check_linear_all_tiers(MatrixView<const bf16>(wb.view()), x, bias.view());
        check_linear_all_tiers(MatrixView<const bf16>(wb.view()), x, VectorView<const bf16>{});
      }
    }
  }
  SECTION("MXFP4 special scale bytes, flagged rows recomputed") {
    FP4Tensor<> w = random_mxfp4(rng, 37, 224, 120, 128);
    for (std::size_t i = 0; i < w.scales().size(); i += 11) {
      w.scales()[i] = static_cast<std::uint8_t>(std::array{0, 1, 2, 251, 252, 253, 255}[i % 7]);
    }
    check_linear_all_tiers(w.view(), random_activations(rng, kMin + 3, 224, 1e-6f), VectorView<const bf16>{});
  }
  SECTION("NaN activations reach exactly their tokens' outputs") {
    const FP4Tensor<> w = random_mxfp4(rng, 40, 64, 120, 128);
    Tensor<float, 2> x = random_activations(rng, kMin + 2, 64);
    x(5, 17) = kNaN;
    check_linear_all_tiers(w.view(), x, VectorView<const bf16>{});
  }
}

TEST_CASE("Fast linear: 8-bit weights match the reference, rows and panels", "[fast][linear][int8]") {
  // Token counts on both sides of the panel threshold; K not a multiple of
  // the 32-element block (a padded last block); fewer rows than a group.
  test::Rng rng(505);
  constexpr index_t kMin = kernels::fast::kPanelMinTokens;
  struct Shape { index_t n, k; };
  for (const Shape s : {Shape{1, 1}, Shape{3, 33}, Shape{9, 64}, Shape{33, 100}, Shape{37, 2880}}) {
    for (const index_t t_count : {index_t{1}, index_t{3}, index_t{7}, kMin, kMin + 13}) {
      DYNAMIC_SECTION("N " << s.n << ", K " << s.k << ", T " << t_count) {
        const Tensor<bf16, 2> wb = test::random_bf16<2>(rng, {s.n, s.k}, -2.0f, 2.0f);
        const Int8Matrix w = quantize_int8(wb.view(), "w");
        const Tensor<float, 2> x = random_activations(rng, t_count, s.k, 3.0f);
        const Tensor<bf16, 1> bias = test::random_bf16<1>(rng, {s.n}, -1.0f, 1.0f);
        check_linear_all_tiers(w.view(), x, bias.view());
        check_linear_all_tiers(w.view(), x, VectorView<const bf16>{});
      }
    }
  }
  SECTION("NaN activations reach exactly their tokens' outputs") {
    const Tensor<bf16, 2> wb = test::random_bf16<2>(rng, {40, 96}, -1.0f, 1.0f);
    const Int8Matrix w = quantize_int8(wb.view(), "w");
    for (const index_t t_count : {index_t{2}, kMin + 2}) {
      Tensor<float, 2> x = random_activations(rng, t_count, 96);
      x(1, 17) = kNaN;
      check_linear_all_tiers(w.view(), x, VectorView<const bf16>{});
    }
  }
}

TEST_CASE("Fast linear: rejects shapes the reference rejects", "[fast][linear]") {
  const Tensor<float, 2> w({4, 8});
  const Tensor<float, 2> x({2, 7});
  Tensor<float, 2> y({2, 4});
  REQUIRE_THROWS_AS(kernels::linear(cpu_fast{}, MatrixView<const float>(w.view()),
                                    VectorView<const bf16>{}, x.view(), y.view()),
                    ShapeError);
  const FP4Tensor<> q(4, 32);
  const Tensor<float, 2> x32({2, 32});
  Tensor<float, 2> bad({2, 5});
  REQUIRE_THROWS_AS(kernels::linear(cpu_fast{}, q.view(), VectorView<const bf16>{}, x32.view(), bad.view()),
                    ShapeError);
  const Tensor<bf16, 1> short_bias({3});
  REQUIRE_THROWS_AS(kernels::linear(cpu_fast{}, q.view(), short_bias.view(), x32.view(), y.view()),
                    ShapeError);
}

// ---------------------------------------------------------------------------
// Attention

namespace {

struct AttentionCase {
  index_t t_count, nq, nkv, d, s_count, window;
  bool decode;        // T queries at the last T positions (else positions 0..T-1)
  bool shuffled_keys; // k_pos a permutation (not increasing)
};

void check_attention(test::Rng& rng, const AttentionCase& c, bool minus_inf_sink) {
  const Tensor<float, 3> q = test::random_tensor<3>(rng, {c.t_count, c.nq, c.d}, 1.5f);
  const Tensor<float, 3> k = test::random_tensor<3>(rng, {c.s_count, c.nkv, c.d}, 1.5f);
  const Tensor<float, 3> v = test::random_tensor<3>(rng, {c.s_count, c.nkv, c.d}, 2.0f);
  Tensor<index_t, 1> q_pos({c.t_count}), k_pos({c.s_count});
  for (index_t t = 0; t < c.t_count; ++t) q_pos(t) = c.decode ? c.s_count - c.t_count + t : t;
  for (index_t j = 0; j < c.s_count; ++j) k_pos(j) = j;
  if (c.shuffled_keys) {
    for (index_t j = c.s_count - 1; j > 0; --j) std::swap(k_pos(j), k_pos(test::uniform_int(rng, 0, j)));
  }
  Tensor<float, 1> sinks = test::random_tensor<1>(rng, {c.nq}, 2.0f);
  if (minus_inf_sink) sinks(0) = -kInf;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
  Tensor<float, 2> ref({c.t_count, c.nq * c.d}), fast({c.t_count, c.nq * c.d});
  kernels::sink_attention(cpu_reference{}, q.view(), q_pos.view(), k.view(), v.view(), k_pos.view(),
                          sinks.view(), scale, c.window, ref.view());
  for (Isa isa : runnable_isas()) {
    ScopedIsaLimit limit(isa);
    INFO("isa " << isa_name(isa));
    poison(fast);
    kernels::sink_attention(cpu_fast{}, q.view(), q_pos.view(), k.view(), v.view(), k_pos.view(),
                            sinks.view(), scale, c.window, fast.view());
    GPTOSS_REQUIRE_CLOSE(test::compare_to_max(fast.storage(), ref.storage(), 0.0, 1e-5));
  }
}

}  // namespace

TEST_CASE("Fast attention: matches the reference (decode, prefill, windows, GQA)",
          "[fast][attention]") {
  test::Rng rng(404);
  const AttentionCase cases[] = {
      {1, 8, 2, 64, 1, 0, true, false},      {1, 8, 2, 64, 100, 0, true, false},
      {1, 8, 1, 16, 37, 4, true, false},     {1, 4, 4, 7, 33, 0, true, false},
      {3, 8, 2, 64, 17, 0, true, false},     {17, 4, 2, 24, 17, 0, false, false},
      {33, 8, 2, 64, 33, 5, false, false},   {16, 2, 1, 130, 16, 1, false, false},
      {5, 6, 3, 9, 40, 30, true, false},     {4, 4, 2, 16, 50, 0, true, true},
      {6, 4, 1, 32, 45, 8, true, true},      {2, 64, 8, 64, 300, 128, true, false},
  };
  for (const AttentionCase& c : cases) {
    for (bool minus_inf_sink : {false, true}) {
      DYNAMIC_SECTION("T " << c.t_count << ", nq " << c.nq << ", nkv " << c.nkv << ", D " << c.d
                           << ", S " << c.s_count << ", window " << c.window
                           << (c.shuffled_keys ? ", shuffled keys" : "")
                           << (minus_inf_sink ? ", -inf sink" : "")) {
        check_attention(rng, c, minus_inf_sink);
      }
    }
  }
}

TEST_CASE("Attention: a masked key's NaN or infinite value reaches no query that cannot see it",
          "[fast][attention][bad-input]") {
  test::Rng rng(405);
  const index_t s_count = 20, nq = 4, nkv = 2, d = 24, window = 5, bad_key = 10;
  const Tensor<float, 3> q = test::random_tensor<3>(rng, {s_count, nq, d}, 1.5f);
  const Tensor<float, 3> k = test::random_tensor<3>(rng, {s_count, nkv, d}, 1.5f);
  const Tensor<float, 3> clean_v = test::random_tensor<3>(rng, {s_count, nkv, d}, 2.0f);
  const Tensor<float, 1> sinks = test::random_tensor<1>(rng, {nq}, 2.0f);
  // Queries at positions 0..19; keys in ring-buffer order (not sorted, so
  // the fast kernels scan them all and mask), key j at position (j + 7) % 20.
  Tensor<index_t, 1> q_pos({s_count}), k_pos({s_count});
  for (index_t j = 0; j < s_count; ++j) {
    q_pos(j) = j;
    k_pos(j) = (j + 7) % s_count;
  }
  const index_t bad_slot = (bad_key + s_count - 7) % s_count;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (const float bad : {kNaN, kInf}) {
    Tensor<float, 3> v = clean_v;
    v(bad_slot, 0, 3) = bad;  // KV head 0 serves query heads 0 and 1
    const auto run = [&](auto backend, const Tensor<float, 3>& values) {
      Tensor<float, 2> out({s_count, nq * d});
      kernels::sink_attention(backend, q.view(), q_pos.view(), k.view(), values.view(), k_pos.view(), sinks.view(),
                              scale, window, out.view());
      return out;
    };
    const auto check = [&](const Tensor<float, 2>& out, const Tensor<float, 2>& clean) {
      for (index_t t = 0; t < s_count; ++t) {
        const bool sees_bad_key = bad_key <= t && t - window < bad_key;
        for (index_t c = 0; c < nq * d; ++c) {
          INFO("query " << t << ", column " << c);
          if (sees_bad_key && c % d == 3 && c / d < 2) {
            CHECK(!std::isfinite(out(t, c)));
          } else if (sees_bad_key && c / d < 2) {
            CHECK(std::isfinite(out(t, c)));
          } else {
            CHECK(out(t, c) == Approx(clean(t, c)).epsilon(1e-5).margin(1e-6));
          }
        }
      }
    };
    const Tensor<float, 2> clean = run(cpu_reference{}, clean_v);
    check(run(cpu_reference{}, v), clean);
    for (Isa isa : runnable_isas()) {
      ScopedIsaLimit limit(isa);
      INFO("isa " << isa_name(isa) << ", bad value " << bad);
      check(run(cpu_fast{}, v), clean);
    }
  }
}

TEST_CASE("Fast attention: keys in parts (a ring or growing cache, then new tokens) match one "
          "concatenated set", "[fast][attention][kv-cache]") {
  // Each case: the cache's part (held keys; in ring order when `ring`), the
  // step's new tokens at the following positions, and an optional third
  // part; the oracle is the reference kernel over their concatenation, built
  // here.
  struct PartsCase {
    index_t held, t_count, extra, nq, nkv, d, window;
    bool ring;
  };
  test::Rng rng(405);
  const PartsCase cases[] = {
      {0, 1, 0, 8, 2, 64, 0, false},    {37, 1, 0, 8, 2, 64, 0, false},
      {128, 1, 0, 64, 8, 64, 128, true}, {5, 7, 0, 6, 3, 9, 5, true},
      {300, 3, 0, 8, 1, 64, 0, false},  {20, 9, 4, 4, 2, 24, 0, false},
      {16, 33, 0, 4, 4, 17, 16, true},  {40, 2, 3, 8, 2, 32, 12, true},
  };
  for (const PartsCase& c : cases) {
    DYNAMIC_SECTION("held " << c.held << (c.ring ? " (ring)" : "") << ", T " << c.t_count << ", extra "
                            << c.extra << ", nq " << c.nq << ", nkv " << c.nkv << ", D " << c.d
                            << ", window " << c.window) {
      // Held keys sit at positions [first, first + held); a ring stores them
      // rotated by a random offset, so their positions do not increase.
      const index_t first = c.ring ? test::uniform_int(rng, 0, 50) : 0;
      const index_t rotate = c.ring && c.held > 0 ? test::uniform_int(rng, 0, c.held - 1) : 0;
      const std::array<index_t, 3> counts{c.held, c.t_count, c.extra};
      std::vector<Tensor<float, 3>> ks, vs;
      std::vector<Tensor<index_t, 1>> pos;
      index_t next = first;
      for (std::size_t i = 0; i < counts.size(); ++i) {
        ks.push_back(test::random_tensor<3>(rng, {counts[i], c.nkv, c.d}, 1.5f));
        vs.push_back(test::random_tensor<3>(rng, {counts[i], c.nkv, c.d}, 2.0f));
        pos.emplace_back(std::array<index_t, 1>{counts[i]});
        for (index_t j = 0; j < counts[i]; ++j) {
          const index_t slot = i == 0 ? (j + rotate) % counts[i] : j;
          pos.back()(slot) = next + j;
        }
        next += counts[i];
      }
      // The extra part, when present, holds keys before the cache's (as kept
      // sink tokens would be); the queries sit at the new tokens' positions.
      if (c.extra > 0) {
        for (index_t j = 0; j < c.extra; ++j) pos[2](j) = first - c.extra + j;
      }
      Tensor<index_t, 1> q_pos({c.t_count});
      for (index_t t = 0; t < c.t_count; ++t) q_pos(t) = first + c.held + t;
      const Tensor<float, 3> q = test::random_tensor<3>(rng, {c.t_count, c.nq, c.d}, 1.5f);
      const Tensor<float, 1> sinks = test::random_tensor<1>(rng, {c.nq}, 2.0f);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));

      const std::size_t part_count = c.extra > 0 ? 3 : 2;
      std::vector<kernels::KeyValuePart> parts;
      index_t total = 0;
      for (std::size_t i = 0; i < part_count; ++i) {
        parts.push_back({ks[i].view(), vs[i].view(), pos[i].view()});
        total += counts[i];
      }
      Tensor<float, 3> k_all({total, c.nkv, c.d}), v_all({total, c.nkv, c.d});
      Tensor<index_t, 1> pos_all({total});
      index_t at = 0;
      for (std::size_t i = 0; i < part_count; ++i) {
        const index_t row = c.nkv * c.d;
        std::copy_n(ks[i].data(), counts[i] * row, k_all.data() + at * row);
        std::copy_n(vs[i].data(), counts[i] * row, v_all.data() + at * row);
        std::copy_n(pos[i].data(), counts[i], pos_all.data() + at);
        at += counts[i];
      }
      Tensor<float, 2> ref({c.t_count, c.nq * c.d}), out({c.t_count, c.nq * c.d});
      kernels::sink_attention(cpu_reference{}, q.view(), q_pos.view(), k_all.view(), v_all.view(),
                              pos_all.view(), sinks.view(), scale, c.window, ref.view());
      poison(out);
      kernels::sink_attention(cpu_reference{}, q.view(), q_pos.view(), parts, sinks.view(), scale,
                              c.window, out.view());
      GPTOSS_REQUIRE_CLOSE(test::compare_to_max(out.storage(), ref.storage(), 0.0, 0.0));
      for (Isa isa : runnable_isas()) {
        ScopedIsaLimit limit(isa);
        INFO("isa " << isa_name(isa));
        poison(out);
        kernels::sink_attention(cpu_fast{}, q.view(), q_pos.view(), parts, sinks.view(), scale,
                                c.window, out.view());
        GPTOSS_REQUIRE_CLOSE(test::compare_to_max(out.storage(), ref.storage(), 0.0, 1e-5));
      }
    }
  }
}

TEST_CASE("Fast attention: a mis-shaped key/value part is a ShapeError naming it", "[fast][attention]") {
  const Tensor<float, 3> q({1, 4, 8}), k({4, 2, 8}), v({4, 2, 8}), bad({3, 2, 8});
  const Tensor<index_t, 1> q_pos({1}), k_pos({4}), bad_pos({3});
  const Tensor<float, 1> sinks({4});
  Tensor<float, 2> out({1, 32});
  const std::array parts{kernels::KeyValuePart{k.view(), v.view(), k_pos.view()},
                         kernels::KeyValuePart{bad.view(), v.view(), bad_pos.view()}};
  REQUIRE_THROWS_WITH(kernels::sink_attention(cpu_fast{}, q.view(), q_pos.view(), parts, sinks.view(),
                                              1.0f, 0, out.view()),
                      Catch::Contains("key/value part 1"));
  REQUIRE_THROWS_AS(kernels::sink_attention(cpu_reference{}, q.view(), q_pos.view(), parts,
                                            sinks.view(), 1.0f, 0, out.view()),
                    ShapeError);
  REQUIRE_THROWS_AS(kernels::sink_attention(cpu_fast{}, q.view(), q_pos.view(),
                                            std::span<const kernels::KeyValuePart>{}, sinks.view(),
                                            1.0f, 0, out.view()),
                    ShapeError);
}

TEST_CASE("Fast attention: rejects shapes the reference rejects", "[fast][attention]") {
  const Tensor<float, 3> q({1, 6, 8}), k({4, 4, 8}), v({4, 4, 8});
  const Tensor<index_t, 1> q_pos({1}), k_pos({4});
  const Tensor<float, 1> sinks({6});
  Tensor<float, 2> out({1, 48});
  REQUIRE_THROWS_AS(kernels::sink_attention(cpu_fast{}, q.view(), q_pos.view(), k.view(), v.view(),
                                            k_pos.view(), sinks.view(), 1.0f, 0, out.view()),
                    ShapeError);
}

// ---------------------------------------------------------------------------
// RMSNorm, RoPE, SwiGLU

TEST_CASE("Fast rms_norm: matches the reference, in place too", "[fast][rmsnorm]") {
  test::Rng rng(505);
  for (const index_t d : {1, 7, 16, 17, 100, 2880}) {
    for (const index_t t_count : {1, 5, 40}) {
      DYNAMIC_SECTION("D " << d << ", T " << t_count) {
        Tensor<float, 2> x({t_count, d});
        for (index_t t = 0; t < t_count; ++t) {
          const float amplitude = std::pow(10.0f, static_cast<float>(t % 8 - 4));
          for (index_t i = 0; i < d; ++i) x(t, i) = test::uniform(rng, -amplitude, amplitude);
        }
        const Tensor<bf16, 1> scale = test::random_bf16<1>(rng, {d}, -2.0f, 2.0f);
        Tensor<float, 2> ref({t_count, d}), fast({t_count, d});
        kernels::rms_norm(cpu_reference{}, x.view(), scale.view(), 1e-5f, ref.view());
        for (Isa isa : runnable_isas()) {
          ScopedIsaLimit limit(isa);
          INFO("isa " << isa_name(isa));
          poison(fast);
          kernels::rms_norm(cpu_fast{}, x.view(), scale.view(), 1e-5f, fast.view());
          GPTOSS_REQUIRE_CLOSE(test::compare_elementwise(fast.storage(), ref.storage(), 1e-30, 1e-6));
          Tensor<float, 2> in_place = x;
          kernels::rms_norm(cpu_fast{}, in_place.view(), scale.view(), 1e-5f, in_place.view());
          GPTOSS_REQUIRE_CLOSE(test::compare_elementwise(in_place.storage(), ref.storage(), 1e-30, 1e-6));
        }
      }
    }
  }
}

TEST_CASE("Fast apply_rotary: matches the reference", "[fast][rope]") {
  test::Rng rng(606);
  for (const index_t d : {2, 18, 64, 66}) {
    for (const index_t heads : {1, 3, 8}) {
      for (const index_t t_count : {1, 4, 33}) {
        DYNAMIC_SECTION("D " << d << ", heads " << heads << ", T " << t_count) {
          const Tensor<float, 3> x = test::random_tensor<3>(rng, {t_count, heads, d}, 3.0f);
          const Tensor<float, 2> cos = test::random_matrix(rng, t_count, d / 2, 1.2f);
          const Tensor<float, 2> sin = test::random_matrix(rng, t_count, d / 2, 1.2f);
          Tensor<float, 3> ref = x;
          kernels::apply_rotary(cpu_reference{}, ref.view(), cos.view(), sin.view());
          for (Isa isa : runnable_isas()) {
            ScopedIsaLimit limit(isa);
            INFO("isa " << isa_name(isa));
            Tensor<float, 3> fast = x;
            kernels::apply_rotary(cpu_fast{}, fast.view(), cos.view(), sin.view());
            GPTOSS_REQUIRE_CLOSE(test::compare_to_max(fast.storage(), ref.storage(), 0.0, 1e-6));
          }
        }
      }
    }
  }
  Tensor<float, 3> odd({1, 1, 3});
  const Tensor<float, 2> cs({1, 1});
  REQUIRE_THROWS_AS(kernels::apply_rotary(cpu_fast{}, odd.view(), cs.view(), cs.view()), ShapeError);
}

TEST_CASE("Fast swiglu: matches the reference past the clamp, NaN propagates", "[fast][swiglu]") {
  test::Rng rng(707);
  for (const float limit : {7.0f, 5.0f}) {
    for (const index_t n : {1, 7, 8, 16, 17, 100, 2880}) {
      for (const index_t t_count : {1, 3, 25}) {
        DYNAMIC_SECTION("limit " << limit << ", I " << n << ", T " << t_count) {
          Tensor<float, 2> x = test::random_matrix(rng, t_count, 2 * n, 20.0f);
          if (n > 3) {
            x(0, 0) = kNaN;       // gate NaN
            x(0, 3) = kNaN;       // linear NaN
            x(0, 4) = -200.0f;    // exp(-alpha * gate) overflows
          }
          Tensor<float, 2> ref({t_count, n}), fast({t_count, n});
          kernels::swiglu(cpu_reference{}, x.view(), kernels::kSwigluAlpha, limit, ref.view());
          for (Isa isa : runnable_isas()) {
            ScopedIsaLimit limit_isa(isa);
            INFO("isa " << isa_name(isa));
            poison(fast);
            kernels::swiglu(cpu_fast{}, x.view(), kernels::kSwigluAlpha, limit, fast.view());
            for (std::size_t i = 0; i < ref.storage().size(); ++i) {
              const float a = fast.storage()[i], e = ref.storage()[i];
              INFO("element " << i << ": " << a << " vs " << e);
              if (std::isnan(e)) {
                REQUIRE(std::isnan(a));
              } else {
                REQUIRE(std::fabs(a - e) <= 1e-5 * std::max(1.0f, std::fabs(e)));
              }
            }
          }
        }
      }
    }
  }
}
