// Schedules are checked without running them: the verifier over many problems (algorithms x
// layouts x masks x rank counts x lengths), balance where an algorithm promises it, the ring's
// memory bound, communication volumes against their formulas, and the verifier itself catching
// broken schedules.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "attn/algos/algos.h"
#include "attn/algos/registry.h"
#include "attn/items.h"
#include "attn/plan.h"
#include "attn/verify.h"

using namespace attnccl::attn;

namespace {

AttnShape shapeOf(int64_t S, bool causal, int64_t wl, int64_t wr, std::vector<int64_t> docs, attncclLayout_t layout,
                  int hq = 4, int hkv = 2, int d = 16) {
  AttnShape s;
  s.dtype = attncclBfloat16;
  s.seqLen = S;
  s.numHeadsQ = hq;
  s.numHeadsKV = hkv;
  s.headDim = d;
  s.layout = layout;
  s.causal = causal;
  s.windowLeft = wl;
  s.windowRight = wr;
  s.scale = 0.25f;
  s.cuSeqlens = {0};
  if (docs.empty()) docs = {S};
  for (int64_t len : docs) s.cuSeqlens.push_back(s.cuSeqlens.back() + len);
  return s;
}

// The token-schedule rows of the algorithm table: a new one is verified here without a change.
using Builder = std::function<Schedule(const Problem&, bool)>;
const std::vector<std::pair<const char*, Builder>>& builders() {
  static const std::vector<std::pair<const char*, Builder>> b = [] {
    std::vector<std::pair<const char*, Builder>> rows;
    for (const AlgoEntry& a : algorithms()) {
      if (a.schedule != nullptr) rows.push_back({a.name, a.schedule});
    }
    return rows;
  }();
  return b;
}

struct Mask {
  const char* name;
  bool causal;
  int64_t wl, wr;
  bool docs;
};

TEST(Schedules, VerifyEverywhere) {
  const Mask masks[] = {{"full", false, -1, -1, false},   {"causal", true, -1, -1, false},
                        {"window", false, 9, 4, false},   {"causal-window", true, 13, -1, false},
                        {"docs", true, -1, -1, true},     {"docs-window", false, 5, 7, true}};
  int checked = 0;
  for (const auto& b : builders()) {
    for (int P : {1, 2, 3, 4, 5, 8}) {
      for (attncclLayout_t layout : {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped}) {
        for (const Mask& m : masks) {
          for (int64_t S : {int64_t(1), int64_t(3), int64_t(7), int64_t(61), int64_t(200)}) {
            std::vector<int64_t> docs;
            if (m.docs && S >= 7) docs = {S / 3, S / 2 - S / 3, S - S / 2};
            Problem p = Problem::fromLayout(shapeOf(S, m.causal, m.wl, m.wr, docs, layout), P);
            for (bool bwd : {false, true}) {
              Schedule s = b.second(p, bwd);
              std::string e = verifySchedule(p, s);
              ASSERT_EQ(e, "") << b.first << " P=" << P << " layout=" << layout << " mask=" << m.name << " S=" << S;
              ++checked;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

// Visible pairs computed by each rank (its compute), over the whole schedule.
std::vector<int64_t> workPerRank(const Problem& p, const Schedule& s) {
  std::vector<int64_t> work(p.nranks, 0);
  for (int r = 0; r < p.nranks; ++r)
    for (const Round& round : s.ranks[r].rounds)
      for (const Task& t : round.tasks) {
        int64_t b, e;
        partRows(p.tokens[t.q.origin].size(), t.q.part, t.q.parts, &b, &e);
        work[r] += visiblePairs(p, p.tokens[t.q.origin], b, e, p.tokens[t.kvOrigin]);
      }
  return work;
}

double imbalance(const std::vector<int64_t>& w) {
  double mean = 0, mx = 0;
  for (int64_t x : w) {
    mean += static_cast<double>(x);
    mx = std::max(mx, static_cast<double>(x));
  }
  mean /= static_cast<double>(w.size());
  return mean > 0 ? mx / mean : 1.0;
}

TEST(Schedules, CausalBalance) {
  // The slowest rank's compute <= 1.1 x the mean for zigzag and striped rings and for pass-Q;
  // the contiguous ring is the unbalanced baseline (last rank ~2x the mean).
  for (int P : {2, 4, 8}) {
    const int64_t S = 8192;
    Problem zig = Problem::fromLayout(shapeOf(S, true, -1, -1, {}, attncclLayoutZigzag), P);
    Problem str = Problem::fromLayout(shapeOf(S, true, -1, -1, {}, attncclLayoutStriped), P);
    Problem con = Problem::fromLayout(shapeOf(S, true, -1, -1, {}, attncclLayoutContiguous), P);
    EXPECT_LE(imbalance(workPerRank(zig, ringSchedule(zig, false))), 1.1) << "zigzag P=" << P;
    EXPECT_LE(imbalance(workPerRank(str, ringSchedule(str, false))), 1.1) << "striped P=" << P;
    EXPECT_LE(imbalance(workPerRank(con, passQSchedule(con, false))), 1.1) << "passq P=" << P;
    if (P >= 4) EXPECT_GE(imbalance(workPerRank(con, ringSchedule(con, false))), 1.5) << "contiguous ring P=" << P;
  }
}

TEST(Schedules, PassQCausalTakesHalfTheRounds) {
  // DistAttn: floor(P/2) + 1 compute rounds (+1 round returning the last partials).
  for (int P : {2, 3, 4, 5, 8}) {
    Problem p = Problem::fromLayout(shapeOf(4096, true, -1, -1, {}, attncclLayoutContiguous), P);
    Schedule s = passQSchedule(p, false);
    int lastCompute = 0;
    for (const auto& r : s.ranks)
      for (size_t k = 0; k < r.rounds.size(); ++k)
        if (!r.rounds[k].tasks.empty()) lastCompute = std::max(lastCompute, static_cast<int>(k));
    EXPECT_EQ(lastCompute, P / 2) << "P=" << P;
    EXPECT_EQ(s.numRounds(), P / 2 + 2) << "P=" << P;
    // Every rank computes in every compute round (balanced, nobody idles).
    for (int k = 0; k <= P / 2; ++k)
      for (int r = 0; r < P; ++r) EXPECT_FALSE(s.ranks[r].rounds[k].tasks.empty()) << "P=" << P << " r=" << r;
  }
}

TEST(Schedules, RingKeepsAtMostTwoKvBlocks) {
  for (int P : {2, 3, 5, 8}) {
    for (bool bwd : {false, true}) {
      Problem p = Problem::fromLayout(shapeOf(512, false, -1, -1, {}, attncclLayoutZigzag), P);
      Schedule s = ringSchedule(p, bwd);
      for (int r = 0; r < P; ++r) {
        Plan plan = compilePlan(p, s, r);
        EXPECT_LE(plan.peakKvSlots, 2) << "P=" << P << " rank " << r;
        // Arena: two K/V blocks plus (backward) two travelling dK/dV accumulators, and change.
        size_t kv = 0, dkv = 0;
        for (int o = 0; o < P; ++o) {
          kv = std::max(kv, slotBytes(itemLayout(p, ItemId{ItemKind::kKV, o, 0, 1}, bwd)));
          dkv = std::max(dkv, slotBytes(itemLayout(p, ItemId{ItemKind::kDKV, o, 0, 1}, bwd)));
        }
        EXPECT_LE(plan.arenaBytes, 2 * kv + (bwd ? 3 * dkv : 0)) << "P=" << P << " bwd=" << bwd;
      }
    }
  }
}

// Bytes a schedule sends in total.
int64_t sentBytes(const Problem& p, const Schedule& s) {
  int64_t total = 0;
  for (const auto& r : s.ranks)
    for (const Round& round : r.rounds)
      for (const Transfer& t : round.transfers)
        if (t.send) total += static_cast<int64_t>(itemLayout(p, t.item, s.backward).bytes());
  return total;
}

TEST(Schedules, RingVolumeFormula) {
  // Full mask: every K/V block travels P-1 hops: P(P-1) * |KV block|. Causal contiguous: block b
  // travels to the last rank only: sum_b (P-1-b) hops.
  const int P = 4;
  const int64_t S = 400;  // 100 tokens per rank
  Problem full = Problem::fromLayout(shapeOf(S, false, -1, -1, {}, attncclLayoutContiguous), P);
  const int64_t kvBlock = static_cast<int64_t>(itemLayout(full, ItemId{ItemKind::kKV, 0, 0, 1}, false).bytes());
  EXPECT_EQ(sentBytes(full, ringSchedule(full, false)), P * (P - 1) * kvBlock);
  Problem causal = Problem::fromLayout(shapeOf(S, true, -1, -1, {}, attncclLayoutContiguous), P);
  EXPECT_EQ(sentBytes(causal, ringSchedule(causal, false)), (3 + 2 + 1 + 0) * kvBlock);
  // A window of 50 tokens only reaches the next rank: one hop per block but the last.
  Problem win = Problem::fromLayout(shapeOf(S, true, 50, -1, {}, attncclLayoutContiguous), P);
  EXPECT_EQ(sentBytes(win, ringSchedule(win, false)), (P - 1) * kvBlock);
  // Backward adds the fp32 dK/dV accumulators: one hop per visit (each visit sends it on).
  const int64_t dkv = static_cast<int64_t>(itemLayout(full, ItemId{ItemKind::kDKV, 0, 0, 1}, true).bytes());
  EXPECT_EQ(sentBytes(full, ringSchedule(full, true)), P * (P - 1) * (kvBlock + dkv));
}

TEST(Schedules, AllGatherAndPassQVolumeFormulas) {
  const int P = 4;
  const int64_t S = 400;
  Problem full = Problem::fromLayout(shapeOf(S, false, -1, -1, {}, attncclLayoutContiguous), P);
  const int64_t kv = static_cast<int64_t>(itemLayout(full, ItemId{ItemKind::kKV, 0, 0, 1}, false).bytes());
  const int64_t q = static_cast<int64_t>(itemLayout(full, ItemId{ItemKind::kQ, 0, 0, 1}, false).bytes());
  const int64_t out = static_cast<int64_t>(itemLayout(full, ItemId{ItemKind::kOut, 0, 0, 1}, false).bytes());
  // AllGather: each block to the P-1 others. Causal: block b to the ranks after it.
  EXPECT_EQ(sentBytes(full, allGatherSchedule(full, false)), P * (P - 1) * kv);
  Problem causal = Problem::fromLayout(shapeOf(S, true, -1, -1, {}, attncclLayoutContiguous), P);
  EXPECT_EQ(sentBytes(causal, allGatherSchedule(causal, false)), (3 + 2 + 1) * kv);
  // Pass-Q, full mask: every Q block to the P-1 others and the partial (O, LSE) back.
  EXPECT_EQ(sentBytes(full, passQSchedule(full, false)), P * (P - 1) * (q + out));
  // Pass-Q causal contiguous, P = 4: rounds 1..1 move one block per rank (3 KV + 1 Q with its
  // result), round 2 moves half-pairs: 2 KV blocks and 2 half Q blocks with their results.
  const int64_t qHalf = q / 2, outHalf = out / 2;
  EXPECT_EQ(sentBytes(causal, passQSchedule(causal, false)), 3 * kv + (q + out) + 2 * kv + 2 * (qHalf + outHalf));
}

// Mutations of a sound schedule that the verifier must catch.
TEST(Schedules, VerifierCatchesBrokenSchedules) {
  Problem p = Problem::fromLayout(shapeOf(64, true, -1, -1, {}, attncclLayoutZigzag), 4);
  {
    Schedule s = ringSchedule(p, false);
    auto& tr = s.ranks[1].rounds[0].transfers;
    tr.erase(std::find_if(tr.begin(), tr.end(), [](const Transfer& t) { return t.send; }));
    EXPECT_NE(verifySchedule(p, s).find("no matching transfer"), std::string::npos);
  }
  {
    Schedule s = ringSchedule(p, false);
    s.ranks[2].rounds[1].tasks.push_back(s.ranks[2].rounds[1].tasks[0]);
    EXPECT_NE(verifySchedule(p, s).find("twice"), std::string::npos);
  }
  {
    Schedule s = ringSchedule(p, false);
    s.ranks[3].rounds[2].tasks.clear();
    EXPECT_NE(verifySchedule(p, s).find("never computed"), std::string::npos);
  }
  {
    // Using a block in the round it arrives (before the transfer completes).
    Schedule s = ringSchedule(p, false);
    Task t = s.ranks[1].rounds[1].tasks[0];
    s.ranks[1].rounds[1].tasks.clear();
    s.ranks[1].rounds[0].tasks.push_back(t);
    EXPECT_NE(verifySchedule(p, s).find("before it has it"), std::string::npos);
  }
  {
    // A partial result that never goes home.
    Schedule s = passQSchedule(p, false);
    for (auto& r : s.ranks)
      for (auto& round : r.rounds)
        round.transfers.erase(std::remove_if(round.transfers.begin(), round.transfers.end(),
                                             [](const Transfer& t) { return t.item.kind == ItemKind::kOut; }),
                              round.transfers.end());
    EXPECT_NE(verifySchedule(p, s).find("never reach"), std::string::npos);
  }
}

}  // namespace
