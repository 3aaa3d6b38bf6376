// Test runner of the CUDA tests: without a usable CUDA device every test
// exits with code 77 after printing why, which ctest reports as skipped.
// Listing the tests (ctest's discovery) works on any machine.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string_view>

#include "gptoss/cuda/runtime.hpp"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string_view(argv[i]).starts_with("--list");
  if (!listing && gptoss::cuda::device_count() == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
