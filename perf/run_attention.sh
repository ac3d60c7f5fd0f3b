#!/usr/bin/env bash
# Side by side: the five attention algorithms (and auto) on this machine, a causal GQA case and
# an MHA case over several lengths, with the planner's predictions and charts.
#
#   perf/run_attention.sh                      (BUILD=build-aperf OUT=/tmp/attn RUNS=2 ...)
#
# Environment: BUILD (build dir, default build), OUT (results, default perf/results-attn),
# RANKS (2), THREADS per rank (1), LENGTHS ("-b 2K -e 8K -f 2"), RUNS (repetitions: on a shared
# machine the plots and table keep the best of them), PY (/usr/bin/python3, with matplotlib),
# QUIET=1 (before each run, wait until the CPUs were >= 90% idle for two seconds: other people's
# builds and tests on a shared machine; at most QUIET_WAIT seconds, default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-perf/results-attn}
RANKS=${RANKS:-2}
THREADS=${THREADS:-1}
LENGTHS=${LENGTHS:-"-b 2K -e 8K -f 2"}
RUNS=${RUNS:-1}
PY=${PY:-/usr/bin/python3}
mkdir -p "$OUT"

# Idle fraction of all CPUs over one second, from /proc/stat (percent).
idle_percent() {
  local a b
  a=($(head -1 /proc/stat))
  sleep 1
  b=($(head -1 /proc/stat))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  echo $(( total > 0 ? 100 * (b[4] - a[4] + b[5] - a[5]) / total : 100 ))
}

wait_quiet() {
  [ "${QUIET:-0}" = 1 ] || return 0
  local deadline=$((SECONDS + ${QUIET_WAIT:-600}))
  while [ $SECONDS -lt $deadline ]; do
    if [ "$(idle_percent)" -ge 90 ] && [ "$(idle_percent)" -ge 90 ]; then return 0; fi
  done
  echo "run_attention: the CPUs stayed busy; measuring anyway" >&2
}
common="-r $RANKS -T $THREADS $LENGTHS -H 8 -D 64 -d bf16 -C 1 -l zigzag -n 3 -w 1"
for case in gqa:2 mha:8; do
  name=${case%%:*}
  kv=${case#*:}
  for run in $(seq "$RUNS"); do
    for algo in ring passq allgather ulysses hybrid auto; do
      wait_quiet
      echo "== $name run $run: $algo (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      "$BUILD/perf/${algo}_attn_perf" $common -K "$kv" -J "$OUT/${name}_${algo}_${run}.json"
    done
  done
  wait_quiet
  "$BUILD/tools/attnccl-plan" -p this-machine -R "$RANKS" -T "$THREADS" $LENGTHS -H 8 -K "$kv" -D 64 -d bf16 -C 1 \
    -l zigzag -J "$OUT/${name}_plan.json"
  "$PY" tools/plot_perf.py -m -o "$OUT/$name" -t "$name: $RANKS ranks x $THREADS thread(s)" "$OUT/${name}"_*.json
done
