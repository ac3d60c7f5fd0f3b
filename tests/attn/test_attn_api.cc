// The public attention API on a communicator of one rank: every algorithm value reduces to local
// attention and must match the fp64 reference; arguments are checked with messages naming them;
// attncclMergeStates and the one-rank head all-to-all.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>

#include "attnccl.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

class AttnApi : public ::testing::Test {
 protected:
  void SetUp() override {
    attncclUniqueId id;
    ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.cpuThreads = 2;
    ASSERT_EQ(attncclCommInitRank(&comm_, 1, id, 0, &cfg), attncclSuccess) << attncclGetLastError(nullptr);
  }
  void TearDown() override {
    if (comm_) attncclCommDestroy(comm_);
  }
  attncclComm_t comm_ = nullptr;
};

CaseSpec caseOf(int64_t S, int hq, int hkv, int d, attncclDataType_t t, attncclLayout_t layout, bool causal,
                int64_t wl, int64_t wr, std::vector<int64_t> docs) {
  CaseSpec c;
  c.seqLen = S;
  c.hq = hq;
  c.hkv = hkv;
  c.dim = d;
  c.dtype = t;
  c.layout = layout;
  c.causal = causal;
  c.windowLeft = wl;
  c.windowRight = wr;
  c.docLens = std::move(docs);
  return c;
}

void forwardBackward(attncclComm_t comm, AttnCase& c, attncclAlgo_t algo, bool withLse) {
  const attncclDataType_t t = c.spec().dtype;
  Tensor out(t, c.q().numel()), dq(t, c.q().numel()), dk(t, c.k().numel()), dv(t, c.v().numel());
  std::vector<float> lse(static_cast<size_t>(c.spec().hq * c.spec().seqLen));
  poison(out);
  poison(lse);
  std::string what = std::string(attncclAlgoName(algo)) + " " + c.name();
  ASSERT_EQ(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), out.data(), withLse ? lse.data() : nullptr,
                               &c.desc(), algo, comm, nullptr),
            attncclSuccess)
      << attncclGetLastError(comm) << " " << what;
  const RefForward& ref = c.reference();
  EXPECT_LE(relNormError(out.toDouble(), ref.out), tolerance(t)) << what;
  if (!withLse) return;
  EXPECT_LE(maxAbsError(toDouble(lse), ref.lse), kLseTolerance) << what;
  poison(dq);
  poison(dk);
  poison(dv);
  ASSERT_EQ(attncclAttnBackward(c.q().data(), c.k().data(), c.v().data(), out.data(), lse.data(), c.dout().data(),
                                dq.data(), dk.data(), dv.data(), &c.desc(), algo, comm, nullptr),
            attncclSuccess)
      << attncclGetLastError(comm) << " " << what;
  const RefGrads& g = c.referenceGrads();
  const double tol = tolerance(t) * (t == attncclFloat32 ? 1 : 2);
  EXPECT_LE(relNormError(dq.toDouble(), g.dq), tol) << "dq " << what;
  EXPECT_LE(relNormError(dk.toDouble(), g.dk), tol) << "dk " << what;
  EXPECT_LE(relNormError(dv.toDouble(), g.dv), tol) << "dv " << what;
}

TEST_F(AttnApi, EveryAlgorithmOnOneRank) {
  const CaseSpec cases[attncclNumAlgos] = {
      caseOf(61, 4, 2, 64, attncclFloat32, attncclLayoutContiguous, true, -1, -1, {}),
      caseOf(100, 8, 2, 40, attncclBfloat16, attncclLayoutZigzag, true, 20, -1, {30, 70}),
      caseOf(1, 3, 1, 8, attncclFloat16, attncclLayoutStriped, false, -1, -1, {}),
      caseOf(77, 4, 4, 128, attncclFloat32, attncclLayoutStriped, false, 5, 5, {10, 1, 66}),
      caseOf(50, 4, 1, 256, attncclFloat16, attncclLayoutZigzag, true, -1, 3, {}),
      caseOf(33, 2, 2, 24, attncclBfloat16, attncclLayoutContiguous, false, -1, -1, {11, 22}),
  };
  uint64_t seed = testSeed();
  for (int a = 0; a < attncclNumAlgos; ++a) {
    AttnCase c(cases[a], subSeed(seed, a));
    forwardBackward(comm_, c, static_cast<attncclAlgo_t>(a), true);
    // The same descriptor through every other algorithm value, forward only.
    for (int b = 0; b < attncclNumAlgos; ++b) forwardBackward(comm_, c, static_cast<attncclAlgo_t>(b), false);
  }
}

