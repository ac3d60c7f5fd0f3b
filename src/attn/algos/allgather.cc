// Fused gather-scatter (LSS Transformer; Llama-3 style context parallelism).
//
// Round 0 gathers every key/value block a rank can see in one fused exchange (K|V in one buffer
// per block, all blocks posted together) while the rank computes its own block. Round 1 computes
// against the gathered blocks. Backward: round 1 produces fp32 dK|dV partials of the gathered
// blocks, and round 2 reduce-scatters them home in one fused exchange.
//
//   round 0: KV(j) -> every rank that sees it     | tiles (r, r)
//   round 1:                                       | tiles (r, j) for every gathered j
//   round 2: DKV(j) partials -> j (summed there)   |                       (backward only)
//
// Only the blocks a rank can see reach it (causal: the earlier ranks' blocks; windows: the
// neighbours'), which is what makes it cheap when K/V are small (GQA).
#include "attn/algos/algos.h"

namespace attnccl {
namespace attn {

Schedule allGatherSchedule(const Problem& p, bool backward) {
  const int P = p.nranks;
  Schedule s;
  s.algorithm = "allgather";
  s.backward = backward;
  s.ranks.resize(P);
  NeedMatrix need(p);
  for (int r = 0; r < P; ++r) {
    const ItemId q{ItemKind::kQ, r, 0, 1};
    if (need(r, r)) roundOf(s.ranks[r], 0).tasks.push_back(Task{q, r});
    for (int j = 0; j < P; ++j) {
      if (j == r || !need(r, j)) continue;
      addTransfer(s, 0, j, r, ItemId{ItemKind::kKV, j, 0, 1});
      roundOf(s.ranks[r], 1).tasks.push_back(Task{q, j});
      if (backward) addTransfer(s, 2, r, j, ItemId{ItemKind::kDKV, j, 0, 1});
    }
  }
  return s;
}

}  // namespace attn
}  // namespace attnccl
