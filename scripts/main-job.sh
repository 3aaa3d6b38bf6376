#!/usr/bin/env bash
# The main job: builds the gptoss CLI and runs the bundled reference
# checkpoints through the whole model, printing how close the logits are to
# those of OpenAI's reference implementation (full prefill of `tiny`, then
# `tiny_long` with a 160-token prefill followed by one-token KV-cache decoding).
# To run a downloaded checkpoint instead, see README ("Running a checkpoint").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${GPTOSS_BUILD_DIR:-build}"
golden=tests/data/golden

GPTOSS_BUILD_DIR="$build_dir" GPTOSS_TARGETS="gptoss_cli" bash scripts/build.sh \
  -DGPTOSS_BUILD_EXAMPLES=ON -DGPTOSS_BUILD_TESTS=OFF -DGPTOSS_BUILD_BENCHMARKS=OFF

gptoss="$build_dir/tools/gptoss/gptoss"
"$gptoss" info --model "$golden/tiny"
for case in tiny tiny_long; do
  prefill=()
  [ "$case" = tiny_long ] && prefill=(--prefill 160)
  echo
  echo "== $case: gptoss forward ${prefill[*]}"
  "$gptoss" forward --model "$golden/$case" --tokens-file "$golden/$case/golden.safetensors" \
    --out "$build_dir/${case}_logits.safetensors" --reference "$golden/$case/golden.safetensors" "${prefill[@]}"
done
