#!/usr/bin/env bash
# The main job: builds only what it needs and runs it. Today that is the
# layer-stack example on the bundled reference checkpoint; to run another
# program, change main_target and main_command below.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${GPTOSS_BUILD_DIR:-build}"
main_target=gptoss_example_01_layer_stack
main_command=("$build_dir/examples/01_layer_stack")

GPTOSS_BUILD_DIR="$build_dir" GPTOSS_TARGETS="$main_target" bash scripts/build.sh \
  -DGPTOSS_BUILD_EXAMPLES=ON -DGPTOSS_BUILD_TESTS=OFF -DGPTOSS_BUILD_BENCHMARKS=OFF
"${main_command[@]}"
