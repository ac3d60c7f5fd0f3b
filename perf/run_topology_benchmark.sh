#!/usr/bin/env bash
# Topology-aware for real (issue 16): every algorithm on 2 nodes x 2 ranks joined by a link whose
# bandwidth stands to this CPU's tile rate as NDR InfiniBand stands to an H100, against the
# planner's predictions with the inter-node link the library measured, and the automatic choice
# against the fastest. A benchmark, not a test: the answer depends on the machine and its load.
#
#   sudo perf/run_topology_benchmark.sh              (root: tools/cluster makes namespaces)
#   BUILD=build REPEATS=3 ITERS=2 SEQ=8K OUT=/tmp/topo perf/run_topology_benchmark.sh
#
# The link rate (the arithmetic, printed again by the run with this machine's figures):
#   H100 SXM: 990 TFLOP/s dense bf16; one NDR NIC per GPU: 400 Gb/s = 50 GB/s per direction.
#   FLOP per byte crossing the node boundary: 990e12 / 50e9 = 19800.
#   Here a "node" is one core (tools/cluster's node k is pinned to CPU k with taskset, so its two
#   ranks share that core as two GPUs of a node share nothing but their NICs do not: see below),
#   and one core computes the tiles at R FLOP/s (attn_kernel_perf -t 1 on the benchmark's problem,
#   forward, measured at the start of the run). The same ratio needs R / 19800 bytes/s of link per
#   node: R = 54 GFLOP/s (2026-12-02) gives 2.7 MB/s = 22 Mbit/s, the tc tbf rate of each node.
#   Per rank: half the node's compute and, when both ranks cross at once, half its link, the same
#   ratio. (FA3's achieved 616 TFLOP/s instead of the 990 peak would allow 1.6x more bandwidth.)
#
# Steps: (1) the tile rate -> the tbf rate (RATE_MBIT overrides); (2) the planner calibrates this
# machine (`attnccl-plan -p this-machine`, two tile pools at once, one per core, best of 3
# rounds) and its tile rates go into a tune file (ATTNCCL_TUNE_FILE), which the library's
# automatic choice then reads too, so planner and auto price compute alike; (3) tools/cluster
# up 2 --rate RATE_MBIT; (4) per repeat every perf tool (auto first: its first call measures the
# inter-node link, tuner.cc, and rank 0 writes it to "<tune file>.internode") on 2+2 ranks under
# mpirun, one thread per rank;
# (5) the planner again, with that measured link (--inter-link); (6) one table: predicted /
# measured per algorithm and direction (measured = best of REPEATS: another process can only slow
# a run down), whether within 25%, auto's pick and its time against the fastest (within 10%?).
#
# Environment: BUILD (build dir with the perf tools and tools/attnccl-plan; nothing is built
# here), SEQ (global tokens, 8K), REPEATS (3), ITERS (2 timed calls per run), RATE_MBIT (from the
# arithmetic), OUT (JSON and logs; default a fresh /tmp dir), ATTNCCL_CLUSTER (attnccl-topo),
# PLOT (a folder for tools/plot_perf.py's charts, e.g. perf/plots/topology; none if unset),
# MPIRUN_ARGS (more mpirun arguments for the perf runs, e.g. "-x UCX_RNDV_THRESH=inf").
# Problem: 8 query / 2 K/V heads, dim 64, bf16, causal, zigzag; hybrid groups = the nodes (2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(cd "${BUILD:-build}" && pwd)
SEQ=${SEQ:-8K}
REPEATS=${REPEATS:-3}
ITERS=${ITERS:-2}
read -r -a MPIRUN_EXTRA <<< "${MPIRUN_ARGS:-}"
OUT=${OUT:-$(mktemp -d /tmp/attnccl-topo.XXXXXX)}
export ATTNCCL_CLUSTER=${ATTNCCL_CLUSTER:-attnccl-topo}
CLUSTER=tools/cluster
PLAN="$BUILD/tools/attnccl-plan"
KPROB="-H 8 -K 2 -D 64 -d bf16 -C 1"
PROB="$KPROB -l zigzag"
ALGOS="auto ring passq allgather ulysses hybrid"
mkdir -p "$OUT"
for t in "$PLAN" "$BUILD/perf/attn_kernel_perf" $(for a in $ALGOS; do echo "$BUILD/perf/${a}_attn_perf"; done); do
  [ -x "$t" ] || { echo "run_topology_benchmark: $t missing (build with ATTNCCL_BUILD_PERF=ON and MPI)" >&2; exit 2; }
