// Faults with a known script: attncclCommAbort from every state a call can block in (a
// collective's wait, an attention collective, a hybrid call waiting in its group view, a
// non-blocking initialisation, a queue of non-blocking calls), timeouts, and peers killed with
// SIGKILL on both transports. Each checks that the call ends within a bound, with
// attncclRemoteError or attncclTimeout, that the peers learn it, and that nothing is left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "support/proc_ranks.h"
#include "support/ranks.h"

using namespace attnccl::test;

namespace {

// The bounds below tell a mechanism apart, never a machine's speed: an abort or a peer's
// liveness check ends a wait in milliseconds, a timeout only after the configured 30 s (or the
// test's shorter one). A bound of a third of the timeout separates the two with room for a slow
// or loaded machine.
constexpr double kWellBeforeTimeout = 10.0;  // seconds, against a 30 s timeout

// Communicators of `n` thread ranks created from this thread (the ranks then run on any thread).
std::vector<attncclComm_t> threadComms(int n, const char* transport, int timeoutMs, int hybridGroup = 0) {
  attncclUniqueId id;
  std::vector<attncclComm_t> comms(n, nullptr);
  if (attncclGetUniqueId(&id) != attncclSuccess) return comms;
  std::vector<std::thread> t;
  for (int r = 0; r < n; ++r) {
    t.emplace_back([&, r] {
      attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
      cfg.transport = transport;
      cfg.timeoutMs = timeoutMs;
      cfg.cpuThreads = 1;
      if (hybridGroup > 0) cfg.hybridGroupSize = hybridGroup;
      if (attncclCommInitRank(&comms[r], n, id, r, &cfg) != attncclSuccess) comms[r] = nullptr;
    });
  }
  for (auto& th : t) th.join();
  return comms;
}

bool allValid(const std::vector<attncclComm_t>& comms) {
  for (attncclComm_t c : comms) {
    if (c == nullptr) return false;
  }
  return true;
}

// A small attention problem for one rank of a communicator.
struct AttnBuffers {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  std::vector<float> q, kv, out, lse;
  AttnBuffers(int nranks, int rank) {
    d.seqLen = 64;
    d.numHeadsQ = 4;
    d.numHeadsKV = 4;
    d.headDim = 16;
    int64_t t = 0;
    attncclAttnLocalTokens(&d, nranks, rank, &t, nullptr);
    q.assign(static_cast<size_t>(t) * 64 + 1, 0.5f);
    kv = q;
    out = q;
    lse.assign(static_cast<size_t>(t) * 4 + 1, 0.f);
  }
  attncclResult_t forward(attncclComm_t c, attncclAlgo_t algo) {
    return attncclAttnForward(q.data(), kv.data(), kv.data(), out.data(), lse.data(), &d, algo, c, nullptr);
  }
};

// Blocks `call` on rank 0 (the peers never join), aborts it from this thread after 200 ms, and
// checks that the abort and the blocked call return well before the 30 s timeout, the call with
// an error.
void abortBlocked(const std::vector<attncclComm_t>& comms, const std::function<attncclResult_t()>& call,
                  const std::string& what) {
  std::atomic<int> result{-1};
  std::atomic<double> returnedAt{0};
  std::thread blocked([&] {
    result = call();
    returnedAt = monoSeconds();
  });
  usleep(200 * 1000);
  const double t0 = monoSeconds();
  EXPECT_EQ(attncclCommAbort(comms[0]), attncclSuccess) << what;
  const double abortSec = monoSeconds() - t0;
  blocked.join();
  EXPECT_LT(abortSec, kWellBeforeTimeout) << what;
  EXPECT_LT(returnedAt - t0, kWellBeforeTimeout) << what;
  EXPECT_NE(result.load(), attncclSuccess) << what;
  printf("[ abort ] %-44s abort %.3f s, blocked call returned %s\n", what.c_str(), abortSec,
         attncclGetErrorString(static_cast<attncclResult_t>(result.load())));
}

TEST(Faults, AbortWakesBlockedCallsOnEveryTransport) {
  for (const char* tp : testTransports()) {
    {
      std::vector<attncclComm_t> comms = threadComms(2, tp, 30000);
      ASSERT_TRUE(allValid(comms)) << tp;
      std::vector<float> a(4096, 1.f), b(8192);
      abortBlocked(comms, [&] { return attncclAllGather(a.data(), b.data(), 4096, attncclFloat32, comms[0], nullptr); },
                   std::string("allgather over ") + tp);
      // The peer learns it: a call fails well before its 30 s timeout (the first may still
      // complete: the aborted rank had posted its part before it stopped).
      const double t0 = monoSeconds();
      attncclResult_t r = attncclSuccess;
      for (int i = 0; i < 3 && r == attncclSuccess; ++i) {
        r = attncclAllGather(a.data(), b.data(), 4096, attncclFloat32, comms[1], nullptr);
      }
      EXPECT_TRUE(r == attncclRemoteError || r == attncclTimeout) << tp << ": " << attncclGetErrorString(r);
      EXPECT_LT(monoSeconds() - t0, kWellBeforeTimeout) << tp;
      EXPECT_EQ(attncclCommAbort(comms[1]), attncclSuccess);
    }
    for (attncclAlgo_t algo : {attncclAlgoRing, attncclAlgoUlysses}) {
      std::vector<attncclComm_t> comms = threadComms(3, tp, 30000);
      ASSERT_TRUE(allValid(comms)) << tp;
      AttnBuffers buf(3, 0);
      abortBlocked(comms, [&] { return buf.forward(comms[0], algo); },
                   std::string("attention ") + attncclAlgoName(algo) + " over " + tp);
      for (int r = 1; r < 3; ++r) EXPECT_EQ(attncclCommAbort(comms[r]), attncclSuccess);
    }
  }
}

TEST(Faults, AbortWhileHybridWaitsInItsGroupView) {
  // Rank 0 makes its group and ring views (engines over the parent's transports, made locally)
  // and then waits in the group exchange for rank 1, which never calls.
  std::vector<attncclComm_t> comms = threadComms(4, "shm", 30000, 2);
  ASSERT_TRUE(allValid(comms));
  AttnBuffers buf(4, 0);
  abortBlocked(comms, [&] { return buf.forward(comms[0], attncclAlgoHybrid); }, "hybrid waiting in its group view");
  for (int r = 1; r < 4; ++r) EXPECT_EQ(attncclCommAbort(comms[r]), attncclSuccess);
}

TEST(Faults, AbortDuringANonBlockingInitThatWaitsForMissingRanks) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  cfg.timeoutMs = 30000;
  attncclComm_t comm = nullptr;
  ASSERT_EQ(attncclCommInitRank(&comm, 2, id, 0, &cfg), attncclInProgress);
  usleep(200 * 1000);
  attncclResult_t state = attncclSuccess;
  ASSERT_EQ(attncclCommGetAsyncError(comm, &state), attncclSuccess);
  EXPECT_EQ(state, attncclInProgress);
  float x = 0, y[2];
  EXPECT_EQ(attncclAllGather(&x, y, 1, attncclFloat32, comm, nullptr), attncclInProgress);  // queued behind init
  const double t0 = monoSeconds();
  EXPECT_EQ(attncclCommAbort(comm), attncclSuccess);
  EXPECT_LT(monoSeconds() - t0, kWellBeforeTimeout);
}

