// One rank's schedule compiled for execution: every item a round touches resolved to where it
// lives (the rank's own tensors and accumulators, or an offset in the scratch arena), slots
// reused when their lifetimes do not overlap (so the ring keeps at most two K/V blocks), and
// the merges that run at the end of each round.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attn/items.h"
#include "attn/schedule.h"

namespace attnccl {
namespace attn {

struct ItemRef {
  ItemId item;         // the rows wanted
  ItemId stored;       // what the slot holds (the whole item when a part is read from it)
  bool local = false;  // this rank's tensors (Q, KV) or accumulators (Out, DQ, DKV of its tokens)
  size_t offset = 0;   // arena offset when not local
  bool init = false;   // first write to a new accumulator slot: clear before use (tasks) / copy (merges)
  // Resolved once by compilePlan, so a cached plan's calls do no per-item layout work
  // (attn/plan_cache.h): the rows of `item` in its origin's tokens, [rowBegin, rowEnd), and the
  // layout of `stored` (its rows and segment sizes; slotSegments forms the pointers inline).
  int64_t rowBegin = 0, rowEnd = 0;
  ItemLayout layout;
};

struct PlannedTransfer {
  ItemId item;
  int peer = 0;
  bool send = false;
  ItemRef ref;
};

struct PlannedTask {
  ItemRef q, kv;
  ItemRef out;  // forward: (O, LSE) accumulator; backward: dQ accumulator
  ItemRef dkv;  // backward only
};

struct PlannedMerge {
  ItemRef from;  // received slot
  ItemRef into;  // home accumulator (local) or this rank's accumulator slot
};

struct PlannedRound {
  std::vector<PlannedTransfer> transfers;
  std::vector<PlannedTask> tasks;
  std::vector<PlannedMerge> merges;
};

struct Plan {
  std::vector<PlannedRound> rounds;
  size_t arenaBytes = 0;
  int peakKvSlots = 0;     // most K/V blocks held at once (received, not own)
  size_t maxRoundOps = 0;  // most transport operations (segments) one round posts
};

Plan compilePlan(const Problem& p, const Schedule& s, int rank);

}  // namespace attn
}  // namespace attnccl
