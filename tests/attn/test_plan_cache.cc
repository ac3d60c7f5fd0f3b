// The cached plans of the token-schedule calls (src/attn/plan_cache.h): one communicator
// alternating several shapes (documents, windows, dtypes, layouts) and algorithms many times,
// each call checked against the fp64 reference and, bit for bit, against the first call of its
// shape (built fresh, as every call was before the cache); the cache's counters say it was hit;
// its bounds evict (entries and bytes) without changing a result; invalidation (what abort does)
// drops every entry. The LRU order itself is checked on the cache alone.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/comm_state.h"
#include "attn/desc.h"
#include "attn/plan_cache.h"
#include "comm/comm.h"
#include "support/dist_case.h"
#include "support/ranks.h"

using namespace attnccl_test;
using attnccl::attn::PlanCache;
using attnccl::attn::PlanCacheCounters;
using attnccl::test::format;

namespace {

PlanCache& plansOf(attncclComm_t comm) { return *attnccl::attn::attnState(comm).plans; }

// Rows pos[i] of a whole-sequence tensor of rowElems per row.
Tensor sliceRows(const Tensor& t, const std::vector<int64_t>& pos, int64_t rowElems) {
  Tensor out(t.dtype(), static_cast<int64_t>(pos.size()) * rowElems);
  for (size_t i = 0; i < pos.size(); ++i) {
    for (int64_t e = 0; e < rowElems; ++e) {
      out.set(static_cast<int64_t>(i) * rowElems + e, t.get(pos[i] * rowElems + e));
    }
  }
  return out;
}

std::string bytesOf(const Tensor& t) {
  const size_t es = t.dtype() == attncclFloat32 ? 4 : 2;
  return t.data() ? std::string(static_cast<const char*>(t.data()), static_cast<size_t>(t.numel()) * es) : "";
}

// This rank's forward and backward outputs of a case, as bytes (outputs poisoned first).
std::string runOnce(AttnCase& c, attncclComm_t comm, attncclAlgo_t algo, std::string* result) {
  const attncclAttnDesc_t& d = c.desc();
  const int64_t qRow = int64_t(d.numHeadsQ) * d.headDim, kRow = int64_t(d.numHeadsKV) * d.headDim;
  int n = 0, rank = 0;
  RK_OK(attncclCommCount(comm, &n));
  RK_OK(attncclCommUserRank(comm, &rank));
  int64_t T = 0;
  RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
  std::vector<int64_t> pos(static_cast<size_t>(T));
  RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
  Tensor q = sliceRows(c.q(), pos, qRow), k = sliceRows(c.k(), pos, kRow), v = sliceRows(c.v(), pos, kRow);
  Tensor dout = sliceRows(c.dout(), pos, qRow);
  Tensor out(d.dtype, T * qRow), dq(d.dtype, T * qRow), dk(d.dtype, T * kRow), dv(d.dtype, T * kRow);
  std::vector<float> lse(static_cast<size_t>(T) * d.numHeadsQ);
  poison(out);
  poison(lse);
  poison(dq);
  poison(dk);
  poison(dv);
  RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), out.data(), lse.data(), &d, algo, comm, nullptr));
  RK_OK(attncclAttnBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                            dv.data(), &d, algo, comm, nullptr));
  *result = bytesOf(out) + std::string(reinterpret_cast<const char*>(lse.data()), lse.size() * sizeof(float)) +
            bytesOf(dq) + bytesOf(dk) + bytesOf(dv);
  return "";
}

// Shapes that differ in one field each from the first, so every key is distinct.
std::vector<std::unique_ptr<AttnCase>> makeCases(uint64_t seed) {
  std::vector<CaseSpec> specs(4);
  for (CaseSpec& s : specs) {
    s.seqLen = 37;
    s.hq = 4;
    s.hkv = 2;
    s.dim = 16;
    s.causal = true;
  }
  specs[1].dtype = attncclBfloat16;  // dtype, documents with a two-sided window, zigzag
  specs[1].docLens = {10, 14, 13};
  specs[1].causal = false;
  specs[1].windowLeft = 5;
  specs[1].windowRight = 4;
  specs[1].layout = attncclLayoutZigzag;
  specs[2].dtype = attncclFloat16;  // dtype, layout, mask
  specs[2].layout = attncclLayoutStriped;
  specs[2].causal = false;
  specs[3].windowLeft = 9;  // only the window differs from specs[0]
  std::vector<std::unique_ptr<AttnCase>> cases;
  for (size_t i = 0; i < specs.size(); ++i) {
    cases.emplace_back(new AttnCase(specs[i], attnccl_test::subSeed(seed, i)));
    cases.back()->reference();
    cases.back()->referenceGrads();
  }
  return cases;
}

