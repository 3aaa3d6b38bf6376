// The device's measured ceilings, against which CUDA benchmarks report
// their figures: memory bandwidth from a large device-to-device copy and
// the dense bf16 GEMM rate (cuBLAS when the toolkit has it).
#pragma once

#include <cstddef>
#include <string>

namespace gptoss::cuda {

/// Bytes moved per second (read + written) by the best of `passes` copies
/// of a `bytes`-byte buffer.
double measure_copy_bandwidth(std::size_t bytes = std::size_t{1} << 30, int passes = 5);

struct GemmRate {
  double flop_per_s = 0.0;
  std::string source;  // "cuBLAS bf16 GEMM" or the library's own tensor-core GEMM
};

/// FLOP/s of the best of `passes` (size x size x size) bf16 GEMMs with fp32
/// accumulation.
GemmRate measure_bf16_gemm_rate(int size = 8192, int passes = 5);

}  // namespace gptoss::cuda
