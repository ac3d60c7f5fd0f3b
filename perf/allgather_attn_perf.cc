// allgather_attn_perf: fused gather-scatter: K/V gathered in one collective, dK/dV reduce-scattered in one.
// Flags, columns and the check: perf/harness/attn_tool.h.
//
//   allgather_attn_perf -r 2 -T 1 -b 2K -e 8K -f 2 -H 8 -K 2 -D 64 -d bf16 -C 1 -l zigzag -B both
//   mpirun -np 2 allgather_attn_perf -b 2K -e 8K          (2 processes, MPI bootstrap)
#include "harness/attn_tool.h"

int main(int argc, char** argv) { return perf::runAttnTool("allgather_attn_perf", attncclAlgoAllGather, argc, argv); }
