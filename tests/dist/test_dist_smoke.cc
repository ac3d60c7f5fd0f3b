#include <gtest/gtest.h>

#include "support/dist_case.h"

using namespace attnccl_test;

TEST(DistSmoke, RingPassQAllGather) {
  for (attncclAlgo_t algo : {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather}) {
    for (int P : {2, 3, 4}) {
      for (bool causal : {false, true}) {
        CaseSpec spec;
        spec.seqLen = 37;
        spec.hq = 4;
        spec.hkv = 2;
        spec.dim = 16;
        spec.causal = causal;
        AttnCase c(spec, testSeed());
        DistOptions o;
        o.algo = algo;
        o.nranks = P;
        EXPECT_EQ(runDistributed(c, o), "");
      }
    }
  }
}
