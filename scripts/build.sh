#!/usr/bin/env bash
# Configures and builds gptoss in build/ (Release, -O2, Ninja, 2 jobs by
# default). Extra arguments go to the configure step (e.g. -DGPTOSS_SANITIZE=ON).
# Environment: GPTOSS_BUILD_DIR (default build), GPTOSS_JOBS (default 2),
# GPTOSS_TARGETS (space-separated targets; default: everything).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${GPTOSS_BUILD_DIR:-build}"
jobs="${GPTOSS_JOBS:-2}"

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
  "${launcher[@]}" "$@"

targets=()
for t in ${GPTOSS_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j "$jobs" "${targets[@]}"
