// The algorithm table (attn/algos/registry.h): one row per attncclAlgo_t value, names that
// survive the parser both ways, and each kind of row carrying what its callers will look up
// (a token schedule that the verifier accepts, or its own runners, model and device program).
#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <string>

#include "attn/algos/registry.h"
#include "attn/problem.h"
#include "attn/tune/cost_model.h"
#include "attn/verify.h"

namespace attnccl_test {
namespace {

using namespace attnccl::attn;

TEST(AlgoRegistry, EveryAlgorithmHasExactlyOneRow) {
  for (int v = attncclAlgoRing; v <= attncclAlgoHybrid; ++v) {
    int rows = 0;
    for (const AlgoEntry& a : algorithms()) rows += a.algo == static_cast<attncclAlgo_t>(v);
    EXPECT_EQ(rows, 1) << "attncclAlgo_t " << v;
    const AlgoEntry* a = findAlgorithm(static_cast<attncclAlgo_t>(v));
    ASSERT_NE(a, nullptr) << v;
    EXPECT_EQ(a->algo, static_cast<attncclAlgo_t>(v));
  }
  // Nothing else: no row for auto (it chooses among the rows) or past the enum.
  EXPECT_EQ(algorithms().size(), static_cast<size_t>(attncclAlgoHybrid - attncclAlgoRing + 1));
  EXPECT_EQ(findAlgorithm(attncclAlgoAuto), nullptr);
  EXPECT_EQ(findAlgorithm(static_cast<attncclAlgo_t>(attncclNumAlgos)), nullptr);
  // Enum order: the automatic choice breaks near ties towards earlier rows.
  for (size_t i = 1; i < algorithms().size(); ++i) EXPECT_LT(algorithms()[i - 1].algo, algorithms()[i].algo);
}

TEST(AlgoRegistry, NamesRoundTripThroughTheParser) {
  std::set<std::string> seen;
  for (const AlgoEntry& a : algorithms()) {
    ASSERT_NE(a.name, nullptr);
    EXPECT_TRUE(seen.insert(a.name).second) << "name " << a.name << " used twice";
    EXPECT_STREQ(attncclAlgoName(a.algo), a.name);
    attncclAlgo_t back = attncclAlgoAuto;
    ASSERT_TRUE(parseAlgoName(a.name, &back)) << a.name;
    EXPECT_EQ(back, a.algo) << a.name;
    std::string upper = a.name;
    for (char& ch : upper) ch = static_cast<char>(toupper(static_cast<unsigned char>(ch)));
    back = attncclAlgoAuto;
    ASSERT_TRUE(parseAlgoName(upper.c_str(), &back)) << upper;
    EXPECT_EQ(back, a.algo) << upper;
    EXPECT_NE(std::string(algoNameList()).find(a.name), std::string::npos) << a.name;
  }
  attncclAlgo_t algo = attncclAlgoRing;
  EXPECT_TRUE(parseAlgoName("auto", &algo));
  EXPECT_EQ(algo, attncclAlgoAuto);
  EXPECT_STREQ(attncclAlgoName(attncclAlgoAuto), "auto");
  EXPECT_FALSE(parseAlgoName("rings", &algo));
  EXPECT_FALSE(parseAlgoName("", &algo));
  EXPECT_FALSE(parseAlgoName(nullptr, &algo));
  EXPECT_STREQ(attncclAlgoName(static_cast<attncclAlgo_t>(attncclNumAlgos)), "unknown");
}

Problem smallProblem(int P) {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.seqLen = 37;
  d.numHeadsQ = 4;
  d.numHeadsKV = 2;
  d.headDim = 8;
  d.layout = attncclLayoutZigzag;
  d.causal = 1;
  AttnShape s;
  EXPECT_EQ(resolveDesc(&d, &s), attncclSuccess);
  return Problem::fromLayout(s, P);
}

TEST(AlgoRegistry, RowsCarryWhatTheirKindNeeds) {
  const Problem p = smallProblem(4);
  ClusterModel m;
  m.nranks = 4;
  m.ranksPerNode = 4;
  for (const AlgoEntry& a : algorithms()) {
    SCOPED_TRACE(a.name);
    if (a.kind == AlgoKind::kTokenSchedule) {
      // The executor, the device program and the cost model all take the schedule.
      ASSERT_NE(a.schedule, nullptr);
      for (bool bwd : {false, true}) {
        const Schedule s = a.schedule(p, bwd);
        EXPECT_STREQ(s.algorithm, a.name);
        EXPECT_EQ(verifySchedule(p, s), "") << (bwd ? "backward" : "forward");
      }
    } else {
      // No schedule to fall back on: every entry is the row's own.
      EXPECT_EQ(a.schedule, nullptr);
      EXPECT_NE(a.forward, nullptr);
      EXPECT_NE(a.backward, nullptr);
      EXPECT_NE(a.predict, nullptr);
      EXPECT_NE(a.deviceProgram, nullptr);
    }
    const Prediction pred = predictAlgorithm(a, p, false, m, 2);
    EXPECT_TRUE(pred.supported);
    EXPECT_GT(pred.seconds, 0);
  }
  // The cost model's candidates are the rows, in order.
  const std::vector<Candidate> c = predictAlgorithms(p, true, m, 2);
  ASSERT_EQ(c.size(), algorithms().size());
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(c[i].algo, algorithms()[i].algo);
}

}  // namespace
}  // namespace attnccl_test