TEST_F(AttnApi, ArgumentsAreChecked) {
  AttnCase c(caseOf(16, 2, 1, 8, attncclFloat32, attncclLayoutContiguous, true, -1, -1, {}), testSeed());
  Tensor out(attncclFloat32, c.q().numel()), dq(attncclFloat32, c.q().numel());
  Tensor dk(attncclFloat32, c.k().numel()), dv(attncclFloat32, c.v().numel());
  std::vector<float> lse(2 * 16);
  auto lastError = [&] { return std::string(attncclGetLastError(comm_)); };
  EXPECT_EQ(attncclAttnForward(nullptr, c.k().data(), c.v().data(), out.data(), nullptr, &c.desc(), attncclAlgoAuto,
                               comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(lastError().find("q is NULL"), std::string::npos) << lastError();
  EXPECT_EQ(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), nullptr, nullptr, &c.desc(),
                               attncclAlgoAuto, comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(lastError().find("out is NULL"), std::string::npos) << lastError();
  EXPECT_EQ(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), out.data(), nullptr, &c.desc(),
                               static_cast<attncclAlgo_t>(attncclNumAlgos), comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(lastError().find("algo 6"), std::string::npos) << lastError();
  EXPECT_EQ(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), out.data(), nullptr, &c.desc(),
                               static_cast<attncclAlgo_t>(-1), comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), out.data(), nullptr, &c.desc(),
                               attncclAlgoAuto, nullptr, nullptr),
            attncclSuccess);
  attncclAttnDesc_t bad = c.desc();
  bad.headDim = 300;
  EXPECT_EQ(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), out.data(), nullptr, &bad, attncclAlgoRing,
                               comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(lastError().find("headDim 300"), std::string::npos) << lastError();
  EXPECT_EQ(attncclAttnBackward(c.q().data(), c.k().data(), c.v().data(), out.data(), nullptr, c.dout().data(),
                                dq.data(), dk.data(), dv.data(), &c.desc(), attncclAlgoAuto, comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(lastError().find("lse is NULL"), std::string::npos) << lastError();
  EXPECT_EQ(attncclAttnBackward(c.q().data(), c.k().data(), c.v().data(), out.data(), lse.data(), c.dout().data(),
                                dq.data(), nullptr, dv.data(), &c.desc(), attncclAlgoAuto, comm_, nullptr),
            attncclInvalidArgument);
  EXPECT_NE(lastError().find("dk is NULL"), std::string::npos) << lastError();
}

TEST_F(AttnApi, MergeStatesMatchesReference) {
  uint64_t seed = testSeed();
  const int64_t T = 45;
  const int H = 3, D = 40;
  for (attncclDataType_t t : {attncclFloat32, attncclBfloat16, attncclFloat16}) {
    for (attncclComm_t comm : {static_cast<attncclComm_t>(nullptr), comm_}) {
      Tensor a = randomTensor(t, T * H * D, subSeed(seed, 0)), b = randomTensor(t, T * H * D, subSeed(seed, 1));
      std::vector<float> la = randomFloats(H * T, subSeed(seed, 2), -3, 8), lb = randomFloats(H * T, subSeed(seed, 3), -3, 8);
      la[0] = -std::numeric_limits<float>::infinity();
      lb[1] = -std::numeric_limits<float>::infinity();
      la[2] = lb[2] = -std::numeric_limits<float>::infinity();
      std::vector<double> ro = a.toDouble(), rl = toDouble(la);
      refMergeStates(ro, rl, b.toDouble(), toDouble(lb), T, H, D);
      ASSERT_EQ(attncclMergeStates(a.data(), la.data(), b.data(), lb.data(), T, H, D, t, comm, nullptr), attncclSuccess)
          << attncclGetLastError(comm);
      EXPECT_LE(relNormError(a.toDouble(), ro), tolerance(t)) << attnccl_test::seedText(seed);
      EXPECT_LE(maxAbsError(toDouble(la), rl), 1e-5) << attnccl_test::seedText(seed);
    }
  }
  float l = 0;
  EXPECT_EQ(attncclMergeStates(nullptr, &l, nullptr, &l, 1, 1, 1, attncclFloat32, nullptr, nullptr),
            attncclInvalidArgument);
  EXPECT_EQ(attncclMergeStates(&l, &l, &l, &l, 1, 1, 1, attncclInt32, nullptr, nullptr), attncclInvalidArgument);
  EXPECT_EQ(attncclMergeStates(nullptr, nullptr, nullptr, nullptr, 0, 1, 1, attncclFloat32, nullptr, nullptr),
            attncclSuccess);
}

TEST_F(AttnApi, HeadAllToAllOnOneRankIsIdentity) {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.dtype = attncclBfloat16;
  d.seqLen = 9;
  d.headDim = 16;  // head counts of the descriptor are ignored
  Tensor in = randomTensor(attncclBfloat16, 9 * 5 * 16, testSeed()), mid(attncclBfloat16, 9 * 5 * 16),
         back(attncclBfloat16, 9 * 5 * 16);
  ASSERT_EQ(attncclHeadAllToAll(in.data(), mid.data(), 5, attncclSeqToHead, &d, comm_, nullptr), attncclSuccess)
      << attncclGetLastError(comm_);
  ASSERT_EQ(attncclHeadAllToAll(mid.data(), back.data(), 5, attncclHeadToSeq, &d, comm_, nullptr), attncclSuccess);
  EXPECT_EQ(mid.toDouble(), in.toDouble());
  EXPECT_EQ(back.toDouble(), in.toDouble());
  EXPECT_EQ(attncclHeadAllToAll(in.data(), mid.data(), 5, 2, &d, comm_, nullptr), attncclInvalidArgument);
  EXPECT_EQ(attncclHeadAllToAll(in.data(), nullptr, 5, attncclSeqToHead, &d, comm_, nullptr), attncclInvalidArgument);
}

}  // namespace
}  // namespace attnccl_test
