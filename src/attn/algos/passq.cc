// Q-send / result-return (DistAttn / LightSeq; pass-Q for inference).
//
// Queries travel to the owners of the keys; the partial (O, LSE) comes back and is merged by the
// query's owner (backward: dQ comes back, dK/dV stay with the keys' owner).
//
// Causal, contiguous layout: DistAttn's balanced schedule. The work is the block pairs (i, j),
// i >= j (queries of rank i, keys of rank j). Round 0 computes the diagonal. In round d
// (1 <= d < P/2) every rank computes exactly one pair of distance d or P-d:
//   rank r >= d: pair (r, r-d)     keys of r-d come to r          (pass-KV)
//   rank r <  d: pair (r+P-d, r)   queries of r+P-d come to r,    (pass-Q, the idle early
//                                  the partial result goes back    ranks help the late ones)
// For even P, the P/2 pairs of distance P/2 are split by query rows: the first half is computed
// by the query owner (pass-KV), the second by the key owner (pass-Q). So every rank does the
// same work in every round and the causal ring of P steps shrinks to floor(P/2) + 1 rounds:
//
//   P = 4        round 0     round 1              round 2
//   rank 0       (0,0)       (3,0) Q3 -> 0        (2,0) rows 2/2, Q2 -> 0
//   rank 1       (1,1)       (1,0) KV0 -> 1       (3,1) rows 2/2, Q3 -> 1
//   rank 2       (2,2)       (2,1) KV1 -> 2       (2,0) rows 1/2, KV0 -> 2
//   rank 3       (3,3)       (3,2) KV2 -> 3       (3,1) rows 1/2, KV1 -> 3
//
// Other layouts and masks: pure pass-Q by distance. In round d rank r computes the queries of
// rank r-d against its own keys (when they see any), and returns the partial. For a full mask
// every rank does one block pair per round.
//
// Data move one round ahead of their use; partials go home the round after they are computed.
#include "attn/algos/algos.h"

namespace attnccl {
namespace attn {
namespace {

// Round d computes pair (qOwner rows, kvOwner) on rank `at`, moving what `at` lacks.
void addPair(Schedule& s, const NeedMatrix& need, int d, int at, int qOwner, int kvOwner, int part, int parts) {
  if (!need(qOwner, kvOwner)) return;
  const ItemId q{ItemKind::kQ, qOwner, part, parts};
  roundOf(s.ranks[at], d).tasks.push_back(Task{q, kvOwner});
  if (at != kvOwner) addTransfer(s, d - 1, kvOwner, at, ItemId{ItemKind::kKV, kvOwner, 0, 1});
  if (at != qOwner) {
    addTransfer(s, d - 1, qOwner, at, q);
    ItemId result = q;
    result.kind = s.backward ? ItemKind::kDQ : ItemKind::kOut;
    addTransfer(s, d + 1, at, qOwner, result);
  }
  if (s.backward && at != kvOwner) addTransfer(s, d + 1, at, kvOwner, ItemId{ItemKind::kDKV, kvOwner, 0, 1});
}

}  // namespace

Schedule passQSchedule(const Problem& p, bool backward) {
  const int P = p.nranks;
  Schedule s;
  s.algorithm = "passq";
  s.backward = backward;
  s.ranks.resize(P);
  NeedMatrix need(p);
  for (int r = 0; r < P; ++r) {
    if (need(r, r)) roundOf(s.ranks[r], 0).tasks.push_back(Task{ItemId{ItemKind::kQ, r, 0, 1}, r});
  }
  const bool balanced = p.shape.causal && p.shape.layout == attncclLayoutContiguous;
  if (balanced) {
    for (int d = 1; 2 * d < P; ++d) {
      for (int r = 0; r < P; ++r) {
        if (r >= d) {
          addPair(s, need, d, r, r, r - d, 0, 1);
        } else {
          addPair(s, need, d, r, r + P - d, r, 0, 1);
        }
      }
    }
    if (P % 2 == 0 && P >= 2) {
      const int d = P / 2;
      for (int r = 0; r < P; ++r) {
        if (r >= d) {
          addPair(s, need, d, r, r, r - d, 0, 2);
        } else {
          addPair(s, need, d, r, r + d, r, 1, 2);
        }
      }
    }
  } else {
    for (int d = 1; d < P; ++d) {
      for (int r = 0; r < P; ++r) addPair(s, need, d, r, (r - d + P) % P, r, 0, 1);
    }
  }
  return s;
}

}  // namespace attn
}  // namespace attnccl
