// Measured device ceilings: device-to-device copy bandwidth and the bf16
// GEMM rate (cuBLAS if the toolkit provides it, else the library's own
// tensor-core GEMM, which then understates the ceiling).
#include "gptoss/cuda/ceilings.hpp"

#include <algorithm>

#include "gptoss/cuda/kernels.hpp"
#include "gptoss/cuda/runtime.hpp"

#if GPTOSS_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

namespace gptoss::cuda {

double measure_copy_bandwidth(std::size_t bytes, int passes) {
  DeviceBuffer<std::uint8_t> a(bytes), b(bytes);
  fill_bytes(a.data(), 1, bytes);
  copy_on_device(b.data(), a.data(), bytes);  // warm-up
  EventTimer timer;
  double best = 0.0;
  for (int p = 0; p < passes; ++p) {
    timer.start();
    copy_on_device(b.data(), a.data(), bytes);
    best = std::max(best, 2.0 * static_cast<double>(bytes) / timer.stop());
  }
  return best;
}

GemmRate measure_bf16_gemm_rate(int size, int passes) {
  const std::size_t n = static_cast<std::size_t>(size) * size;
  DeviceBuffer<bf16> a(n), b(n);
  fill_random(a.data(), n, 1, -1.0f, 1.0f);
  fill_random(b.data(), n, 2, -1.0f, 1.0f);
  const double flop = 2.0 * size * static_cast<double>(size) * size;
  EventTimer timer;
  double best = 0.0;
#if GPTOSS_HAVE_CUBLAS
  DeviceBuffer<bf16> c(n);
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw CudaError("cublasCreate failed");
  const float alpha = 1.0f, beta = 0.0f;
  for (int p = 0; p <= passes; ++p) {  // pass 0 warms up
    timer.start();
    const cublasStatus_t s = cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, a.data(),
                                          CUDA_R_16BF, size, b.data(), CUDA_R_16BF, size, &beta, c.data(),
                                          CUDA_R_16BF, size, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    const double seconds = timer.stop();
    if (s != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(handle);
      throw CudaError("cublasGemmEx failed with status " + std::to_string(static_cast<int>(s)));
    }
    if (p > 0) best = std::max(best, flop / seconds);
  }
  cublasDestroy(handle);
  return {best, "cuBLAS bf16 GEMM"};
#else
  DeviceBuffer<float> x(n), y(n);
  fill_bytes(x.data(), 0, n * sizeof(float));
  for (int p = 0; p <= passes; ++p) {
    timer.start();
    linear(DeviceBF16{a.data(), size, size}, nullptr, x.data(), size, nullptr, y.data(), LinearPath::tensor_core);
    const double seconds = timer.stop();
    if (p > 0) best = std::max(best, flop / seconds);
  }
  return {best, "gptoss tensor-core GEMM (no cuBLAS in this toolkit)"};
#endif
}

}  // namespace gptoss::cuda
