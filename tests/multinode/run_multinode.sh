#!/usr/bin/env bash
# Multi-node runs on one machine (ctest multinode.cluster): tools/cluster makes 3 nodes (network
# namespaces with their own hostnames, UCX over TCP between them, shm inside each), and mpirun
# starts tests/multinode/mn_attn_check on them: every algorithm, forward and backward, each
# rank's slice checked against the fp64 reference and the one-rank result. Node shapes: 2+2,
# 3+1, 2+1+1, 1+3 (ranks numbered node by node) and 2+2 with ranks interleaved across the nodes
# (--map-by node); bootstraps: MPI (attncclCommInitMpi) and the unique-id TCP rendezvous at a
# fixed address (ATTNCCL_COMM_ID, served by rank 0 on its node; MPI only broadcasts the id).
# Then the README's command line: hybrid_attn_perf -c 1 on 3+1 (when the perf tools are built).
# A healthy run must log no warning (ATTNCCL_DEBUG=WARN).
#
#   tests/multinode/run_multinode.sh BUILD_DIR [SOURCE_DIR]
#
# Exit 77 (skipped) where the cluster cannot be made (not root, no namespaces) or there is
# nothing to run (no mpirun, no checker: built without MPI).
set -uo pipefail

BUILD=${1:?build dir}
SRC=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
CLUSTER="$SRC/tools/cluster"
CHECK="$BUILD/tests/mn_attn_check"
PERF="$BUILD/perf/hybrid_attn_perf"

command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
[ -x "$CHECK" ] || { echo "SKIP: $CHECK not built (no MPI at configure time)"; exit 77; }

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
N0_IP=$(awk -v h="$N0" '$2 == h {print $1}' "/etc/netns/$N0/hosts")

# The mpirun command line (README.md, "Multi-node use", shows the same).
MPI=(mpirun --allow-run-as-root --mca plm_rsh_agent cluster-rsh --mca oob_tcp_if_include eth0
     --mca btl self,tcp --mca btl_tcp_if_include eth0 -x ATTNCCL_DEBUG=WARN -x PATH)
shapes=(
  "2+2|--host $N0:2,$N1:2"
  "3+1|--host $N0:3,$N1:1"
  "2+1+1|--host $N0:2,$N1:1,$N2:1"
  "1+3|--host $N0:1,$N1:3"
  "2+2 interleaved|--host $N0:2,$N1:2 --map-by node"
)

fails=0 runs=0 port=29611
# One run: a name, then the command after mpirun's common arguments. It must exit 0, print its
# success line and warn nowhere.
run() {
  local name=$1 want=$2; shift 2
  runs=$((runs + 1))
  local out rc
  out=$(timeout 240 "$CLUSTER" run -- "${MPI[@]}" "$@" 2>&1)
  rc=$?
  # Here-strings, not `printf | grep -q`: under pipefail that pipe fails when grep exits at its
  # match before printf has written the rest (SIGPIPE).
  if [ "$rc" != 0 ] || ! grep -q -- "$want" <<<"$out" || grep -q 'WARN' <<<"$out"; then
    echo "FAIL: $name (rc $rc)"
    printf '%s\n' "$out" | tail -30 | sed 's/^/    /'
    fails=$((fails + 1))
  else
    echo "ok:   $name: $(printf '%s\n' "$out" | grep -- "$want" | tail -1)"
  fi
}

for shape in "${shapes[@]}"; do
  name=${shape%%|*}
  read -r -a where <<<"${shape#*|}"
  run "$name MPI" " 0 failed" -np 4 "${where[@]}" "$CHECK" mpi
  port=$((port + 1))
  run "$name ATTNCCL_COMM_ID" " 0 failed" -x "ATTNCCL_COMM_ID=$N0_IP:$port" -np 4 "${where[@]}" "$CHECK" uid
done
# The automatic choice measures the link between the nodes (attn/tune/tuner.cc) instead of
# assuming one: its INFO line must be there (the figure itself depends on the machine and the
# cluster's tbf rate, so only its presence is checked).
AUTO="$BUILD/perf/auto_attn_perf"
if [ -x "$AUTO" ]; then
  run "2+2 auto measures the inter-node link" "inter-node link measured between ranks 0 and 2" -np 4 \
    --host "$N0:2,$N1:2" -x ATTNCCL_DEBUG=INFO -x ATTNCCL_DEBUG_SUBSYS=TUNE \
    "$AUTO" -r 1 -T 1 -b 256 -e 256 -H 4 -K 2 -D 32 -d fp32 -n 1 -w 0 -c 1 -E 0
fi
if [ -x "$PERF" ]; then
  run "3+1 hybrid_attn_perf" "Wrong values *: 0 OK" -np 4 --host "$N0:3,$N1:1" \
    "$PERF" -r 1 -T 1 -b 384 -e 384 -H 4 -K 2 -D 32 -d fp32 -n 1 -w 0 -c 1
fi
echo "$((runs - fails)) of $runs runs passed"
[ "$fails" = 0 ]
