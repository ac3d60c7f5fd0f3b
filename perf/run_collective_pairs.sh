#!/usr/bin/env bash
# Interleaved A/B runs of attnccl's all_reduce_perf / broadcast_perf against Open MPI's
# MPI_Allreduce / MPI_Bcast (mpi_bench) on the same ranks, and optionally against a second
# (baseline) build of attnccl. On a machine shared with other work, every repeat runs every
# variant once, in turn, so drift in the load hits all of them alike; the summary
# (perf/summarize_pairs.py) takes the median busbw over the repeats per variant and size.
#
#   variants per op and rank count P:
#     mpi          mpirun -np P mpi_bench -o <op>
#     new-proc     mpirun -np P <tool> -t shm            (BUILD)
#     base-proc    mpirun -np P <tool> -t shm            (BASE, when set)
#     new-threads  <tool> -r P -t shm                    (BUILD)
#     base-threads <tool> -r P -t shm                    (BASE, when set)
#     new-proc-ip / new-threads-ip   as new-proc / new-threads, in place (-I 1: sendbuff =
#                  recvbuff, MPI_Bcast's one buffer; out of place the root also copies N itself)
#
#   BUILD=build BASE=/tmp/base/build OPS="allreduce bcast" RANKS="2 4" REPEATS=3 \
#     perf/run_collective_pairs.sh
#
# Across the nodes of tools/cluster (processes only; attnccl's default transport choice, shm
# inside a node and UCX between; Open MPI with vader inside a node and tcp between):
#   export ATTNCCL_CLUSTER=attnccl-ar; tools/cluster up 2 --rate 2000
#   PREFIX="tools/cluster run --" VARIANTS="mpi new-proc" TRANSPORT= RANKS=4 \
#   MPIRUN="mpirun --allow-run-as-root --mca plm_rsh_agent cluster-rsh --mca oob_tcp_if_include eth0 \
#     --mca btl self,vader,tcp --mca btl_tcp_if_include eth0 -x PATH --bind-to none \
#     --host attnccl-ar-node0:2,attnccl-ar-node1:2" perf/run_collective_pairs.sh
#   tools/cluster down
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BASE=${BASE:-}
OPS=${OPS:-"allreduce bcast"}
RANKS=${RANKS:-"2 4"}
REPEATS=${REPEATS:-3}
SWEEP=${SWEEP:-"-b 1M -e 64M -f 4 -n 10 -w 2 -c 0"}
OUT=${OUT:-$(mktemp -d /tmp/attnccl-pairs.XXXXXX)}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --bind-to none"}
PREFIX=${PREFIX:-}
TRANSPORT=${TRANSPORT-"-t shm"}
VARIANTS=${VARIANTS:-}

tool_of() { case $1 in allreduce) echo all_reduce_perf ;; bcast) echo broadcast_perf ;; esac; }

mkdir -p "$OUT"
echo "# $(date -Iseconds) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); sweep: $SWEEP" | tee "$OUT/README"
for rep in $(seq 1 "$REPEATS"); do
  for op in $OPS; do
    for p in $RANKS; do
      t=$(tool_of "$op")
      variants="mpi new-proc new-threads"
      [[ -n $BASE ]] && variants="mpi base-proc new-proc base-threads new-threads"
      [[ -n $VARIANTS ]] && variants=$VARIANTS
      for v in $variants; do
        case $v in
          mpi) cmd="$PREFIX $MPIRUN -np $p $BUILD/perf/mpi_bench -o $op $SWEEP" ;;
          new-proc) cmd="$PREFIX $MPIRUN -np $p $BUILD/perf/$t $TRANSPORT $SWEEP" ;;
          base-proc) cmd="$PREFIX $MPIRUN -np $p $BASE/perf/$t $TRANSPORT $SWEEP" ;;
          new-threads) cmd="$BUILD/perf/$t -r $p $TRANSPORT $SWEEP" ;;
          new-proc-ip) cmd="$PREFIX $MPIRUN -np $p $BUILD/perf/$t $TRANSPORT -I 1 $SWEEP" ;;
          new-threads-ip) cmd="$BUILD/perf/$t -r $p $TRANSPORT -I 1 $SWEEP" ;;
          base-threads) cmd="$BASE/perf/$t -r $p $TRANSPORT $SWEEP" ;;
        esac
        log=$OUT/$op.$p.$v.$rep.txt
        { echo "# command: $cmd"; echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"; } > "$log"
        echo "[$rep/$REPEATS] $cmd" >&2
        $cmd >> "$log" 2>&1 || echo "FAILED: $log" >&2
      done
    done
  done
done
python3 "$ROOT/perf/summarize_pairs.py" "$OUT" | tee "$OUT/summary.md"
echo "raw logs: $OUT" >&2
