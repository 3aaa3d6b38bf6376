// A small persistent thread pool for the fast CPU kernels.
//
// A pool of n threads owns n - 1 workers; the calling thread is the n-th and
// always takes part, so a pool never runs more threads than it was given.
// Between jobs the workers spin briefly (kernels are called back to back in
// a forward pass) and then sleep on a futex-backed std::atomic wait.
//
// Thread safety: a pool runs one job at a time. Calls from several threads
// are serialised by a mutex (correct, but they wait for each other); a
// parallel_for issued from inside a running task executes inline on that
// thread instead of deadlocking. set_num_threads() replaces the process-wide
// pool and must not race with kernels running on other threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "gptoss/core/error.hpp"

namespace gptoss {

class ThreadPool {
 public:
  /// A pool of `threads` threads in all (the caller included); 0 or less
  /// means std::thread::hardware_concurrency(). Throws Error, with the
  /// threads already started stopped again, if the system cannot start one.
  explicit ThreadPool(int threads = 0) {
    const int n = threads > 0 ? threads : hardware_threads();
    shares_ = std::make_unique<Share[]>(static_cast<std::size_t>(n));
    workers_.reserve(static_cast<std::size_t>(n - 1));
    for (int i = 1; i < n; ++i) {
      try {
        workers_.emplace_back([this, i] { worker_loop(i); });
      } catch (const std::system_error& e) {
        stop_workers();
        throw Error("thread pool of " + std::to_string(n) + " threads: thread " + std::to_string(i + 1) +
                    " could not be started (" + e.what() + ")");
      }
    }
  }

  ~ThreadPool() { stop_workers(); }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads taking part in a job, the caller included.
  int size() const noexcept { return static_cast<int>(workers_.size()) + 1; }

  static int hardware_threads() noexcept {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }

  /// Calls fn(task) once for every task in [0, tasks), task i on thread
  /// i % size() (task 0 on the caller). Returns when all are done; rethrows
  /// the first exception a task threw.
  template <class Fn>
  void run(int tasks, Fn&& fn) {
    if (tasks <= 0) return;
    if (tasks == 1 || workers_.empty() || inside_task()) {
      for (int t = 0; t < tasks; ++t) fn(t);
      return;
    }
    std::lock_guard<std::mutex> lock(call_mutex_);
    dispatch(tasks, fn);
  }

  /// Splits [begin, end) into at most size() contiguous ranges, each a
  /// multiple of `grain` long (but the last), and calls fn(first, last) for
  /// each on its own thread.
  template <class Fn>
  void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, Fn&& fn) {
    const std::int64_t count = end - begin;
    if (count <= 0) return;
    grain = std::max<std::int64_t>(grain, 1);
    const std::int64_t grains = (count + grain - 1) / grain;
    const int tasks = static_cast<int>(std::min<std::int64_t>(grains, size()));
    const std::int64_t per_task = (grains + tasks - 1) / tasks * grain;
    run(tasks, [&](int task) {
      const std::int64_t first = begin + task * per_task;
      const std::int64_t last = std::min(end, first + per_task);
      if (first < last) fn(first, last);
    });
  }

