// Non-blocking communicators (config.blocking = 0): every call returns attncclInProgress and
// completes in the background, in order; attncclCommGetAsyncError tells when (attncclSuccess) or
// what failed. Building blocks and attention collectives on both transports, checked against the
// same calls on a blocking communicator of the same ranks; non-blocking init and split; a
// failure in the background.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "support/proc_ranks.h"
#include "support/ranks.h"

using namespace attnccl::test;

namespace {

// Polls the async error until it is not attncclInProgress (bounded).
attncclResult_t settle(attncclComm_t comm, double seconds = 60) {
  attncclResult_t state = attncclInProgress;
  const double end = monoSeconds() + seconds;
  while (state == attncclInProgress && monoSeconds() < end) {
    if (attncclCommGetAsyncError(comm, &state) != attncclSuccess) return attncclInternalError;
    if (state == attncclInProgress) usleep(500);
  }
  return state;
}

std::vector<float> seeded(size_t n, int rank, int salt) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.37f * static_cast<float>(i) + 1.3f * rank + 0.7f * salt);
  return v;
}

// Everything a rank computes on one communicator; compared between the blocking and the
// non-blocking communicator of the same ranks.
struct Results {
  std::vector<float> gathered, reduced, exchanged, ring, heads, out, lse, dq, dk, dv, merged, mergedLse;
};

constexpr size_t kCount = 3000;  // beyond the shm eager size, so the pull path runs too

// Issues every call on `comm`; on a non-blocking one they are all queued, then settled once.
std::string issueAll(attncclComm_t comm, int rank, int n, bool blocking, Results* res) {
  const attncclResult_t ok = blocking ? attncclSuccess : attncclInProgress;
  // Inputs live until the end: a non-blocking communicator's queue is settled before returning.
  const std::vector<float> mine = seeded(kCount, rank, 1), block = seeded(kCount * n, rank, 2);
  const float* in = mine.data();
  const float* blk = block.data();
  res->gathered.assign(kCount * n, 0.f);
  res->reduced.assign(kCount, 0.f);
  res->exchanged.assign(kCount * n, 0.f);
  res->ring.assign(kCount, 0.f);
  RK_EXPECT_RESULT(attncclAllGather(in, res->gathered.data(), kCount, attncclFloat32, comm, nullptr), ok);
  RK_EXPECT_RESULT(
      attncclReduceScatter(blk, res->reduced.data(), kCount, attncclFloat32, attncclSum, comm, nullptr), ok);
  RK_EXPECT_RESULT(attncclAllToAll(blk, res->exchanged.data(), kCount, attncclFloat32, comm, nullptr), ok);
  RK_OK(attncclGroupStart());
  RK_OK(attncclSend(in, kCount, attncclFloat32, (rank + 1) % n, comm, nullptr));
  RK_OK(attncclRecv(res->ring.data(), kCount, attncclFloat32, (rank + n - 1) % n, comm, nullptr));
  RK_EXPECT_RESULT(attncclGroupEnd(), ok);

  // Attention: GQA, causal zigzag over 2 documents; forward with the ring, backward with Ulysses.
  static const int64_t cu[] = {0, 37, 80};
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.seqLen = 80;
  d.numHeadsQ = 4;
  d.numHeadsKV = 2;
  d.headDim = 16;
  d.layout = attncclLayoutZigzag;
  d.causal = 1;
  d.numSeqs = 2;
  d.cuSeqlens = cu;
  int64_t t = 0;
  RK_OK(attncclAttnLocalTokens(&d, n, rank, &t, nullptr));
  const size_t qn = static_cast<size_t>(t) * 64, kvn = static_cast<size_t>(t) * 32;
  const std::vector<float> qv = seeded(qn + 1, rank, 3), kv = seeded(kvn + 1, rank, 4), vv = seeded(kvn + 1, rank, 5),
                           dv = seeded(qn + 1, rank, 6);
  const float *q = qv.data(), *k = kv.data(), *v = vv.data(), *dout = dv.data();
  res->out.assign(qn + 1, 0.f);
  res->lse.assign(static_cast<size_t>(t) * 4 + 1, 0.f);
  res->dq.assign(qn + 1, 0.f);
  res->dk.assign(kvn + 1, 0.f);
  res->dv.assign(kvn + 1, 0.f);
  RK_EXPECT_RESULT(
      attncclAttnForward(q, k, v, res->out.data(), res->lse.data(), &d, attncclAlgoRing, comm, nullptr), ok);
  RK_EXPECT_RESULT(attncclAttnBackward(q, k, v, res->out.data(), res->lse.data(), dout, res->dq.data(),
                                       res->dk.data(), res->dv.data(), &d, attncclAlgoUlysses, comm, nullptr),
                   ok);
  int first = 0, heads = 0;
  RK_OK(attncclHeadRange(4, n, rank, &first, &heads));
  res->heads.assign(static_cast<size_t>(d.seqLen) * heads * 16 + 1, 0.f);
  RK_EXPECT_RESULT(attncclHeadAllToAll(q, res->heads.data(), 4, attncclSeqToHead, &d, comm, nullptr), ok);
  // Merge two partials (local work, queued in order like the rest).
  res->merged = seeded(qn + 1, rank, 7);
  res->mergedLse = seeded(static_cast<size_t>(t) * 4 + 1, rank, 8);
  const std::vector<float> ob = seeded(qn + 1, rank, 9), lb = seeded(static_cast<size_t>(t) * 4 + 1, rank, 10);
  RK_EXPECT_RESULT(attncclMergeStates(res->merged.data(), res->mergedLse.data(), ob.data(), lb.data(), t, 4, 16,
                                      attncclFloat32, comm, nullptr),
                   ok);
  if (!blocking) {
    attncclResult_t state = settle(comm);
    RK_CHECK(state == attncclSuccess, "queued calls ended with %s: %s", attncclGetErrorString(state),
             attncclGetLastError(comm));
  }
  return "";
}

