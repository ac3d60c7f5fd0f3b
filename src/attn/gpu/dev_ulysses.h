// Ulysses (head all-to-all) as a program of the multi-rank GPU executor (same operations as
// attn/gpu/dev_program.h, same CPU interpreter and race checker in the tests).
//
// Member m holds the Q heads of attncclHeadRange(Hq, P, m) and the K/V heads they use
// (attn/algos/head_split.h) for every token, in global position order, in its window. Inputs are
// pushed, results pulled, so every copy lands in a window or in the copier's own tensors:
//
//   compute: signal ready(1) to all | record e0                 | wait e1, data(1) from all |
//            attention over the whole sequence on m's heads      | signal data(2) to all | e2 |
//            wait e3, ready(2) from all
//   copy:    wait e0 | per member t: wait t's ready(1), push my rows of t's heads into t's
//            window at my tokens' positions, signal data(1) | e1 |
//            wait e2 | per member t: wait t's data(2), pull my rows of t's results, signal
//            ready(2) | e3
//
// A run of positions with a constant stride is one 2-D copy (contiguous and zigzag pieces,
// striped strides). Backward pushes Q, dO, K, V, LSE and Delta = rowsum(dO O) (computed here, on
// the sequence side) and pulls dQ (rounded on the head side) and fp32 dK/dV, summed over the
// members sharing a K/V head. No chunk pipelining yet (one exchange each way).
#pragma once

#include "attn/gpu/dev_program.h"
#include "attn/problem.h"

namespace attnccl {
namespace attn {
namespace gpu {

// p: the layout's problem over all P ranks (all heads).
DevProgram buildUlyssesProgram(const Problem& p, bool backward, int rank);

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
