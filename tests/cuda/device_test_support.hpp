// Helpers of the CUDA tests: host <-> device copies with poisoned outputs
// (every byte 0xff, so an element a kernel forgets to write is a NaN and
// fails its comparison).
#pragma once

#include <span>
#include <vector>

#include "gptoss/cuda/runtime.hpp"

namespace gptoss::test {

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
