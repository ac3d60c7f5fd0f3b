// auto_attn_perf: attncclAlgoAuto: the library's cost model picks per call; the fwd_algo/bwd_algo columns say which.
// Flags, columns and the check: perf/harness/attn_tool.h.
//
//   auto_attn_perf -r 2 -T 1 -b 2K -e 8K -f 2 -H 8 -K 2 -D 64 -d bf16 -C 1 -l zigzag -B both
//   mpirun -np 2 auto_attn_perf -b 2K -e 8K          (2 processes, MPI bootstrap)
//   ATTNCCL_ALGO=ring auto_attn_perf ...   (the override the library honours)
#include "harness/attn_tool.h"

int main(int argc, char** argv) { return perf::runAttnTool("auto_attn_perf", attncclAlgoAuto, argc, argv); }
