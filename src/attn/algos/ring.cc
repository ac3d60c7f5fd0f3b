// Ring attention, pass-KV (Ring Attention; DistAttn's base schedule).
//
// Queries stay; key/value blocks travel to the next rank each round. Block b is at rank
// (b + t) mod P in round t and is computed there against the local queries:
//
//   round:     0        1        2        3            P = 4, block b = 0
//   rank 0   [KV0] ->
//   rank 1            [KV0] ->
//   rank 2                     [KV0] ->
//   rank 3                              [KV0]
//
// A block travels only as far as the last rank on its way that sees any of its keys (causal,
// windows and documents shorten the trip; nothing is sent that no one needs). With causal masks
// zigzag and striped layouts balance the work; the schedule is the same.
//
// Backward: the blocks travel again, and each visited rank adds its dK/dV contribution to the
// block's fp32 accumulator, which follows the block one round behind and goes home after the
// last visit (visitor at round t sends it in round t+1 to the next visitor, the last one home).
#include "attn/algos/algos.h"

namespace attnccl {
namespace attn {

Schedule ringSchedule(const Problem& p, bool backward) {
  const int P = p.nranks;
  Schedule s;
  s.algorithm = "ring";
  s.backward = backward;
  s.ranks.resize(P);
  NeedMatrix need(p);
  for (int b = 0; b < P; ++b) {
    const ItemId kv{ItemKind::kKV, b, 0, 1};
    if (need(b, b)) roundOf(s.ranks[b], 0).tasks.push_back(Task{ItemId{ItemKind::kQ, b, 0, 1}, b});
    int last = 0;  // the last step t (1..P-1) at which a rank needs block b
    for (int t = 1; t < P; ++t) {
      if (need((b + t) % P, b)) last = t;
    }
    std::vector<int> visits;
    for (int t = 1; t <= last; ++t) {
      int r = (b + t) % P;
      addTransfer(s, t - 1, (b + t - 1) % P, r, kv);  // posted at t-1, usable at t
      if (need(r, b)) {
        roundOf(s.ranks[r], t).tasks.push_back(Task{ItemId{ItemKind::kQ, r, 0, 1}, b});
        visits.push_back(t);
      }
    }
    if (!backward) continue;
    // dK/dV of block b: visitor i hands its accumulator to visitor i+1 (or home) a round later.
    const ItemId dkv{ItemKind::kDKV, b, 0, 1};
    for (size_t i = 0; i < visits.size(); ++i) {
      int from = (b + visits[i]) % P;
      int to = i + 1 < visits.size() ? (b + visits[i + 1]) % P : b;
      addTransfer(s, visits[i] + 1, from, to, dkv);
    }
  }
  return s;
}

}  // namespace attn
}  // namespace attnccl
