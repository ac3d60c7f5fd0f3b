// How the heads of an attention call are split over the G members of a head-parallel group
// (Ulysses, and the first level of the hybrid), and over the pipeline chunks of each member.
//
//   Q heads:   member m holds attncclHeadRange(Hq, G, m): contiguous, as even as possible
//              (members beyond Hq hold none).
//   K/V heads: exactly those its Q heads use, [qFirst/g, qLast/g] with g = Hq/Hkv. K/V are never
//              expanded to Hq heads; a K/V head whose Q group straddles members goes to each of
//              them ("shared"), and its dK/dV come home as the sum of their contributions.
//
//   Hq = 8, Hkv = 2, G = 3 (g = 4):   Q  m0: 0 1 2 | m1: 3 4 5 | m2: 6 7
//                                     KV m0: 0     | m1: 0 1   | m2: 1      (both shared)
//
// Chunks pipeline a member's heads: chunk c holds part c of its Q range (even pieces) and the
// K/V heads that part uses. A K/V head travels with the first chunk that uses it ("new") and its
// gradient goes home after the last chunk that uses it ("done").
#pragma once

#include <vector>

#include "attn/algos/head_exchange.h"
#include "attn/tile.h"

namespace attnccl {
namespace attn {

class HeadSplit {
 public:
  HeadSplit(int numHeadsQ, int numHeadsKV, int members, int chunks);

  int members() const { return members_; }
  int chunks() const { return chunks_; }
  int group() const { return group_; }

  HeadRange q(int m) const;
  HeadRange kv(int m) const;
  HeadRange qChunk(int m, int c) const;
  HeadRange kvNeed(int m, int c) const;  // K/V heads chunk c attends with
  HeadRange kvNew(int m, int c) const;   // of those, the ones no earlier chunk brought
  HeadRange kvDone(int m, int c) const;  // K/V heads no later chunk uses
  // kvDone split into its shared first head, exclusive middle, shared last head (each maybe empty).
  HeadRange kvDoneSharedLo(int m, int c) const;
  HeadRange kvDoneExclusive(int m, int c) const;
  HeadRange kvDoneSharedHi(int m, int c) const;
  bool kvShared(int h) const { return shared_[h] != 0; }
  bool anyShared() const;

  // The member's heads (chunk c, or all chunks with c = -1) as a tile HeadMap.
  HeadMap map(int m, int c = -1) const;

  // One range per member, for HeadField::ranges.
  std::vector<HeadRange> all(HeadRange (HeadSplit::*fn)(int, int) const, int c) const;
  std::vector<HeadRange> allQ() const;
  std::vector<HeadRange> allKV() const;

 private:
  HeadRange kvOfQ(HeadRange q) const;
  int hq_, hkv_, group_, members_, chunks_;
  std::vector<char> shared_;
};

}  // namespace attn
}  // namespace attnccl