std::string compare(const Results& a, const Results& b) {
  struct Pair {
    const char* name;
    const std::vector<float>& x;
    const std::vector<float>& y;
  };
  for (const Pair& p : {Pair{"allgather", a.gathered, b.gathered}, Pair{"reducescatter", a.reduced, b.reduced},
                        Pair{"alltoall", a.exchanged, b.exchanged}, Pair{"send/recv", a.ring, b.ring},
                        Pair{"attn out", a.out, b.out}, Pair{"attn lse", a.lse, b.lse}, Pair{"dq", a.dq, b.dq},
                        Pair{"dk", a.dk, b.dk}, Pair{"dv", a.dv, b.dv}, Pair{"head all-to-all", a.heads, b.heads},
                        Pair{"merge", a.merged, b.merged}, Pair{"merge lse", a.mergedLse, b.mergedLse}}) {
    if (p.x.size() != p.y.size()) return format("%s: sizes differ", p.name);
    // Same ranks, same algorithms, same inputs: the results are the same bits.
    if (!p.x.empty() && memcmp(p.x.data(), p.y.data(), p.x.size() * sizeof(float)) != 0) {
      return format("%s differs between the blocking and the non-blocking communicator", p.name);
    }
  }
  return "";
}

// A blocking communicator of these ranks and a non-blocking child of the same ranks (a split of
// a blocking parent completes in the call), both with one compute thread.
std::string initBlockingAndNonBlocking(int rank, int n, const attncclUniqueId& id, const char* tp,
                                       attncclComm_t* blocking, attncclComm_t* nb) {
  RK_SUB(initComm(blocking, rank, n, id, tp, 1, 30000));
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  cfg.cpuThreads = 1;
  RK_OK(attncclCommSplit(*blocking, 0, rank, nb, &cfg));
  RK_CHECK(*nb != nullptr, "no child");
  return "";
}

TEST(NonBlocking, EveryCallCompletesInTheBackgroundWithTheBlockingResults) {
  for (const char* tp : testTransports()) {
    std::string err = runRanks(3, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      attncclComm_t blocking = nullptr, nb = nullptr;
      RK_SUB(initBlockingAndNonBlocking(rank, n, id, tp, &blocking, &nb));
      Results a, b;
      RK_SUB(issueAll(blocking, rank, n, true, &a));
      RK_SUB(issueAll(nb, rank, n, false, &b));
      RK_SUB(compare(a, b));
      // And the values are right where they are easy to state.
      for (int p = 0; p < n; ++p) {
        std::vector<float> want = seeded(kCount, p, 1);
        RK_CHECK(memcmp(b.gathered.data() + p * kCount, want.data(), kCount * sizeof(float)) == 0,
                 "allgather block %d", p);
      }
      std::vector<float> prev = seeded(kCount, (rank + n - 1) % n, 1);
      RK_CHECK(memcmp(b.ring.data(), prev.data(), kCount * sizeof(float)) == 0, "send/recv ring");
      RK_OK(attncclCommFinalize(nb));
      RK_OK(attncclCommDestroy(nb));
      RK_OK(attncclCommDestroy(blocking));
      return "";
    });
    EXPECT_EQ(err, "") << tp;
  }
}

