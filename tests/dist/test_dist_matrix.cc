// Every token-moving algorithm against the fp64 reference and the one-rank result, forward and
// backward, over a covering set of the matrix: layout x mask x world size (1, 2, 3, 4, 5, 8) in
// full, and for each of those cells a rotating choice of dtype, heads (MHA, GQA, MQA, odd),
// head dim, length (uneven, shorter than the rank count), ranks as threads or processes, and
// transport. Each run is small; the matrix is what covers.
#include <gtest/gtest.h>

#include "support/dist_case.h"

using namespace attnccl_test;
using attnccl::test::Mode;

namespace {

struct MaskKind {
  const char* name;
  bool causal;
  int64_t wl, wr;
  bool docs;
};

const MaskKind kMasks[] = {
    {"causal", true, -1, -1, false},       {"full", false, -1, -1, false},     {"window", true, 7, -1, false},
    {"window2", false, 5, 3, false},       {"docs", true, -1, -1, true},       {"docs-window", false, 6, 6, true},
};

struct Heads {
  int hq, hkv;
};
const Heads kHeads[] = {{4, 4}, {4, 2}, {3, 1}, {8, 2}};
const attncclDataType_t kDtypes[] = {attncclFloat32, attncclBfloat16, attncclFloat16};

std::vector<int64_t> lengthsFor(int P) {
  // Uneven lengths, one shorter than the rank count, one tiny.
  return {static_cast<int64_t>(9 * P + 5), static_cast<int64_t>(P > 1 ? P - 1 : 1), 47, 1, 66};
}

class DistMatrix : public testing::TestWithParam<attncclAlgo_t> {};

TEST_P(DistMatrix, Covering) {
  const attncclAlgo_t algo = GetParam();
  const uint64_t seed = testSeed();
  int cell = 0;
  for (attncclLayout_t layout : {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped}) {
    for (const MaskKind& m : kMasks) {
      for (int P : {1, 2, 3, 4, 5, 8}) {
        const int i = cell++;
        std::vector<int64_t> lens = lengthsFor(P);
        CaseSpec spec;
        spec.seqLen = lens[i % lens.size()];
        const Heads h = kHeads[(i / 2) % 4];
        spec.hq = h.hq;
        spec.hkv = h.hkv;
        spec.dim = (i % 3 == 0) ? 40 : 16;
        spec.dtype = kDtypes[i % 3];
        spec.causal = m.causal;
        spec.windowLeft = m.wl;
        spec.windowRight = m.wr;
        spec.layout = layout;
        if (m.docs && spec.seqLen >= 4) {
          int64_t a = spec.seqLen / 4, b = spec.seqLen / 2;
          spec.docLens = {a, b - a, spec.seqLen - b};
        }
        AttnCase c(spec, attnccl_test::subSeed(seed, static_cast<uint64_t>(i)));
        DistOptions o;
        o.algo = algo;
        o.nranks = P;
        o.mode = (i % 4 == 1 && P > 1) ? Mode::kProcesses : Mode::kThreads;
        auto transports = attnccl::test::testTransports();
        o.transport = transports[(i / 3) % transports.size()];
        o.cpuThreads = (i % 5 == 2) ? 2 : 1;
        EXPECT_EQ(runDistributed(c, o), "") << "cell " << i << " mask " << m.name;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Algos, DistMatrix,
                         testing::Values(attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoAuto),
                         [](const testing::TestParamInfo<attncclAlgo_t>& i) {
                           return std::string(attncclAlgoName(i.param));
                         });

}  // namespace
