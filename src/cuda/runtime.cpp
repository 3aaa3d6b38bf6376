// Device memory, queries and timing for the CUDA backend (CUDA runtime API).
#include "gptoss/cuda/runtime.hpp"

#include <cuda_runtime_api.h>

namespace gptoss::cuda {

namespace {
void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw CudaError(what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}
}  // namespace

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" status
    return 0;
  }
  return n;
}

DeviceInfo device_info() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return {prop.name, prop.totalGlobalMem, prop.multiProcessorCount, prop.major * 10 + prop.minor};
}

void* device_malloc(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes");
  return p;
}

void device_free(void* p) noexcept {
  if (p != nullptr) (void)cudaFree(p);
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice),
        "cudaMemcpy host to device of " + std::to_string(bytes) + " bytes");
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost),
        "cudaMemcpy device to host of " + std::to_string(bytes) + " bytes");
}

void copy_on_device(void* dst, const void* src, std::size_t bytes, stream_t stream) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream),
        "cudaMemcpyAsync device to device of " + std::to_string(bytes) + " bytes");
}

void fill_bytes(void* dst, int value, std::size_t bytes, stream_t stream) {
  check(cudaMemsetAsync(dst, value, bytes, stream), "cudaMemsetAsync of " + std::to_string(bytes) + " bytes");
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

void check_launch(const char* kernel) { check(cudaGetLastError(), std::string("launch of ") + kernel); }

EventTimer::EventTimer() {
  cudaEvent_t b = nullptr, e = nullptr;
  check(cudaEventCreate(&b), "cudaEventCreate");
  check(cudaEventCreate(&e), "cudaEventCreate");
  begin_ = b;
  end_ = e;
}

EventTimer::~EventTimer() {
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(begin_));
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(end_));
}

void EventTimer::start(stream_t stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(begin_), stream), "cudaEventRecord");
}

double EventTimer::stop(stream_t stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(end_), stream), "cudaEventRecord");
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(end_)), "cudaEventSynchronize");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin_), static_cast<cudaEvent_t>(end_)),
        "cudaEventElapsedTime");
  return ms * 1e-3;
}

}  // namespace gptoss::cuda