const attncclAlgo_t kAlgos[] = {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather};

std::string runRanksWithComm(int nranks, const std::function<std::string(attncclComm_t, int)>& body) {
  using attnccl::test::Mode;
  return attnccl::test::runRanks(nranks, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
    attncclComm_t comm = nullptr;
    RK_SUB(attnccl::test::initComm(&comm, rank, n, id));
    std::string bad = body(comm, rank);
    RK_OK(attncclCommDestroy(comm));
    return bad;
  });
}

// The same over communicators whose hybrid groups have G ranks (attncclConfig_t.hybridGroupSize).
std::string runRanksWithGroups(int nranks, int G, const std::function<std::string(attncclComm_t, int)>& body) {
  using attnccl::test::Mode;
  return attnccl::test::runRanks(nranks, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.transport = "shm";
    cfg.cpuThreads = 1;
    cfg.hybridGroupSize = G;
    attncclComm_t comm = nullptr;
    RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
    std::string bad = body(comm, rank);
    RK_OK(attncclCommDestroy(comm));
    return bad;
  });
}

}  // namespace

TEST(PlanCache, AlternatingShapesHitAndMatchTheReferenceAndTheFreshBuild) {
  const uint64_t seed = testSeed();
  auto cases = makeCases(seed);
  const int kReps = 3;
  const uint64_t keys = cases.size() * (sizeof(kAlgos) / sizeof(kAlgos[0])) * 2;  // x forward, backward
  std::string err = runRanksWithComm(3, [&](attncclComm_t comm, int) -> std::string {
    std::map<std::string, std::string> first;  // (case, algo) -> the first call's bytes
    for (int rep = 0; rep < kReps; ++rep) {
      for (size_t ci = 0; ci < cases.size(); ++ci) {
        for (attncclAlgo_t algo : kAlgos) {
          AttnCase& c = *cases[ci];
          std::string bad = checkRank(c, comm, algo, true, nullptr);
          RK_CHECK(bad.empty(), "rep %d, %s, %s: %s", rep, attncclAlgoName(algo), c.name().c_str(), bad.c_str());
          std::string got;
          RK_SUB(runOnce(c, comm, algo, &got));
          const std::string id = format("%zu/%d", ci, static_cast<int>(algo));
          if (rep == 0) {
            first[id] = got;
          } else {
            RK_CHECK(got == first[id], "rep %d, %s, %s: a cached call differs from the first (fresh) one bit for bit",
                     rep, attncclAlgoName(algo), c.name().c_str());
          }
        }
      }
    }
    const PlanCacheCounters k = plansOf(comm).counters();
    // Every key was built once; every later call of it (two per rep: checkRank and runOnce) hit.
    RK_CHECK(k.misses == keys, "misses %llu, expected %llu", (unsigned long long)k.misses, (unsigned long long)keys);
    RK_CHECK(k.hits == keys * (2 * kReps - 1), "hits %llu, expected %llu", (unsigned long long)k.hits,
             (unsigned long long)(keys * (2 * kReps - 1)));
    RK_CHECK(k.evictions == 0 && plansOf(comm).size() == keys, "evictions %llu, size %zu",
             (unsigned long long)k.evictions, plansOf(comm).size());
    return "";
  });
  EXPECT_EQ(err, "") << seedText(seed);
}

