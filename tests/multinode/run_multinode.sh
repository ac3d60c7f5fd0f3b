#!/usr/bin/env bash
# Multi-node runs on one machine (ctest multinode.cluster): tools/cluster makes 3 nodes (network
# namespaces with their own hostnames, UCX over TCP between them, shm inside each), and mpirun
# starts every attention perf tool on them with -c 1, which checks every element of forward and
# backward against the one-rank result. Node shapes: 2+2, 3+1, 2+1+1, 1+3 (ranks numbered node
# by node) and 2+2 with ranks interleaved across the nodes (--map-by node); bootstraps: MPI
# (attncclCommInitMpi) and the TCP rendezvous at a fixed address (ATTNCCL_COMM_ID, served by
# rank 0 on its node). A healthy run must also log no warning (ATTNCCL_DEBUG=WARN).
#
#   tests/multinode/run_multinode.sh BUILD_DIR [SOURCE_DIR]
#
# Exit 77 (skipped) where the cluster cannot be made (not root, no namespaces) or the tools are
# missing (no mpirun, perf tools not built with MPI).
set -uo pipefail

BUILD=${1:?build dir}
SRC=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
CLUSTER="$SRC/tools/cluster"
PERF="$BUILD/perf"

command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
for t in ring passq allgather ulysses hybrid auto; do
  [ -x "$PERF/${t}_attn_perf" ] || { echo "SKIP: $PERF/${t}_attn_perf not built"; exit 77; }
done
strings "$PERF/ring_attn_perf" 2>/dev/null | grep -q MPI_Init || ldd "$PERF/ring_attn_perf" | grep -q libmpi ||
  { echo "SKIP: the perf tools were built without MPI"; exit 77; }

# A cluster of this run's own, so that a cluster someone else is using is never touched.
export ATTNCCL_CLUSTER="attnccl-t$$"
"$CLUSTER" check || { echo "SKIP: this machine cannot make the cluster"; exit 77; }
trap '"$CLUSTER" down' EXIT
trap 'exit 130' INT TERM
# Clusters of earlier runs of this test that were killed before their trap ran (a ctest
# timeout kills without a signal that can be caught): theirs is a dead process id.
for ns in $(ip netns list | awk '{print $1}' | sed -n 's/^\(attnccl-t[0-9]*\)-head$/\1/p'); do
  pid=${ns#attnccl-t}
  [ "$pid" = "$$" ] || kill -0 "$pid" 2>/dev/null || ATTNCCL_CLUSTER=$ns "$CLUSTER" down
done
"$CLUSTER" up 3 --rate 2000 || { echo "FAIL: tools/cluster up"; exit 1; }
mapfile -t HOSTS < <("$CLUSTER" hosts)
N0=${HOSTS[0]} N1=${HOSTS[1]} N2=${HOSTS[2]}
# Rank 0 runs on node 0 in every shape below; its address serves the fixed-address rendezvous.
N0_IP=$(getent -s files hosts "$N0" 2>/dev/null | awk '{print $1}')
[ -n "$N0_IP" ] || N0_IP=$(awk -v h="$N0" '$2 == h {print $1}' "/etc/netns/$N0/hosts")

# The mpirun command line (README.md, "Multi-node use", shows the same).
MPI=(mpirun --allow-run-as-root --mca plm_rsh_agent cluster-rsh --mca oob_tcp_if_include eth0
     --mca btl self,tcp --mca btl_tcp_if_include eth0 -x ATTNCCL_DEBUG=WARN -x PATH)
# Small problems: 4 Q heads over 2 K/V heads (the hybrid splits heads inside groups), dim 32.
TOOL_ARGS=(-r 1 -T 1 -b 384 -e 384 -H 4 -K 2 -D 32 -d fp32 -n 1 -w 0 -c 1)

shapes=(
  "2+2|--host $N0:2,$N1:2"
  "3+1|--host $N0:3,$N1:1"
  "2+1+1|--host $N0:2,$N1:1,$N2:1"
  "1+3|--host $N0:1,$N1:3"
  "2+2 interleaved|--host $N0:2,$N1:2 --map-by node"
)

fails=0 runs=0 port=29611
for shape in "${shapes[@]}"; do
  name=${shape%%|*}
  read -r -a where <<<"${shape#*|}"
  for boot in mpi commid; do
    for algo in ring passq allgather ulysses hybrid auto; do
      env=()
      if [ "$boot" = commid ]; then
        port=$((port + 1))
        env=(-x "ATTNCCL_COMM_ID=$N0_IP:$port")
      fi
      runs=$((runs + 1))
      out=$(timeout 120 "$CLUSTER" run -- "${MPI[@]}" "${env[@]}" -np 4 "${where[@]}" \
              "$PERF/${algo}_attn_perf" "${TOOL_ARGS[@]}" 2>&1)
      rc=$?
      # The table's last column is #wrong; every row must say 0, and nothing may warn.
      wrong=$(printf '%s\n' "$out" | awk '/^ *[0-9]/ {print $NF}' | grep -cv '^0$')
      rows=$(printf '%s\n' "$out" | awk '/^ *[0-9]/' | wc -l)
      warns=$(printf '%s\n' "$out" | grep -c 'WARN')
      if [ "$rc" != 0 ] || [ "$rows" -lt 1 ] || [ "$wrong" != 0 ] || [ "$warns" != 0 ]; then
        echo "FAIL: $name $boot $algo (rc $rc, rows $rows, wrong rows $wrong, warnings $warns)"
        printf '%s\n' "$out" | tail -25 | sed 's/^/    /'
        fails=$((fails + 1))
      else
        echo "ok:   $name $boot $algo"
      fi
    done
  done
done
echo "$((runs - fails)) of $runs runs passed"
[ "$fails" = 0 ]
