// Where each position of a sharded KV cache lives: owner(position) and the slot inside the
// owner's shard. This header is the placement policy's one definition; the cache, its tests,
// the perf tool and the planner (tools/plan) query it instead of re-deriving the rule.
//
//   round-robin (block B, P ranks): block b = p / B lives on rank b mod P, so new tokens spread
//     over every rank one block at a time
//         positions  [ 0..B) [B..2B) [2B..3B) [3B..4B) [4B..5B) ...
//         rank          0      1       2        0        1      (P = 3)
//     slot of p on its owner: (b / P) * B + p mod B
//   contiguous (P ranks): rank r holds piece r of [0, capacity), split as evenly as possible
//     (the first capacity mod P pieces one longer); slot = p - begin(r)
//
// Both are monotone: a rank's slots hold its positions in increasing order, so the positions
// of rank r below a length L are exactly its slots [0, ownedBelow(r, L)).
#pragma once

#include <cstdint>

#include "attnccl.h"

namespace attnccl {
namespace attn {

struct KvPlacement {
  attncclKvPlacement_t kind = attncclKvPlaceRoundRobin;
  int nranks = 1;
  int64_t capacity = 0;
  int64_t block = 1;  // round-robin block (tokens); unused by contiguous

  int owner(int64_t pos) const;
  int64_t slot(int64_t pos) const;  // index in the owner's shard
  // Positions of `rank` inside [0, length): a count, and the slots [0, count) hold them.
  int64_t ownedBelow(int rank, int64_t length) const;
  int64_t shardCapacity(int rank) const { return ownedBelow(rank, capacity); }
  int64_t position(int rank, int64_t slot) const;  // inverse of (owner, slot)
};

// The library's block when the descriptor says 0: 256 tokens (a paged cache's usual page),
// smaller for a small cache so that every rank still gets several blocks:
//   min(256, max(16, ceil(capacity / (4 P)))).
int64_t defaultKvBlockTokens(int64_t capacity, int nranks);

}  // namespace attn
}  // namespace attnccl