// AllReduce (both paths, in place), Broadcast, Reduce (both paths), Barrier and a Max
// ReduceScatter queued on a non-blocking communicator complete in order with the blocking
// communicator's bits; inputs and outputs stay alive until the queue has settled.
TEST(NonBlocking, AllReduceBroadcastReduceBarrierQueueInOrder) {
  for (const char* tp : testTransports()) {
    std::string err = runRanks(3, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      attncclComm_t blocking = nullptr, nb = nullptr;
      RK_SUB(initBlockingAndNonBlocking(rank, n, id, tp, &blocking, &nb));
      const size_t small = 1001, large = 400000;  // one-round and reduce-scatter paths
      std::vector<std::vector<float>> out[2];
      for (int k = 0; k < 2; ++k) {
        attncclComm_t comm = k == 0 ? blocking : nb;
        const attncclResult_t ok = k == 0 ? attncclSuccess : attncclInProgress;
        auto& o = out[k];
        o.assign(6, {});
        o[0] = seeded(small, rank, 11);
        o[1] = seeded(large, rank, 12);
        o[2] = seeded(large, rank, 13);  // broadcast from rank 1: only rank 1's content matters
        o[3].assign(large, -7.f);        // reduce to rank 2: untouched elsewhere
        o[4].assign(small, -7.f);
        o[5].assign(small, 0.f);
        const std::vector<float>& blk = seeded(small * n, rank, 14);
        RK_EXPECT_RESULT(attncclAllReduce(o[0].data(), o[0].data(), small, attncclFloat32, attncclAvg, comm, nullptr),
                         ok);
        RK_EXPECT_RESULT(attncclAllReduce(o[1].data(), o[1].data(), large, attncclFloat32, attncclSum, comm, nullptr),
                         ok);
        RK_EXPECT_RESULT(attncclBroadcast(o[2].data(), o[2].data(), large, attncclFloat32, 1, comm, nullptr), ok);
        RK_EXPECT_RESULT(attncclBarrier(comm, nullptr), ok);
        RK_EXPECT_RESULT(attncclReduce(o[1].data(), o[3].data(), large, attncclFloat32, attncclMax, 2, comm, nullptr),
                         ok);
        RK_EXPECT_RESULT(attncclReduce(o[0].data(), o[4].data(), small, attncclFloat32, attncclMin, 0, comm, nullptr),
                         ok);
        RK_EXPECT_RESULT(
            attncclReduceScatter(blk.data(), o[5].data(), small, attncclFloat32, attncclMax, comm, nullptr), ok);
        if (k == 1) {
          attncclResult_t state = settle(comm);
          RK_CHECK(state == attncclSuccess, "queued calls ended with %s: %s", attncclGetErrorString(state),
                   attncclGetLastError(comm));
        }
      }
      for (size_t i = 0; i < out[0].size(); ++i) {
        RK_CHECK(memcmp(out[0][i].data(), out[1][i].data(), out[0][i].size() * sizeof(float)) == 0,
                 "result %zu differs between the blocking and the non-blocking communicator", i);
      }
      const std::vector<float> root = seeded(large, 1, 13);
      RK_CHECK(memcmp(out[1][2].data(), root.data(), large * sizeof(float)) == 0, "broadcast from rank 1");
      if (rank != 2) RK_CHECK(out[1][3][0] == -7.f && out[1][3][large - 1] == -7.f, "reduce wrote a non-root");
      RK_OK(attncclCommFinalize(nb));
      RK_OK(attncclCommDestroy(nb));
      RK_OK(attncclCommDestroy(blocking));
      return "";
    });
    EXPECT_EQ(err, "") << tp;
  }
}

