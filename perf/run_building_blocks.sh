#!/usr/bin/env bash
# Runs attnccl's building-block perf tools (sendrecv, oneway, allgather, reduce_scatter,
# alltoall, allreduce, bcast) against Open MPI on the same ranks and prints a comparison (perf/compare_building_blocks.py). For every rank count and collective:
# (<op>_perf is the attnccl tool of the op: allreduce -> all_reduce_perf, bcast -> broadcast_perf)
#   threads   <op>_perf -r P -t shm                      (P ranks as threads of one process)
#   proc-shm  mpirun -np P <op>_perf -t shm              (P processes, shm transport)
#   proc-ucx  mpirun -np P <op>_perf -t ucx              (P processes, UCX transport)
#   mpi       mpirun -np P mpi_bench -o <op>             (Open MPI's own collective)
# Modes run round-robin within each repeat, so drift in machine load hits all of them alike; each
# run waits for an idle machine first (QUIET_*), records the other processes' CPU use while it ran,
# and the comparison takes the best (STAT=max) or median busbw over the repeats.
#
#   perf/run_building_blocks.sh                  # defaults below
#   RANKS="2" OPS="sendrecv" REPEATS=1 perf/run_building_blocks.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-perf}
BIN=$BUILD/perf
RANKS=${RANKS:-"2 4"}
OPS=${OPS:-"sendrecv oneway allgather reduce_scatter alltoall allreduce bcast"}
MODES=${MODES:-"threads proc-shm proc-ucx mpi"}
MIN=${MIN:-1M}
MAX=${MAX:-64M}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-2}
CHECK=${CHECK:-1}
REPEATS=${REPEATS:-3}
OUT=${OUT:-$(mktemp -d /tmp/attnccl-bb.XXXXXX)}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --bind-to none"}
# On a shared machine: before each run wait (at most QUIET_WAIT s) until the CPUs were at least
# QUIET_IDLE percent idle over one second; the idle figure is recorded in each log.
QUIET_IDLE=${QUIET_IDLE:-90}
QUIET_WAIT=${QUIET_WAIT:-300}
# Statistic over the repeats: max (best of, default: other load only ever slows a run down) or
# median.
STAT=${STAT:-max}

# Percent of CPU time idle over the next second (/proc/stat).
idle_percent() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  echo $(( total > 0 ? 100 * (b[4] - a[4] + b[5] - a[5]) / total : 100 ))
}

wait_quiet() {
  local waited=0 idle
  idle=$(idle_percent)
  while (( idle < QUIET_IDLE && waited < QUIET_WAIT )); do
    idle=$(idle_percent)
    waited=$((waited + 1))
  done
  echo "$idle"
}

# The attnccl tool of an mpi_bench op name.
tool_of() {
  case $1 in
    allreduce) echo all_reduce_perf ;;
    bcast) echo broadcast_perf ;;
    *) echo "$1_perf" ;;
  esac
}

for t in mpi_bench $(for op in $OPS; do tool_of "$op"; done); do
  [[ -x $BIN/$t ]] || { echo "missing $BIN/$t: build first (cmake --build $BUILD)" >&2; exit 2; }
done
mkdir -p "$OUT"
SWEEP="-b $MIN -e $MAX -f 2 -n $ITERS -w $WARMUP -c $CHECK"
{
  echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(hostname), $(date -Iseconds)"
  echo "# sweep: $SWEEP; ranks: $RANKS; repeats: $REPEATS; mpirun: $MPIRUN"
} | tee "$OUT/README"

status=0
for rep in $(seq 1 "$REPEATS"); do
  for p in $RANKS; do
    for op in $OPS; do
      for mode in $MODES; do
        log=$OUT/$op.$p.$mode.$rep.txt
        case $mode in
          threads) cmd="$BIN/$(tool_of "$op") -r $p -t shm $SWEEP" ;;
          proc-shm) cmd="$MPIRUN -np $p $BIN/$(tool_of "$op") -t shm $SWEEP" ;;
          proc-ucx) cmd="$MPIRUN -np $p $BIN/$(tool_of "$op") -t ucx $SWEEP" ;;
          mpi) cmd="$MPIRUN -np $p $BIN/mpi_bench -o $op $SWEEP" ;;
          *) echo "unknown mode $mode" >&2; exit 2 ;;
        esac
        idle=$(wait_quiet)
        echo "[$rep/$REPEATS] (cpu idle ${idle}%) $cmd" >&2
        { echo "# command: $cmd"; echo "# cpu idle before the run: ${idle}%"; } > "$log"
        before=($(head -1 /proc/stat))
        if ! /usr/bin/time -o "$log.time" -f "%U %S" $cmd >> "$log" 2>&1; then
          echo "FAILED (see $log)" >&2
          status=1
        fi
        after=($(head -1 /proc/stat))
        # CPU time of other processes during the run: all busy time minus this run's own.
        read -r usr sys < "$log.time" || true
        rm -f "$log.time"
        total=0; for i in 1 2 3 4 5 6 7 8; do total=$((total + after[i] - before[i])); done
        busy=$((total - (after[4] - before[4]) - (after[5] - before[5])))
        own=$(awk -v u="${usr:-0}" -v s="${sys:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%d", (u + s) * hz }')
        echo "# other processes' cpu during the run: $(( total > 0 ? 100 * (busy - own) / total : 0 ))%" >> "$log"
      done
    done
  done
done

python3 "$ROOT/perf/compare_building_blocks.py" --stat "$STAT" "$OUT" | tee "$OUT/comparison.md" || status=1
echo "raw tables: $OUT" >&2
exit $status
