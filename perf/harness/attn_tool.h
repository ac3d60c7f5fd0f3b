// The attention perf tools (ring_attn_perf, passq_attn_perf, allgather_attn_perf,
// ulysses_attn_perf, hybrid_attn_perf, auto_attn_perf): one sweep over global sequence lengths,
// forward and/or backward of attncclAttnForward/Backward with one algorithm, checked against the
// one-rank result (perf/harness/attn_case.h). A tool's file only names its algorithm.
//
// Flags (besides the common ones of harness/options.h; -b/-e count tokens of the whole
// sequence): -H heads, -K K/V heads, -D head dim, -C 0|1 causal, -l contiguous|zigzag|striped,
// -W left window (-1 none), -B fwd|bwd|both, -E 0|1 efficiency column, -G hybrid group size,
// -O 0|1 host overhead columns.
//
// Columns: seqlen heads kvheads dim dtype mask layout, then per direction (fwd_, bwd_):
//   time     us per call, slowest rank
//   TFLOP/s  4 Sq Sk D Hq over the visible pairs (backward 2.5x), all ranks together
//   sent     bytes one rank sends per call (mean over ranks, from attncclCommGetStats)
//   busbw    sent / time (GB/s): the per-rank link bandwidth the call used on average
//   balance  slowest rank's tile seconds / mean rank's (1 = perfectly balanced compute)
//   1rank    t(1 rank, P x T threads, whole sequence): the one-rank reference, timed (us)
//   eff      distributed efficiency 1rank / time, i.e. docs/design.md's t1 / (P tP) with the same
//            total compute resources (P ranks x T threads against one rank with P x T)
//   host     (-O 1) host overhead per call (us): wall time less tiles and transfer waits, mean
//            over the timed calls, slowest rank; host50 the same by the median; lib50 the median
//            less the time posting transfers (the transport's share, attn_case.h).
//            With a tiny sequence it is the library's per-call host work, e.g.
//              ring_attn_perf -r 8 -T 1 -b 64 -e 64 -n 2000 -w 200 -c 0 -E 0 -O 1 -B fwd
//   algo     (auto_attn_perf) the algorithm auto chose
// and #wrong (ERR when a call failed).
#pragma once

#include "attnccl.h"

namespace perf {

// main() of an attention tool.
int runAttnTool(const char* name, attncclAlgo_t algo, int argc, char** argv);

}  // namespace perf
