// The hybrid's groups follow the nodes (attn/tune/tuner.h hybridLayout): the layout as a pure
// function of every rank's node, and the hybrid run on communicators whose ranks are numbered
// across "nodes" in any order. Ranks are threads of one process; each rank gives its
// communicator the node map of the case (the host hashes init all-gathered, overwritten the same
// way on every rank before the first attention call), so the node shapes of a cluster run here.
// Every case is checked against the fp64 reference and the one-rank result, forward and backward.
#include <gtest/gtest.h>

#include <vector>

#include "attn/tune/tuner.h"
#include "comm/comm.h"
#include "support/dist_case.h"
#include "support/ranks.h"

using namespace attnccl_test;
using attnccl::attn::HybridLayout;
using attnccl::attn::hybridLayoutOf;
using attnccl::test::Mode;

namespace {

std::vector<std::vector<int>> groupsOf(const std::vector<uint64_t>& nodes, int configured = 0) {
  return hybridLayoutOf(nodes, configured).groups;
}

}  // namespace

TEST(HybridNodes, LayoutFollowsNodeMembership) {
  using G = std::vector<std::vector<int>>;
  EXPECT_EQ(groupsOf({7, 7, 9, 9}), (G{{0, 1}, {2, 3}}));          // 2 + 2 in blocks
  EXPECT_EQ(groupsOf({7, 9, 7, 9}), (G{{0, 2}, {1, 3}}));          // 2 + 2 interleaved
  EXPECT_EQ(groupsOf({7, 7, 7, 9}), (G{{0}, {1}, {2}, {3}}));      // 3 + 1: the ring
  EXPECT_EQ(groupsOf({1, 1, 2, 1, 2, 1}), (G{{0, 1}, {2, 4}, {3, 5}}));  // 4 + 2 mixed: gcd 2
  EXPECT_EQ(groupsOf({5, 5, 5, 5}), (G{{0, 1, 2, 3}}));            // one node: Ulysses
  EXPECT_EQ(groupsOf({7, 9, 7, 9}, 2), (G{{0, 1}, {2, 3}}));       // a configured size: blocks
  HybridLayout l = hybridLayoutOf({3, 4, 3, 4, 3, 4}, 0);
  EXPECT_EQ(l.G, 3);
  EXPECT_FALSE(l.blocks);
  EXPECT_EQ(l.groupOf, (std::vector<int>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(l.indexOf, (std::vector<int>{0, 0, 1, 1, 2, 2}));
  EXPECT_TRUE(hybridLayoutOf({3, 3, 4, 4}, 0).blocks);
}

namespace {

// Runs the hybrid on P thread ranks whose nodes are `nodes`, checking every rank's slice.
std::string runOnNodes(AttnCase& c, const std::vector<uint64_t>& nodes, attncclAlgo_t algo) {
  c.reference();
  c.referenceGrads();
  const SingleRankResult* single = &singleRank(c);
  const int P = static_cast<int>(nodes.size());
  return attnccl::test::runRanks(P, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    std::string e = attnccl::test::initComm(&comm, rank, n, id);
    if (!e.empty()) return e;
    for (int r = 0; r < n; ++r) comm->peers[r].hostHash = nodes[r];
    const HybridLayout l = attnccl::attn::hybridLayout(comm);
    const HybridLayout want = hybridLayoutOf(nodes, 0);
    RK_CHECK(l.groups == want.groups, "the communicator's layout differs from the node map's");
    std::string bad = checkRank(c, comm, algo, true, single);
    RK_OK(attncclCommDestroy(comm));
    return bad;
  });
}

}  // namespace

TEST(HybridNodes, InterleavedAndMixedNodesAreCorrect) {
  const uint64_t seed = testSeed();
  const std::vector<std::vector<uint64_t>> shapes = {
      {1, 2, 1, 2},        // 2 + 2 interleaved: groups {0, 2}, {1, 3}
      {1, 1, 2, 1, 2, 1},  // 4 + 2, ranks mixed: groups of 2 inside nodes
      {1, 2, 3, 1, 2, 3},  // 2 + 2 + 2 round robin
      {1, 2, 2, 2},        // 1 + 3: the ring
  };
  int i = 0;
  for (const auto& nodes : shapes) {
    for (int k = 0; k < 3; ++k, ++i) {
      CaseSpec spec = rotatingSpec(11 * static_cast<int64_t>(nodes.size()) + i, (i % 2) ? 6 : 4, (i % 3) ? 2 : 1,
                                   16, i);
      AttnCase c(spec, subSeed(seed, i));
      EXPECT_EQ(runOnNodes(c, nodes, attncclAlgoHybrid), "") << c.name() << " nodes case " << i;
    }
  }
  // The automatic choice on such a communicator agrees on every rank (a hang or a wrong answer
  // otherwise) whatever it picks.
  CaseSpec spec = rotatingSpec(40, 4, 2, 16, 3);
  AttnCase c(spec, subSeed(seed, 99));
  EXPECT_EQ(runOnNodes(c, {1, 2, 1, 2}, attncclAlgoAuto), "") << c.name() << " auto";
}