TEST(Faults, AbortDropsTheQueueOfANonBlockingCommunicator) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  std::vector<attncclComm_t> comms(2, nullptr);
  std::vector<std::thread> t;
  for (int r = 0; r < 2; ++r) {
    t.emplace_back([&, r] {
      attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
      cfg.blocking = r == 0 ? 0 : 1;
      cfg.timeoutMs = 30000;
      attncclResult_t res = attncclCommInitRank(&comms[r], 2, id, r, &cfg);
      if (res != attncclSuccess && res != attncclInProgress) comms[r] = nullptr;
    });
  }
  for (auto& th : t) th.join();
  ASSERT_TRUE(allValid(comms));
  std::vector<float> a(1024, 1.f), b(2048);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(attncclAllGather(a.data(), b.data(), 1024, attncclFloat32, comms[0], nullptr), attncclInProgress);
  }
  usleep(200 * 1000);
  const double t0 = monoSeconds();
  EXPECT_EQ(attncclCommAbort(comms[0]), attncclSuccess);
  EXPECT_LT(monoSeconds() - t0, kWellBeforeTimeout);
  EXPECT_EQ(attncclCommAbort(comms[1]), attncclSuccess);
}

TEST(Faults, TimeoutIsBoundedReportedAndSeenByThePeer) {
  for (const char* tp : testTransports()) {
    std::vector<attncclComm_t> comms = threadComms(2, tp, 500);
    ASSERT_TRUE(allValid(comms)) << tp;
    std::vector<float> a(64, 1.f), b(128);
    const double t0 = monoSeconds();
    EXPECT_EQ(attncclAllGather(a.data(), b.data(), 64, attncclFloat32, comms[0], nullptr), attncclTimeout) << tp;
    const double waited = monoSeconds() - t0;
    EXPECT_GE(waited, 0.45) << tp;  // not before its timeout
    EXPECT_LT(waited, 5.0) << tp;   // bounded by it: 10x the timeout, room for a slow machine
    EXPECT_NE(strstr(attncclGetLastError(comms[0]), "500 ms"), nullptr) << attncclGetLastError(comms[0]);
    attncclResult_t async = attncclSuccess;
    EXPECT_EQ(attncclCommGetAsyncError(comms[0], &async), attncclSuccess);
    EXPECT_EQ(async, attncclTimeout) << tp;
    // The failed communicator refuses further calls, naming the first failure.
    EXPECT_EQ(attncclAllGather(a.data(), b.data(), 64, attncclFloat32, comms[0], nullptr), attncclTimeout);
    EXPECT_NE(strstr(attncclGetLastError(nullptr), "failed earlier"), nullptr);
    // The late peer fails too (shm: it sees the failed rank leave; ucx: its own timeout). Its
    // first call may complete with what the failed rank had sent; the next cannot.
    attncclResult_t r = attncclSuccess;
    for (int i = 0; i < 2 && r == attncclSuccess; ++i) {
      r = attncclAllGather(a.data(), b.data(), 64, attncclFloat32, comms[1], nullptr);
    }
    EXPECT_TRUE(r == attncclRemoteError || r == attncclTimeout) << tp << ": " << attncclGetErrorString(r);
    // On shm it sees the failed rank leave (not its own timeout, which would say Timeout).
    if (strcmp(tp, "shm") == 0) EXPECT_EQ(r, attncclRemoteError);
    EXPECT_EQ(attncclCommDestroy(comms[0]), attncclSuccess);
    EXPECT_EQ(attncclCommDestroy(comms[1]), attncclSuccess);
  }
}