  /// Like parallel_for (ranges start on a grain and are whole grains but the
  /// last), balanced at the end: each thread starts on its own contiguous
  /// share of [begin, end) and walks it front to back, calling fn(first, last)
  /// for `chunk` grains at a time; a thread whose share is done takes the back
  /// half of the largest share not yet started and walks that. Each thread
  /// still reads one forward stream for most of the range (what row-streaming
  /// kernels want), and a thread the host slows down does not keep the others
  /// waiting for its whole share. fn may be called several times per thread.
  template <class Fn>
  void parallel_for_stealing(std::int64_t begin, std::int64_t end, std::int64_t grain,
                             std::int64_t chunk, Fn&& fn) {
    const std::int64_t count = end - begin;
    if (count <= 0) return;
    grain = std::max<std::int64_t>(grain, 1);
    chunk = std::max<std::int64_t>(chunk, 1);
    const std::int64_t grains = (count + grain - 1) / grain;
    const int tasks = static_cast<int>(std::min<std::int64_t>(grains, size()));
    if (tasks == 1 || workers_.empty() || inside_task() || grains > kMaxShareGrains) {
      parallel_for(begin, end, grain, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t a = first; a < last; a += chunk * grain) fn(a, std::min(last, a + chunk * grain));
      });
      return;
    }
    const std::int64_t per_task = (grains + tasks - 1) / tasks;
    auto call = [&](std::uint64_t first_grain, std::uint64_t last_grain) {
      fn(begin + static_cast<std::int64_t>(first_grain) * grain,
         std::min(end, begin + static_cast<std::int64_t>(last_grain) * grain));
    };
    auto task = [&](int t) {
      std::atomic<std::uint64_t>& own = shares_[static_cast<std::size_t>(t)].range;
      for (;;) {
        std::uint64_t first = 0, last = 0;
        while (claim_front(own, static_cast<std::uint64_t>(chunk), first, last)) call(first, last);
        if (!steal_back_half(t, tasks, own)) return;
      }
    };
    std::lock_guard<std::mutex> lock(call_mutex_);
    for (int t = 0; t < tasks; ++t) {
      const std::int64_t first = std::min(grains, t * per_task);
      const std::int64_t last = std::min(grains, first + per_task);
      shares_[static_cast<std::size_t>(t)].range.store(
          pack_share(static_cast<std::uint64_t>(first), static_cast<std::uint64_t>(last)),
          std::memory_order_relaxed);
    }
    dispatch(tasks, task);
  }

 private:
  /// Wakes every worker to exit and joins it.
  void stop_workers() noexcept {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (std::thread& w : workers_) w.join();
  }

  /// A thread's share of a parallel_for_stealing range, in grains: the first
  /// grain not yet claimed (low 32 bits) and the end (high 32 bits), on its
  /// own cache line.
  struct alignas(64) Share {
    std::atomic<std::uint64_t> range{0};
  };
  static constexpr std::int64_t kMaxShareGrains = std::int64_t{0xffffffff};

  static std::uint64_t pack_share(std::uint64_t first, std::uint64_t last) noexcept {
    return first | (last << 32);
  }

  /// Claims up to `chunk` grains from the front of `share`; false when it is empty.
  static bool claim_front(std::atomic<std::uint64_t>& share, std::uint64_t chunk, std::uint64_t& first,
                          std::uint64_t& last) noexcept {
    std::uint64_t now = share.load(std::memory_order_acquire);
    for (;;) {
      first = now & 0xffffffffu;
      const std::uint64_t end = now >> 32;
      if (first >= end) return false;
      last = std::min(end, first + chunk);
      if (share.compare_exchange_weak(now, pack_share(last, end), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return true;
      }
    }
  }

  /// Moves the back half (rounded up) of the largest unclaimed share of the
  /// other tasks into `own` (which is empty); false when every share is empty.
  bool steal_back_half(int thief, int tasks, std::atomic<std::uint64_t>& own) noexcept {
    for (;;) {
      int victim = -1;
      std::uint64_t victim_range = 0, most = 0;
      for (int t = 0; t < tasks; ++t) {
        if (t == thief) continue;
        const std::uint64_t now = shares_[static_cast<std::size_t>(t)].range.load(std::memory_order_acquire);
        const std::uint64_t first = now & 0xffffffffu, end = now >> 32;
        if (first < end && end - first > most) {
          victim = t;
          victim_range = now;
          most = end - first;
        }
      }
      if (victim < 0) return false;
      const std::uint64_t first = victim_range & 0xffffffffu, end = victim_range >> 32;
      const std::uint64_t middle = first + most / 2;
      if (shares_[static_cast<std::size_t>(victim)].range.compare_exchange_strong(
              victim_range, pack_share(first, middle), std::memory_order_acq_rel, std::memory_order_acquire)) {
        own.store(pack_share(middle, end), std::memory_order_release);
        return true;
      }
    }
  }

  /// Runs fn(task) for every task (see run); call_mutex_ is held.
  template <class Fn>
  void dispatch(int tasks, Fn& fn) {
    using F = std::remove_reference_t<Fn>;
    job_ = Job{[](void* ctx, int task) { (*static_cast<F*>(ctx))(task); },
               const_cast<void*>(static_cast<const void*>(std::addressof(fn))), tasks, size()};
    error_ = nullptr;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    run_share(0);
    wait_for_workers();
    if (error_) std::rethrow_exception(error_);
  }

  struct Job {
    void (*invoke)(void* ctx, int task) = nullptr;
    void* ctx = nullptr;
    int tasks = 0;
    int stride = 1;
  };

  static bool& inside_task() noexcept {
    thread_local bool inside = false;
    return inside;
  }

  /// Runs this thread's tasks of the current job: thread, thread + stride, ...
  void run_share(int thread) noexcept {
    const Job job = job_;
    inside_task() = true;
    for (int task = thread; task < job.tasks; task += job.stride) {
      try {
        job.invoke(job.ctx, task);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    inside_task() = false;
  }

  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  /// Spins for about kSpin, then sleeps until `word` differs from `seen`.
  template <class T>
  static T wait_while_equal(const std::atomic<T>& word, T seen) noexcept {
    constexpr auto kSpin = std::chrono::microseconds(100);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
      const T now = word.load(std::memory_order_acquire);
      if (now != seen) return now;
      cpu_relax();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpin) break;
    }
    for (;;) {
      word.wait(seen, std::memory_order_acquire);
      const T now = word.load(std::memory_order_acquire);
      if (now != seen) return now;
    }
  }

  void worker_loop(int thread) {
    std::uint32_t seen = 0;
    for (;;) {
      seen = wait_while_equal(generation_, seen);
      if (stop_.load(std::memory_order_relaxed)) return;
      run_share(thread);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  void wait_for_workers() noexcept {
    int left = pending_.load(std::memory_order_acquire);
    while (left != 0) {
      wait_while_equal(pending_, left);
      left = pending_.load(std::memory_order_acquire);
    }
  }

  std::vector<std::thread> workers_;
  std::unique_ptr<Share[]> shares_;
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  Job job_;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  std::mutex call_mutex_;
};

namespace detail {
inline std::unique_ptr<ThreadPool>& process_thread_pool() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
inline std::mutex& process_thread_pool_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace detail

/// The process-wide pool the fast kernels use (created on first use with
/// hardware_concurrency() threads).
inline ThreadPool& thread_pool() {
  std::lock_guard<std::mutex> lock(detail::process_thread_pool_mutex());
  auto& pool = detail::process_thread_pool();
  if (!pool) pool = std::make_unique<ThreadPool>();
  return *pool;
}

/// Replaces the process-wide pool with one of n threads (caller included;
/// n <= 0: hardware concurrency). Not while kernels run. If the threads
/// cannot be started this throws Error, and the next use makes a pool of
/// the default size.
inline void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(detail::process_thread_pool_mutex());
  auto& pool = detail::process_thread_pool();
  const int wanted = n > 0 ? n : ThreadPool::hardware_threads();
  if (!pool || pool->size() != wanted) {
    pool.reset();
    pool = std::make_unique<ThreadPool>(wanted);
  }
}

/// Threads of the process-wide pool.
inline int num_threads() { return thread_pool().size(); }

}  // namespace gptoss
