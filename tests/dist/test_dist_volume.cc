// The byte counters of a real run match the schedule's volume exactly (every item's bytes,
// per rank, sent and received), and the schedule volumes themselves match closed formulas
// (tests/sched). Together: no algorithm sends more than its formula says.
#include <gtest/gtest.h>

#include "attn/algos/registry.h"
#include "attn/items.h"
#include "support/dist_case.h"

using namespace attnccl_test;
using namespace attnccl::attn;
using attnccl::test::format;

namespace {

struct Volume {
  uint64_t sent = 0, recv = 0;
};

Volume scheduleVolume(const Problem& p, const Schedule& s, int rank) {
  Volume v;
  for (const Round& round : s.ranks[rank].rounds)
    for (const Transfer& t : round.transfers)
      (t.send ? v.sent : v.recv) += itemLayout(p, t.item, s.backward).bytes();
  return v;
}

AttnShape shapeOf(const attncclAttnDesc_t& d) {
  AttnShape s;
  attnccl::attn::resolveDesc(&d, &s);
  return s;
}

TEST(DistVolume, CountersMatchSchedules) {
  // Every token-schedule row of the algorithm table.
  for (const AlgoEntry& st : algorithms()) {
    if (st.schedule == nullptr) continue;
    for (int P : {2, 3, 4}) {
      for (attncclLayout_t layout : {attncclLayoutContiguous, attncclLayoutZigzag}) {
        CaseSpec spec;
        spec.seqLen = 50 * P + 3;
        spec.hq = 4;
        spec.hkv = 2;
        spec.dim = 16;
        spec.dtype = attncclBfloat16;
        spec.causal = true;
        spec.windowLeft = layout == attncclLayoutZigzag ? 40 : -1;
        spec.layout = layout;
        AttnCase c(spec, testSeed());
        const attncclAttnDesc_t& d = c.desc();
        std::string err = attnccl::test::runRanks(P, attnccl::test::Mode::kThreads,
                                                  [&](int rank, int n, const attncclUniqueId& id) -> std::string {
          attncclComm_t comm = nullptr;
          RK_SUB(attnccl::test::initComm(&comm, rank, n, id, "shm"));
          Problem p = Problem::fromLayout(shapeOf(d), n);
          int64_t T = p.tokens[rank].size();
          const int64_t qe = T * d.numHeadsQ * d.headDim, ke = T * d.numHeadsKV * d.headDim;
          Tensor q = randomTensor(d.dtype, qe, 1), k = randomTensor(d.dtype, ke, 2), v = randomTensor(d.dtype, ke, 3);
          Tensor out(d.dtype, qe), dq(d.dtype, qe), dk(d.dtype, ke), dv(d.dtype, ke);
          std::vector<float> lse(static_cast<size_t>(T) * d.numHeadsQ);
          for (bool bwd : {false, true}) {
            attncclCommStats_t a = {sizeof(a), 0, 0, 0, 0}, b = {sizeof(b), 0, 0, 0, 0};
            RK_OK(attncclCommGetStats(comm, &a));
            if (!bwd) {
              RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), out.data(), lse.data(), &d, st.algo, comm, nullptr));
            } else {
              RK_OK(attncclAttnBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), q.data(), dq.data(),
                                        dk.data(), dv.data(), &d, st.algo, comm, nullptr));
            }
            RK_OK(attncclCommGetStats(comm, &b));
            Volume want = scheduleVolume(p, st.schedule(p, bwd), rank);
            RK_CHECK(b.bytesSent - a.bytesSent == want.sent && b.bytesRecv - a.bytesRecv == want.recv,
                     "%s P=%d %s: sent %llu recv %llu, schedule says %llu / %llu", attncclAlgoName(st.algo), n,
                     bwd ? "bwd" : "fwd", static_cast<unsigned long long>(b.bytesSent - a.bytesSent),
                     static_cast<unsigned long long>(b.bytesRecv - a.bytesRecv),
                     static_cast<unsigned long long>(want.sent), static_cast<unsigned long long>(want.recv));
          }
          RK_OK(attncclCommDestroy(comm));
          return "";
        });
        EXPECT_EQ(err, "") << c.name();
      }
    }
  }
}

}  // namespace
