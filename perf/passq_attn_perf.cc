// passq_attn_perf: pass-Q: queries travel to the K/V owners, partial O/LSE (dQ) come back and merge.
// Flags, columns and the check: perf/harness/attn_tool.h.
//
//   passq_attn_perf -r 2 -T 1 -b 2K -e 8K -f 2 -H 8 -K 2 -D 64 -d bf16 -C 1 -l zigzag -B both
//   mpirun -np 2 passq_attn_perf -b 2K -e 8K          (2 processes, MPI bootstrap)
#include "harness/attn_tool.h"

int main(int argc, char** argv) { return perf::runAttnTool("passq_attn_perf", attncclAlgoPassQ, argc, argv); }