// Ranks as processes; `victim` SIGKILLs itself after its communicator is up and one collective
// has run. The others keep calling (all-gathers, or a chain: rank r receives from r-1 and sends
// to r+1, so only rank victim+1 waits on the victim directly) until a call fails, and must fail
// within `bound` seconds of the death, with attncclRemoteError.
void killedPeer(const char* tp, int nranks, int victim, bool chain, bool survivorsAbort, double bound,
                double stayFailed = 0) {
  const std::vector<std::string> shmBefore = devShmEntries();
  ProcRanks ranks(nranks, [&](int rank, int n, const attncclUniqueId& id, const Say& say) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, tp, 1, 30000));
    const size_t count = chain ? 100 : 20000;
    std::vector<float> a(count, 1.f), b(count * n);
    RK_OK(attncclAllGather(a.data(), b.data(), count, attncclFloat32, comm, nullptr));
    if (rank == victim) {
      say(format("DYING %.6f", monoSeconds()));
      raise(SIGKILL);
    }
    attncclResult_t r = attncclSuccess;
    const double end = monoSeconds() + 60;
    while (r == attncclSuccess && monoSeconds() < end) {
      if (chain) {
        RK_OK(attncclGroupStart());
        if (rank > 0) RK_OK(attncclRecv(b.data(), count, attncclFloat32, rank - 1, comm, nullptr));
        if (rank + 1 < n) RK_OK(attncclSend(a.data(), count, attncclFloat32, rank + 1, comm, nullptr));
        r = attncclGroupEnd();
      } else {
        r = attncclAllGather(a.data(), b.data(), count, attncclFloat32, comm, nullptr);
      }
    }
    say(format("FAIL %d %.6f %s", static_cast<int>(r), monoSeconds(), attncclGetLastError(comm)));
    if (!survivorsAbort) usleep(static_cast<useconds_t>(stayFailed * 1e6));  // failed but not gone
    const double a0 = monoSeconds();
    RK_OK(attncclCommAbort(comm));
    RK_CHECK(monoSeconds() - a0 < kWellBeforeTimeout, "abort took %.2f s", monoSeconds() - a0);
    return "";
  });
  ASSERT_TRUE(ranks.started());
  EXPECT_TRUE(ranks.reapAll(40)) << "a rank hung";
  EXPECT_TRUE(ranks.killedBySignal(victim, SIGKILL));
  double tDeath = 0;
  for (const std::string& l : ranks.lines(victim)) sscanf(l.c_str(), "DYING %lf", &tDeath);
  ASSERT_GT(tDeath, 0);
  for (int r = 0; r < nranks; ++r) {
    if (r == victim) continue;
    EXPECT_EQ(ranks.status(r), 0) << "rank " << r;
    ASSERT_FALSE(ranks.lines(r).empty()) << "rank " << r;
    EXPECT_EQ(ranks.lines(r).back(), "") << "rank " << r;
    int code = -1;
    double tFail = 0;
    for (const std::string& l : ranks.lines(r)) {
      if (sscanf(l.c_str(), "FAIL %d %lf", &code, &tFail) == 2) break;
    }
    EXPECT_EQ(code, attncclRemoteError) << tp << " rank " << r << ": " << ranks.lines(r)[0];
    EXPECT_LT(tFail - tDeath, bound) << tp << " rank " << r;
    printf("[ killed peer ] %s %s: rank %d failed %.3f s after rank %d died\n", tp, chain ? "chain" : "allgather", r,
           tFail - tDeath, victim);
  }
  EXPECT_EQ(newEntries(shmBefore, devShmEntries()), std::vector<std::string>());
  EXPECT_EQ(childProcesses(), std::vector<int>());
}

