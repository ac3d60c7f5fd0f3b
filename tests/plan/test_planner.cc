// The planner (tools/attnccl-plan, tools/plan/*) checked against published results, with
// nothing timed (a suite that CI runs must not depend on the speed of the machine):
//   (b) ring-flash-attention's table on 8 H100-class GPUs, Llama-3.1-8B shapes, 8K tokens per
//       GPU, causal: zigzag ring ~0.9 of ideal forward+backward, plain contiguous ring ~0.5;
//   (c) DeepSpeed-Ulysses: bytes per rank constant when sequence and ranks grow together;
//   (d) inference with a K/V cache: pass-Q beats pass-KV for few new tokens, and where the
//       crossover lies relative to Meta's 2 Hkv/Hq rule (see tools/plan/inference.h).
// The comparison of this-machine predictions with measured CPU runs, (a), is a benchmark:
// perf/run_planner_validation.sh (results in perf/RESULTS.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "attn/algos/algos.h"
#include "attn/desc.h"
#include "plan/planner.h"

namespace attnccl {
namespace {

using plan::ClusterSpec;
using plan::descOf;
using plan::PlanResult;
using plan::ProblemSpec;

// (b) ------------------------------------------------------------------------------------------

ProblemSpec llama8b(int64_t tokensPerRank, int P, attncclLayout_t layout) {
  ProblemSpec p;
  p.seqLen = tokensPerRank * P;
  p.heads = 32;
  p.kvHeads = 8;
  p.headDim = 128;
  p.dtype = attncclBfloat16;
  p.causal = true;
  p.layout = layout;
  return p;
}

TEST(Planner, ReproducesRingFlashAttentionTable) {
  ClusterSpec c;
  std::string err;
  ASSERT_TRUE(plan::presetCluster("h100-nvlink-ndr", 8, 1, &c, &err)) << err;
  c.nodes = 1;
  c.ranksPerNode = 8;
  PlanResult zigzag, plain;
  ASSERT_TRUE(plan::planProblem(llama8b(8192, 8, attncclLayoutZigzag), c, &zigzag, &err)) << err;
  ASSERT_TRUE(plan::planProblem(llama8b(8192, 8, attncclLayoutContiguous), c, &plain, &err)) << err;
  const plan::AlgoPlan* z = plan::findAlgo(zigzag, attncclAlgoRing);
  const plan::AlgoPlan* r = plan::findAlgo(plain, attncclAlgoRing);
  ASSERT_TRUE(z && r);
  printf("# ring, fraction of ideal (ring-flash-attention on 8xH800: fwd+bwd zigzag 0.902, ring 0.539; fwd 0.852, 0.521)\n");
  printf("  zigzag fwd+bwd %.3f fwd %.3f | contiguous fwd+bwd %.3f fwd %.3f\n", z->efficiency, z->fwdEfficiency,
         r->efficiency, r->fwdEfficiency);
  EXPECT_GE(z->efficiency, 0.8);
  EXPECT_LE(z->efficiency, 1.0);
  EXPECT_LE(r->efficiency, 0.6);
  EXPECT_GE(r->efficiency, 0.45);
  // Within 0.1 of every published figure.
  EXPECT_NEAR(z->efficiency, 0.902, 0.1);
  EXPECT_NEAR(r->efficiency, 0.539, 0.1);
  EXPECT_NEAR(z->fwdEfficiency, 0.852, 0.1);
  EXPECT_NEAR(r->fwdEfficiency, 0.521, 0.1);
  // The imbalance is the whole story of the plain ring: the last rank computes most.
  EXPECT_GT(r->fwd.balance, 1.7);
  EXPECT_LT(z->fwd.balance, 1.05);
}

// (c) ------------------------------------------------------------------------------------------

TEST(Planner, UlyssesVolumePerRankConstantWhenSequenceAndRanksGrow) {
  ClusterSpec c;
  std::string err;
  ASSERT_TRUE(plan::presetCluster("h100-nvlink-ndr", 8, 1, &c, &err)) << err;
  std::vector<double> uly, ring;
  for (int P : {8, 16, 32, 64}) {
    c.nodes = P / 8;
    ProblemSpec ps = llama8b(8192, P, attncclLayoutZigzag);
    ps.heads = ps.kvHeads = 64;  // MHA, the Ulysses paper's setting (with GQA and P > Hkv the K/V
                                 // heads are replicated and the volume grows with P)
    attncclAttnDesc_t d = descOf(ps);
    attn::AttnShape shape;
    ASSERT_EQ(attn::resolveDesc(&d, &shape), attncclSuccess);
    attn::Problem p = attn::Problem::fromLayout(shape, P);
    attn::ClusterModel m = c.model();
    uly.push_back(attn::predictUlysses(p, false, m).maxLinkBytes);
    if (P <= 32) ring.push_back(attn::predictSchedule(p, attn::ringSchedule(p, false), m).maxLinkBytes);
    printf("  P %2d  S %6lld  ulysses %.1f MB/rank  ring %.1f MB/rank\n", P, static_cast<long long>(ps.seqLen),
           uly.back() / 1e6, P <= 32 ? ring.back() / 1e6 : NAN);
  }
  // Ulysses: (P-1)/P of a constant, so within 1/8 of the first from P = 8 to 64; the ring's grows with P.
  for (double u : uly) EXPECT_NEAR(u / uly[0], 1.0, 0.13);
  EXPECT_GT(ring.back() / ring.front(), 3.0);
}

// A node link shared by the node's ranks (host clusters, interNodeShared) against one per rank:
// the ring crosses between two nodes with one rank of each at a time, so it is unchanged; the
// hybrid's two rings cross at once and Ulysses' all-to-all sends from both ranks of a node at
// once, so both take longer. On a link so slow that the crossings are nearly the whole time,
// the hybrid's transfers take about twice as long.
TEST(Planner, SharedNodeLinkSplitsTheCrossingsThatMoveAtOnce) {
  ClusterSpec c;
  std::string err;
  ASSERT_TRUE(plan::presetCluster("h100-nvlink-ndr", 4, 1, &c, &err)) << err;
  c.nodes = 2;
  c.ranksPerNode = 2;
  c.interGBps = 0.01;
  ProblemSpec ps = llama8b(1024, 4, attncclLayoutZigzag);
  PlanResult own, shared;
  ASSERT_TRUE(plan::planProblem(ps, c, &own, &err)) << err;
  c.interSharedByNode = true;
  ASSERT_TRUE(plan::planProblem(ps, c, &shared, &err)) << err;
  const auto fwd = [](const PlanResult& r, attncclAlgo_t a) { return plan::findAlgo(r, a)->fwd.seconds; };
  EXPECT_NEAR(fwd(shared, attncclAlgoRing) / fwd(own, attncclAlgoRing), 1.0, 1e-9);
  EXPECT_NEAR(fwd(shared, attncclAlgoHybrid) / fwd(own, attncclAlgoHybrid), 2.0, 0.1);
  EXPECT_GT(fwd(shared, attncclAlgoUlysses) / fwd(own, attncclAlgoUlysses), 1.5);
}

// (d) ------------------------------------------------------------------------------------------

TEST(Planner, InferencePassQBeatsPassKVForFewNewTokens) {
  ClusterSpec c;
  std::string err;
  ASSERT_TRUE(plan::presetCluster("h100-nvlink-ndr", 8, 1, &c, &err)) << err;
  struct Shape {
    int heads, kvHeads;
  };
  for (int nodes : {2, 16}) {  // context parallel over InfiniBand, as Meta's 16 x 8 H100
    c.nodes = nodes;
    for (Shape s : {Shape{32, 8}, Shape{64, 8}, Shape{128, 8}}) {
      plan::InferenceSpec is;
      is.heads = s.heads;
      is.kvHeads = s.kvHeads;
      is.cachedTokens = 128 * 1024;
      for (int64_t T : {int64_t(1), int64_t(64), is.cachedTokens / 200}) {  // decode .. 0.5% miss
        is.newTokens = T;
        plan::InferencePrediction p = plan::predictInference(is, c);
        EXPECT_LT(p.passQSeconds, p.passKVSeconds) << nodes << " nodes, T " << T << ", " << s.heads << "/" << s.kvHeads;
      }
      is.newTokens = 4 * is.cachedTokens;  // a mostly new prompt: pass-KV
      EXPECT_GT(plan::predictInference(is, c).passQSeconds, plan::predictInference(is, c).passKVSeconds);
      const double rule = plan::metaThreshold(is), x = plan::inferenceCrossover(is, c);
      printf("  %2d nodes, %3d/%d heads: crossover miss rate %.4f, Meta's rule 2 Hkv/Hq %.4f\n", nodes, s.heads,
             s.kvHeads, x, rule);
      // Per hop the queries and the K/V shard cross exactly at the rule ...
      const double T = rule / (1 - rule) * static_cast<double>(is.cachedTokens);
      EXPECT_NEAR(T * s.heads, 2 * (T + is.cachedTokens) * s.kvHeads, 1e-6 * T * s.heads);
      // ... but pass-Q also returns a partial output per query, as many bytes as the query, so on
      // links that bind both the crossover is half the rule (tools/plan/inference.h).
      EXPECT_GT(x, rule / 2 / 1.5);
      EXPECT_LT(x, rule / 2 * 1.5);
      EXPECT_LT(x, rule);
      if (s.heads == 128 && nodes == 16) EXPECT_NEAR(x, 0.05, 0.05 / 2);  // Meta measured ~5% (405B, 16x8)
    }
  }
}

// attnccl's own KV cache path in the inference model: the volumes and the one round of
// attn/kvcache/cost.h (what attncclKvCacheAttend sends), and, for a decode step against a long
// cache, far less traffic than either ring (it moves neither the cache nor the queries around).
TEST(Planner, InferenceKvCachePathUsesTheLibrarysVolumes) {
  ClusterSpec c;
  std::string err;
  ASSERT_TRUE(plan::presetCluster("h100-nvlink-ndr", 8, 1, &c, &err)) << err;
  plan::InferenceSpec is;
  is.heads = 32;
  is.kvHeads = 8;
  is.headDim = 128;
  is.cachedTokens = 128 * 1024;
  for (int64_t T : {int64_t(1), int64_t(256)}) {
    is.newTokens = T;
    plan::InferencePrediction p = plan::predictInference(is, c);
    const int P = c.model().nranks;
    const double partial = 32.0 + T * 32 * 129 * 4.0;  // a whole partial message
    EXPECT_GT(p.kvCacheSeconds, 0);
    if (T == 1) {  // decode: the all-gather, one round
      EXPECT_EQ(p.kvCacheRounds, 1);
      EXPECT_DOUBLE_EQ(p.kvCacheBytes, (P - 1) * partial);
      EXPECT_LT(p.kvCacheBytes, p.passKVBytes);
      EXPECT_LT(p.kvCacheSeconds, p.passKVSeconds);
    } else {  // a 4 MB partial: by heads, two rounds of about 1/P of it to each peer
      EXPECT_EQ(p.kvCacheRounds, 2);
      EXPECT_NEAR(p.kvCacheBytes, 2.0 * (P - 1) * (32 + (partial - 32) / P), 1.0);
      EXPECT_LT(p.kvCacheBytes, (P - 1) * partial / 2);
    }
  }
}

}  // namespace
}  // namespace attnccl
