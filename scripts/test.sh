#!/usr/bin/env bash
# The test job: builds everything (library programs, tests, examples,
# benchmarks) and runs the whole ctest suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${GPTOSS_BUILD_DIR:-build}"
jobs="${GPTOSS_JOBS:-2}"

GPTOSS_BUILD_DIR="$build_dir" bash scripts/build.sh \
  -DGPTOSS_BUILD_TESTS=ON -DGPTOSS_BUILD_EXAMPLES=ON -DGPTOSS_BUILD_BENCHMARKS=ON "$@"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
