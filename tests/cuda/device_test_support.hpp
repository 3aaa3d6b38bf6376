// Helpers of the CUDA tests: skipping without a device, host <-> device
// copies with poisoned outputs (every byte 0xff, so an element a kernel
// forgets to write is a NaN and fails its comparison).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "gptoss/cuda/runtime.hpp"

namespace gptoss::test {

/// Exit code ctest reports as "skipped" (SKIP_RETURN_CODE in tests/cuda/CMakeLists.txt).
inline constexpr int kSkipExitCode = 77;

/// Ends the test process as skipped when there is no usable CUDA device:
/// each ctest entry runs one test case, so nothing else is cut short.
inline void skip_without_device() {
  if (cuda::device_count() == 0) {
    std::puts("no CUDA device: skipped");
    std::fflush(stdout);
    std::exit(kSkipExitCode);
  }
}

template <class T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& host) {
  return cuda::DeviceBuffer<T>(std::span<const T>(host));
}

/// A device buffer of n elements, every byte 0xff.
template <class T>
cuda::DeviceBuffer<T> poisoned(std::size_t n) {
  cuda::DeviceBuffer<T> b(n);
  cuda::fill_bytes(b.data(), 0xff, b.bytes());
  return b;
}

/// Waits for the device, then copies the whole buffer to the host.
template <class T>
std::vector<T> to_host(const cuda::DeviceBuffer<T>& b) {
  cuda::synchronize();
  std::vector<T> out(b.size());
  b.download(out);
  return out;
}

}  // namespace gptoss::test