TEST(Faults, KilledPeerProcessFailsTheSurvivorsOnEveryTransport) {
  for (const char* tp : testTransports()) {
    // Timeout 30 s: failing well before it is liveness detection, not the timeout.
    killedPeer(tp, 3, 1, /*chain=*/false, /*survivorsAbort=*/true, kWellBeforeTimeout);
  }
}

TEST(Faults, AFailedRankTellsItsPeersWithoutWaitingForTheirTimeout) {
  // A chain of 4 processes over shm; rank 0 dies. Rank 1 waits on it directly; ranks 2 and 3 wait
  // only on their live predecessors, which stay (failed, not aborted) for 12 s: they still fail
  // within a few liveness intervals, through the failed ranks' closing flags, so well before the
  // predecessors leave (the bound, half the stay, tells the two apart).
  killedPeer("shm", 4, 0, /*chain=*/true, /*survivorsAbort=*/false, 6.0, /*stayFailed=*/12.0);
}

TEST(Faults, RankThatNeverConnectsTimesTheOthersOut) {
  ProcRanks ranks(3, [](int rank, int n, const attncclUniqueId& id, const Say& say) -> std::string {
    if (rank == 2) raise(SIGKILL);
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.timeoutMs = 1000;
    attncclComm_t comm = nullptr;
    const double t0 = monoSeconds();
    attncclResult_t r = attncclCommInitRank(&comm, n, id, rank, &cfg);
    const double took = monoSeconds() - t0;
    RK_CHECK(r == attncclTimeout, "init returned %s: %s", attncclGetErrorString(r), attncclGetLastError(nullptr));
    RK_CHECK(comm == nullptr, "a failed init returned a communicator");
    // Not before the timeout; bounded by it (10x, room for a slow machine).
    RK_CHECK(took > 0.9 && took < 10.0, "init failed after %.2f s (timeout 1 s)", took);
    return "";
  });
  ASSERT_TRUE(ranks.started());
  EXPECT_TRUE(ranks.reapAll(20));
  for (int r = 0; r < 2; ++r) {
    ASSERT_FALSE(ranks.lines(r).empty());
    EXPECT_EQ(ranks.lines(r).back(), "") << "rank " << r;
  }
}

}  // namespace
