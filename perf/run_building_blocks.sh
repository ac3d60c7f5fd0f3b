#!/usr/bin/env bash
# Runs attnccl's four building-block perf tools against Open MPI on the same ranks and prints a
# comparison (perf/compare_building_blocks.py). For every rank count and collective:
#   threads   <op>_perf -r P -t shm                      (P ranks as threads of one process)
#   proc-shm  mpirun -np P <op>_perf -t shm              (P processes, shm transport)
#   proc-ucx  mpirun -np P <op>_perf -t ucx              (P processes, UCX transport)
#   mpi       mpirun -np P mpi_bench -o <op>             (Open MPI's own collective)
# Modes run round-robin within each repeat, so drift in machine load hits all of them alike; the
# comparison takes the median busbw over the repeats.
#
#   perf/run_building_blocks.sh                  # defaults below
#   RANKS="2" OPS="sendrecv" REPEATS=1 perf/run_building_blocks.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-perf}
BIN=$BUILD/perf
RANKS=${RANKS:-"2 4"}
OPS=${OPS:-"sendrecv allgather reduce_scatter alltoall"}
MODES=${MODES:-"threads proc-shm proc-ucx mpi"}
MIN=${MIN:-1M}
MAX=${MAX:-64M}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-2}
CHECK=${CHECK:-1}
REPEATS=${REPEATS:-3}
OUT=${OUT:-$(mktemp -d /tmp/attnccl-bb.XXXXXX)}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --bind-to none"}

for t in sendrecv_perf allgather_perf reduce_scatter_perf alltoall_perf mpi_bench; do
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
          threads) cmd="$BIN/${op}_perf -r $p -t shm $SWEEP" ;;
          proc-shm) cmd="$MPIRUN -np $p $BIN/${op}_perf -t shm $SWEEP" ;;
          proc-ucx) cmd="$MPIRUN -np $p $BIN/${op}_perf -t ucx $SWEEP" ;;
          mpi) cmd="$MPIRUN -np $p $BIN/mpi_bench -o $op $SWEEP" ;;
          *) echo "unknown mode $mode" >&2; exit 2 ;;
        esac
        echo "[$rep/$REPEATS] $cmd" >&2
        echo "# command: $cmd" > "$log"
        if ! $cmd >> "$log" 2>&1; then
          echo "FAILED (see $log)" >&2
          status=1
        fi
      done
    done
  done
done

python3 "$ROOT/perf/compare_building_blocks.py" "$OUT" | tee "$OUT/comparison.md" || status=1
echo "raw tables: $OUT" >&2
exit $status
