// Downstream smoke test of an installed gptoss: includes the umbrella header,
// runs an RMSNorm and decodes an MXFP4 block, and checks both against values
// computed by hand. Returns non-zero on any mismatch.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <gptoss/gptoss.hpp>

namespace {

int failures = 0;

void expect_near(const char* what, double got, double want, double tol) {
  if (!(std::fabs(got - want) <= tol)) {
    std::printf("MISMATCH %s: got %.9g, want %.9g\n", what, got, want);
    ++failures;
  }
}

}  // namespace

int main() {
  using namespace gptoss;

  // RMSNorm of x = (1, 2, 3, 4) with scale (1, 0.5, 2, -1) (all exact in bf16):
  // mean(x^2) = 30/4 = 7.5, so y_i = x_i scale_i / sqrt(7.5 + 1e-5).
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<bf16> scale = {bf16::from_float(1.0f), bf16::from_float(0.5f),
                                   bf16::from_float(2.0f), bf16::from_float(-1.0f)};
  std::vector<float> y(4);
  const RMSNorm<> norm(4);
  norm.forward({VectorView<const bf16>(scale.data(), {4})}, MatrixView<const float>(x.data(), {1, 4}),
               MatrixView<float>(y.data(), {1, 4}));
  const double inv_rms = 0.36514812824;  // 1 / sqrt(7.50001)
  expect_near("rmsnorm y[0]", y[0], 1.0 * inv_rms, 1e-6);
  expect_near("rmsnorm y[1]", y[1], 1.0 * inv_rms, 1e-6);
  expect_near("rmsnorm y[2]", y[2], 6.0 * inv_rms, 1e-6);
  expect_near("rmsnorm y[3]", y[3], -4.0 * inv_rms, 1e-6);

  // One MXFP4 block (checkpoint nibble order: element 2j low, 2j+1 high).
  // Byte 0x72 holds codes 2 (1.0) and 7 (6.0); byte 0xF9 holds codes 9 (-0.5)
  // and 15 (-6.0). Scale byte 128 = 2^1.
  std::vector<std::uint8_t> blocks(16, 0);
  blocks[0] = 0x72;
  blocks[1] = 0xF9;
  const std::vector<std::uint8_t> scales = {128};
  const FP4TensorView<MXFP4Checkpoint> w(blocks.data(), scales.data(), 1, 32);
  expect_near("mxfp4 (0, 0)", w.at(0, 0), 2.0, 0.0);
  expect_near("mxfp4 (0, 1)", w.at(0, 1), 12.0, 0.0);
  expect_near("mxfp4 (0, 2)", w.at(0, 2), -1.0, 0.0);
  expect_near("mxfp4 (0, 3)", w.at(0, 3), -12.0, 0.0);
  expect_near("mxfp4 (0, 4)", w.at(0, 4), 0.0, 0.0);

  if (failures != 0) {
    std::printf("gptoss package consumer: %d mismatch(es)\n", failures);
    return 1;
  }
  std::printf("gptoss package consumer: OK\n");
  return 0;
}
