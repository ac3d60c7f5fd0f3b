// hybrid_attn_perf: hybrid: head all-to-all inside groups of -G ranks, ring across groups.
// Flags, columns and the check: perf/harness/attn_tool.h.
//
//   hybrid_attn_perf -r 2 -T 1 -b 2K -e 8K -f 2 -H 8 -K 2 -D 64 -d bf16 -C 1 -l zigzag -B both
//   mpirun -np 2 hybrid_attn_perf -b 2K -e 8K          (2 processes, MPI bootstrap)
//   hybrid_attn_perf -r 4 -T 1 -G 2 -b 2K -e 8K -H 8 -K 2 -C 1   (2 groups of 2)
#include "harness/attn_tool.h"

int main(int argc, char** argv) { return perf::runAttnTool("hybrid_attn_perf", attncclAlgoHybrid, argc, argv); }