TEST(PlanCache, BoundsEvictWithoutChangingResults) {
  const uint64_t seed = testSeed();
  auto cases = makeCases(seed);
  std::string err = runRanksWithComm(2, [&](attncclComm_t comm, int) -> std::string {
    PlanCache& plans = plansOf(comm);
    // Two entries for three shapes in a cycle: least recently used goes, so every call misses.
    plans.setBounds(2, PlanCache::kDefaultBytes);
    for (int rep = 0; rep < 2; ++rep) {
      for (size_t ci = 0; ci < 3; ++ci) {
        std::string bad = checkRank(*cases[ci], comm, attncclAlgoRing, true, nullptr);
        RK_CHECK(bad.empty(), "entries bound, rep %d, %s: %s", rep, cases[ci]->name().c_str(), bad.c_str());
        RK_CHECK(plans.size() <= 2, "size %zu over the bound 2", plans.size());
      }
    }
    PlanCacheCounters k = plans.counters();
    RK_CHECK(k.hits == 0 && k.misses == 12 && k.evictions == 10, "hits %llu misses %llu evictions %llu",
             (unsigned long long)k.hits, (unsigned long long)k.misses, (unsigned long long)k.evictions);
    // One byte: only the newest entry stays, however large.
    plans.setBounds(PlanCache::kDefaultEntries, 1);
    RK_CHECK(plans.size() == 1, "size %zu after a 1-byte bound", plans.size());
    for (size_t ci = 0; ci < cases.size(); ++ci) {
      std::string bad = checkRank(*cases[ci], comm, attncclAlgoPassQ, true, nullptr);
      RK_CHECK(bad.empty(), "bytes bound, %s: %s", cases[ci]->name().c_str(), bad.c_str());
      RK_CHECK(plans.size() == 1, "size %zu under a 1-byte bound", plans.size());
      RK_CHECK(plans.bytes() > 1, "bytes %zu: the entry's memory is not counted", plans.bytes());
    }
    // Accumulator storage over the per-entry limit is freed after the call; the plan stays.
    plans.setBounds(PlanCache::kDefaultEntries, PlanCache::kDefaultBytes, 0);
    attnccl::attn::AttnShape shape;
    RK_CHECK(attnccl::attn::resolveDesc(&cases[0]->desc(), &shape) == attncclSuccess, "resolveDesc");
    int n = 0;
    RK_OK(attncclCommCount(comm, &n));
    for (int rep = 0; rep < 2; ++rep) {
      std::string bad = checkRank(*cases[0], comm, attncclAlgoRing, true, nullptr);
      RK_CHECK(bad.empty(), "scratch limit 0, rep %d: %s", rep, bad.c_str());
      for (bool backward : {false, true}) {
        const attnccl::attn::CachedPlan* e = plans.find(PlanCache::keyOf(shape, n, attncclAlgoRing, backward));
        RK_CHECK(e != nullptr, "rep %d: the %s entry is gone", rep, backward ? "backward" : "forward");
        RK_CHECK(e->scratch.bytes() == 0, "rep %d: %zu bytes of scratch kept over a 0-byte limit", rep,
                 e->scratch.bytes());
      }
    }
    return "";
  });
  EXPECT_EQ(err, "") << seedText(seed);
}

TEST(PlanCache, InvalidationDropsEveryEntry) {
  const uint64_t seed = testSeed();
  auto cases = makeCases(seed);
  std::string err = runRanksWithComm(2, [&](attncclComm_t comm, int) -> std::string {
    PlanCache& plans = plansOf(comm);
    for (size_t ci = 0; ci < 2; ++ci) RK_SUB(checkRank(*cases[ci], comm, attncclAlgoAllGather, true, nullptr));
    RK_CHECK(plans.size() == 4, "size %zu, expected 4", plans.size());
    plans.invalidate();  // what attncclCommAbort's onAbort does (from any thread)
    RK_SUB(checkRank(*cases[0], comm, attncclAlgoAllGather, true, nullptr));
    const PlanCacheCounters k = plans.counters();
    RK_CHECK(k.invalidations == 4 && plans.size() == 2 && k.misses == 6 && k.hits == 0,
             "invalidations %llu size %zu misses %llu hits %llu", (unsigned long long)k.invalidations, plans.size(),
             (unsigned long long)k.misses, (unsigned long long)k.hits);
    return "";
  });
  EXPECT_EQ(err, "") << seedText(seed);
}

// The LRU order on the cache alone (entries are empty plans).
TEST(PlanCache, LeastRecentlyUsedGoesFirst) {
  PlanCache c;
  c.setBounds(2, PlanCache::kDefaultBytes);
  auto entry = [] { return std::unique_ptr<attnccl::attn::CachedPlan>(new attnccl::attn::CachedPlan()); };
  c.insert("a", entry());
  c.insert("b", entry());
  ASSERT_NE(c.find("a"), nullptr);  // a is now the most recent
  c.insert("c", entry());           // so b goes
  EXPECT_EQ(c.find("b"), nullptr);
  EXPECT_NE(c.find("a"), nullptr);
  EXPECT_NE(c.find("c"), nullptr);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.counters().evictions, 1u);
  c.invalidate();
  EXPECT_EQ(c.find("a"), nullptr);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.counters().invalidations, 2u);
}

