// Ulysses (head all-to-all) and the hybrid (head all-to-all inside groups of G ranks, ring
// across groups) as programs of the multi-rank GPU executor: the same operations as
// attn/program/dev_program.h, the same CPU interpreter and race checker in the tests.
//
// Member i of a head-parallel group holds the Q heads of attncclHeadRange(Hq, G, i) and the K/V
// heads they use (attn/algos/head_split.h) for every token of the group (Ulysses: the whole
// sequence), in position order, in its window. Inputs are pushed, results pulled, so every copy
// lands in a window or in the copier's own tensors:
//
//   compute: signal ready(1) to the group | record e0 | wait e1, data(1) from the group |
//            attention on my heads over the group's tokens          | signal data(V) | e2 |
//            wait e3, ready(V) from the group
//   copy:    wait e0 | per member t: wait t's ready(1), push my rows of t's heads into t's
//            window, signal data(1) | e1 |
//            wait e2 | per member t: wait t's data(V), pull my rows of t's results, signal
//            ready(V) | e3
//
// Ulysses attends with one local tile (V = 2). The hybrid runs the ring program of its member
// index across groups in the middle (groups as ranks, the group unions as their tokens, this
// member's heads), embedded with flag values 2..R+1, so V = 2 + the longest ring of any member
// index (every rank uses the same values). A run of head-side rows with a constant stride is one
// 2-D copy. Backward pushes Q, dO, K, V, LSE and Delta (Ulysses; the hybrid's ring computes Delta
// from pushed O rows itself) and pulls dQ (rounded on the head side) and fp32 dK/dV, summed over
// the members sharing a K/V head. No chunk pipelining yet (one exchange each way).
#pragma once

#include "attn/program/dev_program.h"
#include "attn/problem.h"

namespace attnccl {
namespace attn {
namespace gpu {

// p: the layout's problem over all P ranks (all heads).
DevProgram buildUlyssesProgram(const Problem& p, bool backward, int rank);
// Groups of G consecutive ranks (P % G == 0, 1 < G < P).
DevProgram buildHybridProgram(const Problem& p, bool backward, int rank, int G);

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
