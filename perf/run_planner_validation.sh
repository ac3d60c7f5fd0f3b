#!/usr/bin/env bash
# The planner's this-machine predictions against measured CPU runs (a benchmark, not a test: the
# answer depends on the machine and its load). For every configuration it calibrates with
# `attnccl-plan -p this-machine` right before measuring (a VM's speed drifts over minutes), runs
# every algorithm's perf tool on the same problem, and prints one table:
#   mode P layout algorithm  predicted / measured ms and ratio, forward and backward, within 25%?
# ratio = predicted / measured (below 1: the run was slower than the model says). Measured = the
# best over REPEATS runs of the tool's time per call (slowest rank, mean of ITERS calls).
# It also prints the calibration tile rate measured alone and while other cores compute tiles too
# (the planner calibrates alone; the ranks compute side by side).
#
#   perf/run_planner_validation.sh                       (BUILD=build MODES="threads procs" ...)
#
# Environment: BUILD (build dir, default build; nothing is built here), RANKS ("2 3 4"), MODES
# ("threads": P ranks as threads of one process; "procs": P processes under mpirun), REPEATS (2),
# ITERS (3), OUT (JSON files, default a fresh /tmp dir), MPIRUN, PY (python3).
# Problem: S = 1K x P tokens, 8 query / 2 K/V heads, dim 64, bf16, causal; zigzag with every
# algorithm, and at P = 4 also the contiguous layout for ring, pass-Q and all-gather; one compute
# thread per rank; P = 4 runs the hybrid as 2 groups of 2.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RANKS=${RANKS:-"2 3 4"}
MODES=${MODES:-threads}
REPEATS=${REPEATS:-2}
ITERS=${ITERS:-3}
OUT=${OUT:-$(mktemp -d /tmp/attnccl-planval.XXXXXX)}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --bind-to none"}
PY=${PY:-python3}
mkdir -p "$OUT"
PLAN="$BUILD/tools/attnccl-plan"
for t in "$PLAN" "$BUILD/perf/ring_attn_perf"; do
  [ -x "$t" ] || { echo "run_planner_validation: $t missing (build with ATTNCCL_BUILD_PERF=ON first)" >&2; exit 2; }
done

# "tiles A / B TFLOP/s" of one calibration (forward / backward, one thread).
tile_rates() { sed -n 's/.*tiles \([0-9.e+-]*\) \/ \([0-9.e+-]*\) TFLOP.*/\1 \2/p'; }

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')" > "$OUT/header.txt"
for P in $RANKS; do
  G=0
  [ "$P" = 4 ] && G=2
  prob="-H 8 -K 2 -D 64 -d bf16 -C 1"
  S=$((1024 * P))
  # Calibration alone, and while P - 1 other cores (at most the other cores) run tiles too, as
  # the other ranks do during a run (one single-thread attn_kernel_perf each), for the record.
  alone=$("$PLAN" -p this-machine -R "$P" -T 1 -s "$S" $prob | tile_rates)
  loads=()
  for i in $(seq $(( P - 1 < $(nproc) - 1 ? P - 1 : $(nproc) - 1 ))); do
    "$BUILD/perf/attn_kernel_perf" -b 4K -e 4K $prob -B both -n 100000 -w 0 -t 1 > /dev/null 2>&1 &
    loads+=($!)
  done
  sleep 1
  loaded=$("$PLAN" -p this-machine -R "$P" -T 1 -s "$S" $prob | tile_rates)
  for pid in "${loads[@]}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
  echo "calib $P $alone $loaded ${#loads[@]}" >> "$OUT/calibration.txt"
  layouts="zigzag"
  [ "$P" = 4 ] && layouts="zigzag contiguous"
  for layout in $layouts; do
    algos="ring passq allgather ulysses hybrid"
    [ "$layout" = contiguous ] && algos="ring passq allgather"
    for mode in $MODES; do
      tag="${mode}_${P}_${layout}"
      "$PLAN" -p this-machine -R "$P" -T 1 -s "$S" $prob -l "$layout" -G "$G" -J "$OUT/${tag}_plan.json" > /dev/null
      for algo in $algos; do
        for rep in $(seq "$REPEATS"); do
          args="-T 1 -b $S -e $S $prob -l $layout -G $G -n $ITERS -w 1 -c 0 -E 0 -J $OUT/${tag}_${algo}_${rep}.json"
          echo "== $mode P $P $layout $algo run $rep (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
          if [ "$mode" = procs ]; then
            $MPIRUN -np "$P" "$BUILD/perf/${algo}_attn_perf" $args > /dev/null
          else
            "$BUILD/perf/${algo}_attn_perf" -r "$P" $args > /dev/null
          fi
        done
      done
    done
  done
done

"$PY" - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
print(open(os.path.join(out, "header.txt")).read().strip())
print("# calibration tile rate (TFLOP/s fwd / bwd, one thread): alone, and while n other cores compute tiles")
for line in open(os.path.join(out, "calibration.txt")):
    f = line.split()
    P, alone, loaded, n = f[1], [float(x) for x in f[2:4]], [float(x) for x in f[4:6]], f[6]
    print("#   P %s: alone %.4f / %.4f, with %s other(s) computing %.4f / %.4f (x %.2f / %.2f)" %
          (P, alone[0], alone[1], n, loaded[0], loaded[1], loaded[0] / alone[0], loaded[1] / alone[1]))
print("| mode | P | layout | algorithm | fwd pred / meas (ms) | ratio | bwd pred / meas (ms) | ratio | within 25% |")
print("|---|---|---|---|---|---|---|---|---|")
order = {"ring": 0, "passq": 1, "allgather": 2, "ulysses": 3, "hybrid": 4}
plans = sorted(glob.glob(os.path.join(out, "*_plan.json")))
misses = 0
for pf in plans:
    tag = os.path.basename(pf)[:-len("_plan.json")]
    mode, P, layout = tag.split("_")
    plan = json.load(open(pf))["rows"][0]
    pred = {a["algorithm"]: a for a in plan["algorithms"]}
    for algo in sorted(order, key=order.get):
        runs = glob.glob(os.path.join(out, "%s_%s_*.json" % (tag, algo)))
        rows = [json.load(open(r))["rows"][0] for r in runs]
        rows = [r for r in rows if r.get("fwd_time_us") and r.get("bwd_time_us")]
        if not rows or algo not in pred:
            continue
        mf = min(r["fwd_time_us"] for r in rows) / 1e3
        mb = min(r["bwd_time_us"] for r in rows) / 1e3
        pfw, pbw = pred[algo]["fwd"]["seconds"] * 1e3, pred[algo]["bwd"]["seconds"] * 1e3
        ok = abs(pfw / mf - 1) <= 0.25 and abs(pbw / mb - 1) <= 0.25
        misses += not ok
        print("| %s | %s | %s | %s | %.1f / %.1f | %.3f | %.1f / %.1f | %.3f | %s |" %
              (mode, P, layout, algo, pfw, mf, pfw / mf, pbw, mb, pbw / mb, "yes" if ok else "**no**"))
print("# %d configuration(s) outside +-25%%; JSON in %s" % (misses, out))
EOF
