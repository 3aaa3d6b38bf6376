// Large buffers backed by transparent huge pages where the OS offers them.
//
// A decode step streams every weight once (3.7 GB for gpt-oss-20b): with
// 4 KiB pages each new page of every stream needs its translation, from page
// tables (7 MB of them) that do not stay in the caches; with 2 MiB pages the
// whole model decoded faster in 8 of 10 alternating runs on the 2-core test
// machine (docs/performance.md, "Huge pages for the weights"). Buffers are
// padded to whole huge pages: at most 2 MiB more per buffer (about 1% of
// gpt-oss-20b's random weights). Linux gives anonymous memory huge pages
// only where it is asked to (transparent_hugepage=madvise is the common
// default), so large weight buffers are 2 MiB-aligned and advised with
// MADV_HUGEPAGE. Elsewhere, and where the kernel declines, the buffers are
// ordinary memory: the advice is a hint, never a requirement.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace gptoss {

/// The huge page size advised for (x86-64 and most Linux targets).
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

/// Buffers at least this large are aligned to kHugePageBytes and advised.
inline constexpr std::size_t kHugePageMinBytes = kHugePageBytes;

/// The value of the environment variable GPTOSS_HUGE_PAGES as a setting:
/// unset, "1" or "on": true; "0" or "off": false; anything else: nullopt
/// (programs should reject it: `gptoss` does).
constexpr std::optional<bool> huge_pages_setting_from_name(const char* value) noexcept {
  if (value == nullptr) return true;
  const std::string_view v(value);
  if (v == "1" || v == "on") return true;
  if (v == "0" || v == "off") return false;
  return std::nullopt;
}

/// Whether large buffers ask for huge pages: yes, unless GPTOSS_HUGE_PAGES
/// is "0" or "off" when first asked (for comparing page sizes, or on a
/// machine where huge pages cost memory). A value it does not know leaves
/// the advice on: this is asked inside allocations, where there is no one
/// to tell.
inline bool huge_pages_enabled() noexcept {
  static const bool enabled = huge_pages_setting_from_name(std::getenv("GPTOSS_HUGE_PAGES")).value_or(true);
  return enabled;
}

/// Asks the OS to back the whole huge pages inside [p, p + bytes) with
/// transparent huge pages. Returns whether the advice was given and taken
/// (false: no whole huge page in the range, not Linux, or the kernel said
/// no, e.g. THP disabled; or huge_pages_enabled() is false). Never changes
/// the memory's contents.
inline bool advise_huge_pages(void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!huge_pages_enabled()) return false;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  const std::uintptr_t last = (begin + bytes) / kHugePageBytes * kHugePageBytes;
  if (p == nullptr || last <= first) return false;
  return ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE) == 0;
#else
  (void)p;
  (void)bytes;
  return false;
#endif
}

/// Releases memory from allocate_large_bytes.
struct LargeBufferDeleter {
  void operator()(std::byte* p) const noexcept { std::free(p); }
};

/// An owned, uninitialised buffer from allocate_large_bytes.
using LargeBuffer = std::unique_ptr<std::byte[], LargeBufferDeleter>;

/// Uninitialised storage of `bytes` bytes, aligned to 64 bytes; from
/// kHugePageMinBytes on (and huge_pages_enabled()), aligned to (and padded
/// to a multiple of) kHugePageBytes and advised for huge pages before its
/// first touch. Throws std::bad_alloc when the memory is not there.
inline LargeBuffer allocate_large_bytes(std::size_t bytes) {
  const bool huge = bytes >= kHugePageMinBytes && huge_pages_enabled();
  const std::size_t alignment = huge ? kHugePageBytes : 64;
  const std::size_t padded = (std::max<std::size_t>(bytes, 1) + alignment - 1) / alignment * alignment;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(alignment, padded));
  if (p == nullptr) throw std::bad_alloc();
  if (huge) advise_huge_pages(p, padded);
  return LargeBuffer(p);
}

/// A standard allocator for large owned buffers (weights, their 8-bit
/// copies): allocations of kHugePageMinBytes and more are 2 MiB-aligned and
/// advised for huge pages, smaller ones 64-byte aligned. With
/// `Uninitialized`, a value-less construct() leaves elements uninitialised,
/// so a fresh buffer's pages are first touched by the (parallel) pass that
/// fills them rather than by a zeroing pass.
template <class T, bool Uninitialized = false>
struct HugePageAllocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = HugePageAllocator<U, Uninitialized>;
  };
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U, Uninitialized>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    static_assert(alignof(T) <= 64, "HugePageAllocator aligns to 64 bytes at least");
    return reinterpret_cast<T*>(allocate_large_bytes(n * sizeof(T)).release());
  }
  void deallocate(T* p, std::size_t) noexcept { LargeBufferDeleter{}(reinterpret_cast<std::byte*>(p)); }

  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    if constexpr (Uninitialized) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U();
    }
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }

  template <class U>
  bool operator==(const HugePageAllocator<U, Uninitialized>&) const noexcept {
    return true;
  }
};

}  // namespace gptoss
