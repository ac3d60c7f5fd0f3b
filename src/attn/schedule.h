// Schedules are data. An algorithm that moves tokens (ring, pass-Q, gather-scatter, and the ring
// level of the hybrid) is a pure function from (problem, rank count) to every rank's rounds; the
// verifier checks them without running anything, the CPU executor runs them, the planner costs
// them.
//
// Items are the data that can travel, each named by kind and the rank whose tokens it covers
// (and a part of those tokens, so a block pair can be split):
//   Q   queries (backward: with dO, LSE and Delta)     KV   keys and values of a rank
//   Out partial fp32 (O, LSE) of some rank's queries   DQ   partial fp32 dQ
//   DKV partial fp32 (dK, dV) of some rank's keys
// A task computes one tile: queries of item q against the keys of rank kvOrigin. Its results
// accumulate where the data belongs: into this rank's own accumulators when it owns the tokens,
// else into an Out/DQ/DKV item that must later travel home (items arriving home are merged;
// items arriving elsewhere add into that rank's item of the same name, as dK/dV do on the ring).
//
// Round semantics (what the executor does and the verifier checks), for round k of a rank:
//   1. post the round's receives and sends (a sent item must be present: local, received in an
//      earlier round, or produced by a task of an earlier round);
//   2. run the round's tasks (their inputs are local or were received in an earlier round)
//      while the transfers progress;
//   3. wait for the round's transfers; merge items that arrived home.
// A transfer appears in the sender's and the receiver's schedule in the same round.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/problem.h"

namespace attnccl {
namespace attn {

enum class ItemKind : uint8_t { kQ = 0, kKV = 1, kOut = 2, kDQ = 3, kDKV = 4 };
const char* itemKindName(ItemKind k);

struct ItemId {
  ItemKind kind = ItemKind::kQ;
  int origin = 0;  // the rank whose tokens the item covers
  int part = 0;    // rows partRows(tokens of origin, part, parts)
  int parts = 1;

  bool operator==(const ItemId& o) const {
    return kind == o.kind && origin == o.origin && part == o.part && parts == o.parts;
  }
  bool operator<(const ItemId& o) const;
  std::string str() const;
};

struct Transfer {
  ItemId item;
  int peer = 0;
  bool send = false;
};

struct Task {
  ItemId q;          // kind kQ: which queries (origin + part)
  int kvOrigin = 0;  // keys/values of this rank
};

struct Round {
  std::vector<Transfer> transfers;
  std::vector<Task> tasks;
};

struct RankSchedule {
  std::vector<Round> rounds;
};

struct Schedule {
  const char* algorithm = "";
  bool backward = false;
  std::vector<RankSchedule> ranks;  // one per rank of the problem
  int numRounds() const;
};

// The message tag of an item (unique per item name, so per-(peer, tag) FIFO matching pairs the
// right transfers even when ranks post them in different orders).
uint32_t itemTag(const ItemId& item);

}  // namespace attn
}  // namespace attnccl
