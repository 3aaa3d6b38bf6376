// Example: the opt-in 8-bit attention projections and unembedding. Loads a
// checkpoint (default: the bundled tiny reference checkpoint), runs a prompt
// with the bf16 weights, binds 8-bit copies with quantize_dense_int8, runs it
// again, prints the bytes saved (and what that is worth per decode step at
// this machine's measured read bandwidth) and how far the logits moved, then
// unbinds the copies and checks that the bf16 logits come back exactly.
//
// Usage: 06_int8_dense [checkpoint_dir]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <vector>

#include "gptoss/gptoss.hpp"

using namespace gptoss;

int main(int argc, char** argv) {
  try {
    const std::filesystem::path dir = argc > 1 ? argv[1] : GPTOSS_EXAMPLE_MODEL_DIR;
    auto model = load_original_checkpoint(dir);
    std::vector<std::int32_t> tokens;
    for (std::int32_t t = 0; t < 24; ++t) tokens.push_back((t * 37 + 5) % static_cast<std::int32_t>(model.dims().vocab));

    const Tensor<float, 2> bf16_logits = model.forward(tokens);  // (T, V)
    const DenseInt8Report report = quantize_dense_int8(model);
    const Tensor<float, 2> int8_logits = model.forward(tokens);
    clear_dense_int8(model);
    const Tensor<float, 2> again = model.forward(tokens);

    double max_diff = 0.0, max_ref = 0.0;
    for (index_t i = 0; i < bf16_logits.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(int8_logits.data()[i] - bf16_logits.data()[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(bf16_logits.data()[i])));
    }
    const bool restored = std::equal(again.data(), again.data() + again.size(), bf16_logits.data());
    std::printf("8-bit copies of %zu matrices: %.2f MB instead of %.2f MB of bf16\n", report.matrices,
                report.int8_bytes / 1e6, report.bf16_bytes / 1e6);
    // Decode streams every weight once per token: at the machine's read rate
    // (the probe `gptoss bench` bounds decode with; 256 MiB, best of 2 passes)
    // each saved byte is time saved per token.
    const double read_bytes_per_s = kernels::fast::measure_read_bandwidth(thread_pool(), std::size_t{1} << 28, 2);
    std::printf("at %.1f GB/s of read bandwidth that saves %.3f ms per decoded token\n", read_bytes_per_s / 1e9,
                1e3 * static_cast<double>(report.bf16_bytes - report.int8_bytes) / read_bytes_per_s);
    std::printf("logits of %zu tokens: max |int8 - bf16| = %.4g (max |bf16| = %.4g)\n", tokens.size(), max_diff, max_ref);
    std::printf("after clear_dense_int8 the bf16 logits are back: %s\n", restored ? "yes" : "NO");
    return restored && max_diff > 0.0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "06_int8_dense: %s\n", e.what());
    return 1;
  }
}