TEST(NonBlocking, InitAndSplitOfANonBlockingCommunicator) {
  std::string err = runRanks(4, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    cfg.cpuThreads = 1;
    attncclComm_t comm = nullptr;
    RK_EXPECT_RESULT(attncclCommInitRank(&comm, n, id, rank, &cfg), attncclInProgress);
    RK_CHECK(comm != nullptr, "a non-blocking init returns its communicator at once");
    int count = 0;
    RK_OK(attncclCommCount(comm, &count));  // known from the arguments already
    RK_CHECK(count == n, "count %d", count);
    attncclResult_t state = settle(comm);
    RK_CHECK(state == attncclSuccess, "init ended with %s", attncclGetErrorString(state));
    // Split by parity, rank 3 opting out; the children are created in the background.
    attncclComm_t child = nullptr;
    const int color = rank == 3 ? ATTNCCL_SPLIT_NOCOLOR : rank % 2;
    RK_EXPECT_RESULT(attncclCommSplit(comm, color, -rank, &child, nullptr), attncclInProgress);
    if (rank == 3) {
      RK_CHECK(child == nullptr, "an opted-out rank got a communicator");
      RK_CHECK(settle(comm) == attncclSuccess, "parent after split");
      RK_OK(attncclCommDestroy(comm));
      return "";
    }
    RK_CHECK(child != nullptr, "no child communicator");
    state = settle(child);
    RK_CHECK(state == attncclSuccess, "child init ended with %s: %s", attncclGetErrorString(state),
             attncclGetLastError(child));
    int me = -1;
    RK_OK(attncclCommCount(child, &count));
    RK_OK(attncclCommUserRank(child, &me));
    const int expectCount = rank % 2 == 0 ? 2 : 1;  // {0, 2} and {1}
    RK_CHECK(count == expectCount, "child count %d", count);
    RK_CHECK(me == (rank == 2 ? 0 : rank == 0 ? 1 : 0), "rank %d has child rank %d", rank, me);
    int32_t x = rank, all[2] = {-1, -1};
    RK_EXPECT_RESULT(attncclAllGather(&x, all, 1, attncclInt32, child, nullptr), attncclInProgress);
    RK_CHECK(settle(child) == attncclSuccess, "child allgather");
    if (count == 2) RK_CHECK(all[0] == 2 && all[1] == 0, "child allgather %d %d", all[0], all[1]);
    RK_OK(attncclCommDestroy(child));
    RK_CHECK(settle(comm) == attncclSuccess, "parent");
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

TEST(NonBlocking, ABackgroundFailureIsReportedByGetAsyncError) {
  // Rank 1 (a process) dies; rank 0's queued calls fail in the background, and only
  // attncclCommGetAsyncError can tell.
  ProcRanks ranks(2, [](int rank, int n, const attncclUniqueId& id, const Say&) -> std::string {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.blocking = rank == 0 ? 0 : 1;
    cfg.timeoutMs = 30000;
    attncclComm_t comm = nullptr;
    attncclResult_t r = attncclCommInitRank(&comm, n, id, rank, &cfg);
    RK_CHECK(r == attncclSuccess || r == attncclInProgress, "init %s", attncclGetErrorString(r));
    if (rank == 0) RK_CHECK(settle(comm) == attncclSuccess, "init");
    std::vector<float> a(5000, 1.f), b(10000);
    RK_EXPECT_RESULT(attncclAllGather(a.data(), b.data(), 5000, attncclFloat32, comm, nullptr),
                     rank == 0 ? attncclInProgress : attncclSuccess);
    if (rank == 1) raise(SIGKILL);
    RK_CHECK(settle(comm) == attncclSuccess, "first allgather");
    for (int i = 0; i < 3; ++i) {
      RK_EXPECT_RESULT(attncclAllGather(a.data(), b.data(), 5000, attncclFloat32, comm, nullptr), attncclInProgress);
    }
    const double t0 = monoSeconds();
    attncclResult_t state = settle(comm);
    RK_CHECK(state == attncclRemoteError, "background failure reported as %s", attncclGetErrorString(state));
    RK_CHECK(monoSeconds() - t0 < 2.0, "reported after %.2f s (timeout 30 s)", monoSeconds() - t0);
    RK_CHECK(strstr(attncclGetLastError(comm), "rank 1") != nullptr, "message: %s", attncclGetLastError(comm));
    // Later calls are refused with the recorded failure.
    RK_EXPECT_RESULT(attncclAllGather(a.data(), b.data(), 5000, attncclFloat32, comm, nullptr), attncclRemoteError);
    RK_OK(attncclCommAbort(comm));
    return "";
  });
  ASSERT_TRUE(ranks.started());
  EXPECT_TRUE(ranks.reapAll(30));
  ASSERT_FALSE(ranks.lines(0).empty());
  EXPECT_EQ(ranks.lines(0).back(), "");
}

}  // namespace