// The hybrid's ring level (src/attn/algos/hybrid.cc) is cached under the hybrid's key: on 4
// ranks in groups of 2 (a ring of 2 groups), each shape's first call builds its entry, every
// later call hits it, and every call matches the reference and, bit for bit, the first one.
// Shapes: the alternating ones above and one whose K/V head is shared by both members of a
// group (its dK/dV come home in fp32). With groups of one rank the hybrid is the ring and uses
// the ring's entries.
TEST(PlanCache, HybridRingLevelHitsAndMatchesTheFirstCall) {
  const uint64_t seed = testSeed();
  auto cases = makeCases(seed);
  CaseSpec shared;
  shared.seqLen = 29;
  shared.hq = 2;
  shared.hkv = 1;
  shared.dim = 8;
  shared.causal = true;
  shared.layout = attncclLayoutZigzag;
  cases.emplace_back(new AttnCase(shared, attnccl_test::subSeed(seed, 99)));
  cases.back()->reference();
  cases.back()->referenceGrads();
  const int kReps = 3;
  for (int G : {2, 1}) {
    const attncclAlgo_t keyAlgo = G == 1 ? attncclAlgoRing : attncclAlgoHybrid;
    std::string err = runRanksWithGroups(4, G, [&](attncclComm_t comm, int) -> std::string {
      std::map<size_t, std::string> first;
      for (int rep = 0; rep < kReps; ++rep) {
        for (size_t ci = 0; ci < cases.size(); ++ci) {
          AttnCase& c = *cases[ci];
          std::string bad = checkRank(c, comm, attncclAlgoHybrid, true, nullptr);
          RK_CHECK(bad.empty(), "G %d, rep %d, %s: %s", G, rep, c.name().c_str(), bad.c_str());
          std::string got;
          RK_SUB(runOnce(c, comm, attncclAlgoHybrid, &got));
          if (rep == 0) {
            first[ci] = got;
          } else {
            RK_CHECK(got == first[ci], "G %d, rep %d, %s: a cached call differs from the first one bit for bit", G,
                     rep, c.name().c_str());
          }
        }
      }
      const uint64_t keys = cases.size() * 2;  // x forward, backward
      const PlanCacheCounters k = plansOf(comm).counters();
      RK_CHECK(k.misses == keys && k.hits == keys * (2 * kReps - 1) && plansOf(comm).size() == keys,
               "G %d: misses %llu hits %llu size %zu, expected %llu, %llu, %llu", G, (unsigned long long)k.misses,
               (unsigned long long)k.hits, plansOf(comm).size(), (unsigned long long)keys,
               (unsigned long long)(keys * (2 * kReps - 1)), (unsigned long long)keys);
      int n = 0;
      RK_OK(attncclCommCount(comm, &n));
      for (size_t ci = 0; ci < cases.size(); ++ci) {
        attnccl::attn::AttnShape shape;
        RK_CHECK(attnccl::attn::resolveDesc(&cases[ci]->desc(), &shape) == attncclSuccess, "resolveDesc");
        for (bool backward : {false, true}) {
          const attnccl::attn::CachedPlan* e = plansOf(comm).find(PlanCache::keyOf(shape, n, keyAlgo, backward));
          RK_CHECK(e != nullptr, "G %d, %s: no %s entry under the %s key", G, cases[ci]->name().c_str(),
                   backward ? "backward" : "forward", attncclAlgoName(keyAlgo));
          // The hybrid's entry is its ring level: 2 groups as ranks, a compiled plan.
          RK_CHECK(G == 1 || (e->problem.nranks == 2 && e->extra != nullptr && !e->plan.rounds.empty()),
                   "G %d, %s: entry of %d ranks, extra %p, %zu rounds", G, cases[ci]->name().c_str(),
                   e->problem.nranks, static_cast<const void*>(e->extra.get()), e->plan.rounds.size());
        }
      }
      return "";
    });
    EXPECT_EQ(err, "") << "G " << G << ", " << seedText(seed);
  }
}
