#!/usr/bin/env bash
# Runs the fast-kernel benchmarks as docs/performance.md reports them: waits
# until the machine is quiet (1-minute load average below GPTOSS_BENCH_LOAD,
# default 0.7, for at most GPTOSS_BENCH_WAIT seconds, default 1800), then runs
# every benchmark GPTOSS_BENCH_REPS times (default 5) and writes the
# aggregates (mean, median, stddev, cv, min, max) as JSON next to the console
# output. Extra arguments go to every program (e.g. --benchmark_filter=...).
#
#   bash benchmarks/run_kernel_benchmarks.sh [build-dir] [-- benchmark args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${1:-build}"
shift || true
[[ "${1:-}" == "--" ]] && shift
load_max="${GPTOSS_BENCH_LOAD:-0.7}"
wait_max="${GPTOSS_BENCH_WAIT:-1800}"
reps="${GPTOSS_BENCH_REPS:-5}"
out_dir="${GPTOSS_BENCH_OUT:-$build_dir/benchmark-results}"
mkdir -p "$out_dir"

wait_for_quiet() {
  local waited=0
  while :; do
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" -v m="$load_max" 'BEGIN { exit !(l < m) }'; then
      echo "load $load < $load_max: measuring"
      return
    fi
    if (( waited >= wait_max )); then
      echo "load still $load after ${wait_max}s: measuring anyway (results flagged in the log)" >&2
      return
    fi
    sleep 10
    waited=$((waited + 10))
  done
}

for program in gptoss_bench_linear gptoss_bench_attention gptoss_bench_thread_pool; do
  wait_for_quiet
  echo "== $program ($(date -u +%FT%TZ), $(cut -d' ' -f1-3 /proc/loadavg))"
  "$build_dir/benchmarks/$program" \
    --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_out="$out_dir/$program.json" --benchmark_out_format=json "$@" \
    | tee "$out_dir/$program.txt"
done
