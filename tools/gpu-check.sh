#!/usr/bin/env bash
# tools/gpu-check.sh: every GPU check of the project (docs/design.md, "Targets"), in one call
# (fits the 10-minute limit of one command on the project's H100/H200 machines):
#   1. the device (nvidia-smi) and a CUDA build for its architecture (time printed);
#   2. the GPU test suites (ctest -L cuda: 1-4 ranks on one GPU, every algorithm, fp64 checks)
#      and the CPU-run checks of the GPU code (emulated kernels, device programs, host logic);
#      FULL=1 adds the rest of the test suite;
#   3. the GPU perf runs: forward bf16 d128 16K tokens (non-causal and causal) and backward,
#      d64, PyTorch SDPA on the same GPU when torch is there, and 4 ranks on one GPU running the
#      causal zigzag ring against one rank;
#   4. a summary against the targets: >= 370 TFLOP/s forward bf16 d128 non-causal 16K, then
#      >= 0.9x SDPA; 4-rank causal zigzag ring <= 1.15x one rank.
# Record the output, with the device name, in perf/RESULTS.md.
#
# Environment: BUILD_DIR (default build-gpu), JOBS (default: all cores), ARCHS (default: the
# device's compute capability), SKIP_BUILD=1, FULL=1, PERF=0 (tests only).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-gpu}
jobs=${JOBS:-$(nproc)}
status=0

echo "== device"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -1 | tr -d '. ')
else
  echo "nvidia-smi not found"
  cap=""
fi
archs=${ARCHS:-${cap:-"80;90"}}

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== build (CUDA architectures $archs, $jobs jobs)"
  t0=$(date +%s)
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DATTNCCL_WITH_CUDA=ON -DATTNCCL_CUDA_ARCHS="$archs" > "$build.cmake.log" 2>&1 \
    || { cat "$build.cmake.log"; exit 1; }
  cmake --build "$build" -j "$jobs" > "$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi

echo "== GPU test suites"
ctest --test-dir "$build" -L cuda --output-on-failure --timeout 300 || status=1
echo "== CPU checks of the GPU code (emulated kernels, device programs, host logic)"
ctest --test-dir "$build" -R 'test_gpu_|test_dev_program' --output-on-failure --timeout 300 -j 4 || status=1
if [[ "${FULL:-0}" == 1 ]]; then
  echo "== the rest of the test suite"
  ctest --test-dir "$build" -LE cuda -E 'test_gpu_|test_dev_program' --output-on-failure --timeout 900 \
    -j "$(( jobs > 2 ? jobs / 2 : 1 ))" || status=1
fi

results=$(mktemp)
if [[ "${PERF:-1}" == 1 ]]; then
  perf=$build/perf/gpu_attn_perf
  run() { echo "\$ $*"; "$@" | tee -a "$results"; [[ ${PIPESTATUS[0]} == 0 ]] || status=1; }
  echo "== perf: one rank, whole sequence"
  run "$perf" -b 16K -e 16K -H 16 -K 16 -D 128 -d bf16 -C 0 -B fwd -n 20 -w 5
  run "$perf" -b 16K -e 16K -H 16 -K 16 -D 128 -d bf16 -C 1 -B both -n 10 -w 3
  run "$perf" -b 16K -e 16K -H 32 -K 32 -D 64 -d bf16 -C 0 -B fwd -n 20 -w 5
  run "$perf" -b 4K -e 16K -f 2 -H 16 -K 4 -D 128 -d fp16 -C 1 -B both -n 10 -w 3
  echo "== perf: PyTorch SDPA on the same GPU"
  python3 tools/gpu_sdpa_bench.py --seqlen 16384 --heads 16 --dim 128 --dtype bf16 --causal 0 --dir fwd \
    | tee -a "$results"
  python3 tools/gpu_sdpa_bench.py --seqlen 16384 --heads 16 --dim 128 --dtype bf16 --causal 1 --dir both \
    | tee -a "$results"
  echo "== perf: 4 ranks on one GPU, causal zigzag ring, against one rank"
  run "$perf" -r 4 -a ring -l zigzag -C 1 -b 16K -e 16K -H 16 -K 16 -D 128 -d bf16 -B both -n 10 -w 3 -1 1
  run "$perf" -r 4 -a passq -l contiguous -C 1 -b 16K -e 16K -H 16 -K 16 -D 128 -d bf16 -B fwd -n 10 -w 3 -1 1
  run "$perf" -r 4 -a ulysses -l zigzag -C 1 -b 16K -e 16K -H 16 -K 16 -D 128 -d bf16 -B both -n 10 -w 3 -1 1
fi

echo "== summary against the GPU targets (docs/design.md)"
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p"; }
pick() { grep "^#result tool=$1 " "$results" | grep -- "$2" | head -1; }
ours=$(pick gpu_attn_perf 'ranks=1 .*seqlen=16384 heads=16 kvheads=16 dim=128 dtype=bf16 mask=full dir=fwd' | field tflops)
sdpa=$(pick sdpa 'seqlen=16384 heads=16 dim=128 dtype=bf16 mask=full dir=fwd' | field tflops)
ring=$(pick gpu_attn_perf 'ranks=4 algo=ring layout=zigzag .*mask=causal dir=fwd' | field ratio)
awk -v ours="${ours:-}" -v sdpa="${sdpa:-}" -v ring="${ring:-}" 'BEGIN {
  if (ours != "") {
    met = (ours + 0 >= 370) ? "MET" : "NOT MET"
    printf "fwd bf16 d128 non-causal 16K: %.1f TFLOP/s (target >= 370): %s\n", ours, met
  } else print "fwd bf16 d128 non-causal 16K: no result"
  if (ours != "" && sdpa != "") {
    r = ours / sdpa
    met = (r >= 0.9) ? "MET" : "NOT MET"
    printf "against SDPA %.1f TFLOP/s: %.2fx (target >= 0.9x): %s\n", sdpa, r, met
  } else print "against SDPA: not measured (torch missing?)"
  if (ring != "") {
    met = (ring + 0 <= 1.15) ? "MET" : "NOT MET"
    printf "4 ranks causal zigzag ring / one rank: %.3f (target <= 1.15): %s\n", ring, met
  } else print "4 ranks causal zigzag ring: no result"
}'
rm -f "$results"
echo "gpu-check: $([[ $status == 0 ]] && echo "tests and runs passed" || echo "FAILURES above")"
exit $status
