#!/usr/bin/env bash
# The test job, in three stages:
#   1. build everything (library programs, tests, examples, benchmarks, and
#      the CUDA library and its tests when nvcc is installed) in build/ and
#      run the whole ctest suite;
#   2. the unit, CLI and differential tests again, built with AddressSanitizer + UBSan
#      (build-asan/);
#   3. the libFuzzer targets (safetensors reader, config parsers), built with
#      clang, each run for GPTOSS_FUZZ_SECONDS (default 45) over its seed
#      corpus (build-fuzz/).
# GPTOSS_QUICK=1 runs stage 1 only. Extra arguments go to stage 1's CMake.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${GPTOSS_BUILD_DIR:-build}"
jobs="${GPTOSS_JOBS:-2}"

# Stage 1 also builds the CUDA library, tests and benchmarks whenever nvcc
# is installed (on PATH or in /usr/local/cuda), GPU or not: without a device
# the CUDA tests report themselves skipped. GPTOSS_CUDA=OFF turns this off.
cuda_args=()
nvcc_path="$(command -v nvcc || true)"
if [[ -z "$nvcc_path" && -x /usr/local/cuda/bin/nvcc ]]; then
  nvcc_path=/usr/local/cuda/bin/nvcc
fi
if [[ -n "$nvcc_path" && "${GPTOSS_CUDA:-auto}" != OFF ]]; then
  echo "== CUDA: building the CUDA code with $nvcc_path"
  cuda_args=(-DGPTOSS_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc_path")
  if command -v ccache >/dev/null 2>&1; then
    cuda_args+=(-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
fi

echo "== stage 1: build and run every test"
GPTOSS_BUILD_DIR="$build_dir" bash scripts/build.sh \
  -DGPTOSS_BUILD_TESTS=ON -DGPTOSS_BUILD_EXAMPLES=ON -DGPTOSS_BUILD_BENCHMARKS=ON "${cuda_args[@]}" "$@"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"

if [[ "${GPTOSS_QUICK:-0}" == 1 ]]; then
  exit 0
fi

echo "== stage 2: unit and CLI tests under AddressSanitizer + UBSan"
GPTOSS_BUILD_DIR="${build_dir}-asan" GPTOSS_TARGETS="gptoss_unit_tests gptoss_cli gptoss_check_dump gptoss_render_chat_template" bash scripts/build.sh \
  -DGPTOSS_BUILD_TESTS=ON -DGPTOSS_BUILD_EXAMPLES=ON -DGPTOSS_BUILD_BENCHMARKS=OFF -DGPTOSS_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "${build_dir}-asan" --output-on-failure -j "$jobs" -E '^(package|example)\.'

echo "== stage 3: fuzz the file parsers (clang + libFuzzer)"
CXX=clang++ GPTOSS_BUILD_DIR="${build_dir}-fuzz" bash scripts/build.sh \
  -DGPTOSS_BUILD_TESTS=OFF -DGPTOSS_BUILD_EXAMPLES=OFF -DGPTOSS_BUILD_BENCHMARKS=OFF \
  -DGPTOSS_BUILD_FUZZERS=ON "-DGPTOSS_FUZZ_SECONDS=${GPTOSS_FUZZ_SECONDS:-45}"
ctest --test-dir "${build_dir}-fuzz" --output-on-failure -j "$jobs" -L fuzz