done
command -v mpirun > /dev/null || { echo "run_topology_benchmark: no mpirun" >&2; exit 2; }
"$CLUSTER" check || { echo "run_topology_benchmark: this machine cannot make tools/cluster's nodes" >&2; exit 2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
log() { echo "== $(date -u +%H:%M:%S) $* (load: $(load))" | tee -a "$OUT/log.txt" >&2; }

# (1) The tile rate of one core on this problem, and the link rate of the same FLOP/byte as an
# H100 with its NDR NIC.
log "tile rate: attn_kernel_perf -t 1 -b $SEQ"
"$BUILD/perf/attn_kernel_perf" -b "$SEQ" -e "$SEQ" $KPROB -B fwd -n 2 -w 1 -t 1 -c 0 > "$OUT/kernel.txt" 2>&1
TILE_GFLOPS=$(awk '$2 == "fwd" {print $4}' "$OUT/kernel.txt" | tail -1)
[ -n "$TILE_GFLOPS" ] || { echo "run_topology_benchmark: no tile rate in $OUT/kernel.txt" >&2; exit 1; }
RATIO=$(awk 'BEGIN {printf "%.0f", 990e12 / 50e9}')
AUTO_MBIT=$(awk -v g="$TILE_GFLOPS" -v r="$RATIO" 'BEGIN {printf "%.0f", g * 1e9 / r * 8 / 1e6}')
RATE_MBIT=${RATE_MBIT:-$AUTO_MBIT}
{
  echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC'); load at start $(load)"
  echo "# arithmetic: H100 990 TFLOP/s / NDR 50 GB/s = $RATIO FLOP/B; one core's tiles $TILE_GFLOPS GFLOP/s" \
       "-> $(awk -v g="$TILE_GFLOPS" -v r="$RATIO" 'BEGIN {printf "%.2f", g * 1e9 / r / 1e6}') MB/s" \
       "= $AUTO_MBIT Mbit/s per node; tbf rate used: $RATE_MBIT Mbit/s"
  echo "# problem: S = $SEQ, $PROB; 2 nodes x 2 ranks (node k pinned to CPU k), 1 thread per rank;" \
       "best of $REPEATS runs of $ITERS calls"
} > "$OUT/header.txt"
cat "$OUT/header.txt" >&2

# (2) The planner's calibration (the ranks of both nodes computing at once), kept as a tune file.
log "calibration: attnccl-plan -p this-machine"
env -u ATTNCCL_TUNE_FILE "$PLAN" -p this-machine -N 2 -R 2 -T 1 -s "$SEQ" $PROB > "$OUT/calibration.txt"
read -r FWD BWD < <(sed -n 's/.*tiles \([0-9.e+-]*\) \/ \([0-9.e+-]*\) TFLOP.*/\1 \2/p' "$OUT/calibration.txt")
COPY=$(sed -n 's/.*intra \([0-9.]*\) GB\/s.*/\1/p' "$OUT/calibration.txt")
export ATTNCCL_TUNE_FILE="$OUT/tune"
awk -v f="$FWD" -v b="$BWD" -v c="$COPY" 'BEGIN {printf "fwdFlops=%.6g bwdFlops=%.6g copyBandwidth=%.6g\n", f * 1e12, b * 1e12, c * 1e9}' \
  > "$ATTNCCL_TUNE_FILE.1"

# (3) The cluster, removed whatever happens next.
trap '"$CLUSTER" down' EXIT
trap 'exit 130' INT TERM
"$CLUSTER" down  # one left over by a killed run of this script (same prefix)
"$CLUSTER" up 2 --rate "$RATE_MBIT"
mapfile -t HOSTS < <("$CLUSTER" hosts)
MPI=(mpirun --allow-run-as-root --mca plm_rsh_agent cluster-rsh --mca oob_tcp_if_include eth0
     --mca btl self,tcp --mca btl_tcp_if_include eth0 --bind-to none -x PATH -x ATTNCCL_TUNE_FILE
     -x ATTNCCL_DEBUG=INFO -x ATTNCCL_DEBUG_SUBSYS=TUNE ${MPIRUN_EXTRA[@]+"${MPIRUN_EXTRA[@]}"}
     -np 4 --host "${HOSTS[0]}:2,${HOSTS[1]}:2")
# Node k's ranks on CPU k: one core per node (its hostname ends in -node<k>).
PIN=(sh -c 'n=$(hostname); exec taskset -c "${n##*-node}" "$@"' pin)

# (4) The runs, auto first in every repeat.
for rep in $(seq "$REPEATS"); do
  for algo in $ALGOS; do
    log "rep $rep $algo"
    timeout 900 "$CLUSTER" run -- "${MPI[@]}" "${PIN[@]}" "$BUILD/perf/${algo}_attn_perf" -T 1 -b "$SEQ" -e "$SEQ" \
      $PROB -G 0 -n "$ITERS" -w 1 -c 0 -E 0 -J "$OUT/${algo}_${rep}.json" > "$OUT/${algo}_${rep}.txt" 2>&1 ||
      { echo "run_topology_benchmark: $algo run $rep failed:" >&2; tail -20 "$OUT/${algo}_${rep}.txt" >&2; exit 1; }
  done
done
grep -h "inter-node link measured\|auto .*chose" "$OUT"/auto_*.txt | sed 's/^/# /' | sort | uniq -c > "$OUT/auto_lines.txt" || true

# (5) The planner with the link the library measured (and the cores the nodes have: one).
log "plan with the measured link"
"$PLAN" -p this-machine -N 2 -R 2 -T 1 --cores-per-node 1 --inter-link "$ATTNCCL_TUNE_FILE.internode" -s "$SEQ" $PROB \
  -G 0 -J "$OUT/plan.json" > "$OUT/plan.txt"
# And with the fixed 10 GB/s / 5 us it assumed before, for the record.
"$PLAN" -p this-machine -N 2 -R 2 -T 1 --cores-per-node 1 --inter-gbps 10 --inter-latency-us 5 -s "$SEQ" $PROB \
  -G 0 -J "$OUT/plan_fixed.json" > "$OUT/plan_fixed.txt"
log "done"

# (6) The table.
/usr/bin/python3 - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
print(open(os.path.join(out, "header.txt")).read().strip())
print("# " + open(os.path.join(out, "plan.txt")).readline().strip("# \n"))
print("# inter-node link as the library measured it: " + open(os.path.join(out, "tune.internode")).read().strip())
for line in open(os.path.join(out, "auto_lines.txt")):
    print("# " + line.strip())
plan = json.load(open(os.path.join(out, "plan.json")))["rows"][0]
fixed = json.load(open(os.path.join(out, "plan_fixed.json")))["rows"][0]
pred = {a["algorithm"]: a for a in plan["algorithms"]}
pfix = {a["algorithm"]: a for a in fixed["algorithms"]}
meas, picks = {}, {}
for algo in ["auto", "ring", "passq", "allgather", "ulysses", "hybrid"]:
    rows = [json.load(open(f))["rows"][0] for f in sorted(glob.glob(os.path.join(out, "%s_*.json" % algo)))]
    rows = [r for r in rows if r.get("fwd_time_us") and r.get("bwd_time_us")]
    if not rows:
        continue
    meas[algo] = {d: sorted(r[d + "_time_us"] / 1e3 for r in rows) for d in ("fwd", "bwd")}
    if algo == "auto":
        picks = {d: sorted(set(r[d + "_algo"] for r in rows)) for d in ("fwd", "bwd")}
print("| algorithm | fwd pred / meas (ms) | ratio | bwd pred / meas (ms) | ratio | within 25% | runs fwd (ms) | runs bwd (ms) | pred. with fixed 10 GB/s fwd / bwd |")
print("|---|---|---|---|---|---|---|---|---|")
misses = 0
for algo in ["ring", "passq", "allgather", "ulysses", "hybrid"]:
    if algo not in meas or algo not in pred:
        continue
    pf, pb = pred[algo]["fwd"]["seconds"] * 1e3, pred[algo]["bwd"]["seconds"] * 1e3
    mf, mb = meas[algo]["fwd"][0], meas[algo]["bwd"][0]
    ok = abs(pf / mf - 1) <= 0.25 and abs(pb / mb - 1) <= 0.25
    misses += not ok
    print("| %s | %.0f / %.0f | %.3f | %.0f / %.0f | %.3f | %s | %s | %s | %.0f / %.0f |" % (
        algo, pf, mf, pf / mf, pb, mb, pb / mb, "yes" if ok else "**no**",
        " ".join("%.0f" % t for t in meas[algo]["fwd"]), " ".join("%.0f" % t for t in meas[algo]["bwd"]),
        pfix[algo]["fwd"]["seconds"] * 1e3, pfix[algo]["bwd"]["seconds"] * 1e3))
print("# %d algorithm(s) outside +-25%%" % misses)
print("| direction | auto picked | auto measured (ms) | fastest measured | its time (ms) | auto / fastest | within 10% | planner's pick |")
print("|---|---|---|---|---|---|---|---|")
for d in ("fwd", "bwd"):
    if "auto" not in meas:
        break
    # The fastest run of any algorithm; auto's own runs count as runs of what it picked.
    best = min((meas[a][d][0], a if a != "auto" else "/".join(picks[d]) + " (auto's run)") for a in meas)
    ta = meas["auto"][d][0]
    print("| %s | %s | %.0f | %s | %.0f | %.3f | %s | %s |" % (
        d, "/".join(picks[d]), ta, best[1], best[0], ta / best[0], "yes" if ta <= 1.10 * best[0] else "**no**",
        plan["auto_" + d]))
print("# JSON and logs in %s" % out)
EOF
if [ -n "${PLOT:-}" ]; then
  /usr/bin/python3 tools/plot_perf.py -o "$PLOT" "$OUT"/*_[0-9]*.json "$OUT/plan.json"
fi
