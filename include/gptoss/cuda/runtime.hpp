// Device memory and device queries for the CUDA backend, as plain C++: the
// header names no CUDA type, so host code compiled by any C++ compiler can
// own device buffers. The functions are defined in the gptoss::cuda library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "gptoss/core/error.hpp"

struct CUstream_st;

namespace gptoss::cuda {

/// A CUDA stream (cudaStream_t); nullptr is the default stream.
using stream_t = CUstream_st*;

/// A CUDA runtime call failed; the message names the call and CUDA's reason.
class CudaError : public Error {
 public:
  using Error::Error;
};

/// Number of usable CUDA devices; 0 when there is no driver or no device
/// (never throws).
int device_count() noexcept;

/// Name, global memory and multiprocessor count of the current device.
struct DeviceInfo {
  std::string name;
  std::size_t global_memory = 0;
  int multiprocessors = 0;
  int compute_capability = 0;  // 10 major + minor, e.g. 90
};
DeviceInfo device_info();

void* device_malloc(std::size_t bytes);         // throws CudaError naming the size
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
void copy_on_device(void* dst, const void* src, std::size_t bytes, stream_t stream = nullptr);
/// Sets every byte to `value` (0xff makes every float a NaN: output poisoning).
void fill_bytes(void* dst, int value, std::size_t bytes, stream_t stream = nullptr);
/// Waits for the device; throws CudaError if any earlier launch failed.
void synchronize();
/// Throws CudaError naming `kernel` if its launch was rejected.
void check_launch(const char* kernel);

/// An owning, typed device allocation of `size()` elements.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t size)
      : data_(size ? static_cast<T*>(device_malloc(size * sizeof(T))) : nullptr), size_(size) {}
  /// A device copy of host data.
  explicit DeviceBuffer(std::span<const T> host) : DeviceBuffer(host.size()) {
    if (!host.empty()) copy_to_device(data_, host.data(), host.size_bytes());
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { device_free(data_); }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t bytes() const noexcept { return size_ * sizeof(T); }
  bool empty() const noexcept { return size_ == 0; }

  /// Copies host data into the first host.size() elements.
  void upload(std::span<const T> host) {
    if (host.size() > size_) {
      throw ShapeError("DeviceBuffer::upload: " + std::to_string(host.size()) +
                       " elements into a buffer of " + std::to_string(size_));
    }
    if (!host.empty()) copy_to_device(data_, host.data(), host.size_bytes());
  }
  /// Copies the first out.size() elements to the host.
  void download(std::span<T> out) const {
    if (out.size() > size_) {
      throw ShapeError("DeviceBuffer::download: " + std::to_string(out.size()) +
                       " elements from a buffer of " + std::to_string(size_));
    }
    if (!out.empty()) copy_to_host(out.data(), data_, out.size_bytes());
  }
  /// Grows (contents discarded) to hold at least n elements.
  void reserve_discard(std::size_t n) {
    if (n > size_) *this = DeviceBuffer(n);
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Times device work between two points on a stream (CUDA events).
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(stream_t stream = nullptr);
  /// Records the end, waits for it and returns the elapsed seconds.
  double stop(stream_t stream = nullptr);

 private:
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

}  // namespace gptoss::cuda
