// attncclCommShrink: the survivors of a communicator form a new one, numbered in their old order,
// without the excluded ranks and without aborting the parent.
//   - healthy parents (threads and processes): shrinks excluding 1 or 2 ranks, rank 0 among
//     them, one after the other on the same parent; every new communicator runs an all-gather
//     and an all-reduce checked exactly and an attention forward + backward checked against the
//     fp64 reference; a new communicator shrunk again;
//   - parents in an error state: a rank process SIGKILLed in the middle of collectives, the
//     survivors (whose last call failed) shrink without aborting and compute on the new
//     communicator, then destroy the parent; a non-blocking parent whose call is still in
//     progress (waiting on the rank that is about to be killed) while its survivors shrink;
//   - argument errors, and survivors that disagree on the excluded ranks, then agree and retry.
// No time is asserted; timeouts are safety nets.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "support/dist_case.h"
#include "support/proc_ranks.h"
#include "support/ranks.h"

using namespace attnccl::test;
using attnccl_test::AttnCase;
using attnccl_test::CaseSpec;

namespace {

// The attention case every new communicator runs (causal, grouped heads), with its fp64
// reference and the one-rank result computed before any rank starts.
AttnCase& attnCase() {
  static AttnCase* c = [] {
    CaseSpec s;
    s.seqLen = 60;
    s.hq = 4;
    s.hkv = 2;
    s.dim = 16;
    s.causal = true;
    auto* k = new AttnCase(s, 0x5121c4);
    k->reference();
    k->referenceGrads();
    attnccl_test::singleRank(*k);
    return k;
  }();
  return *c;
}

std::vector<int> survivorsOf(int n, const std::vector<int>& excluded) {
  std::vector<int> s;
  for (int r = 0; r < n; ++r) {
    if (std::find(excluded.begin(), excluded.end(), r) == excluded.end()) s.push_back(r);
  }
  return s;
}

// Waits until a non-blocking communicator has no call in progress; its state.
attncclResult_t settle(attncclComm_t comm) {
  attncclResult_t state = attncclInProgress;
  for (int i = 0; i < 60000 && state == attncclInProgress; ++i) {
    if (attncclCommGetAsyncError(comm, &state) != attncclSuccess) return attncclInternalError;
    if (state == attncclInProgress) usleep(1000);
  }
  return state;
}

// Runs a call; on a non-blocking communicator waits for it and returns its final result.
attncclResult_t done(attncclResult_t r, attncclComm_t comm) { return r == attncclInProgress ? settle(comm) : r; }

// The new communicator of old rank `old`, whose survivors are `survivors` (old ranks,
// increasing): its size and rank, an all-gather and an all-reduce checked exactly and, when
// `attention`, the attention case forward and backward.
std::string checkNewComm(attncclComm_t nc, int old, const std::vector<int>& survivors, bool attention) {
  const int m = static_cast<int>(survivors.size());
  const int want = static_cast<int>(std::find(survivors.begin(), survivors.end(), old) - survivors.begin());
  int count = -1, me = -1;
  RK_OK(attncclCommCount(nc, &count));
  RK_OK(attncclCommUserRank(nc, &me));
  RK_CHECK(count == m && me == want, "old rank %d: new comm has %d ranks, rank %d (want %d of %d)", old, count, me,
           want, m);
  int32_t mine[2] = {old, old * 7 + 1};
  std::vector<int32_t> all(2 * m, -1);
  RK_OK(done(attncclAllGather(mine, all.data(), 2, attncclInt32, nc, nullptr), nc));
  for (int i = 0; i < m; ++i) {
    RK_CHECK(all[2 * i] == survivors[i] && all[2 * i + 1] == survivors[i] * 7 + 1,
             "all-gather slot %d holds %d %d, want old rank %d", i, all[2 * i], all[2 * i + 1], survivors[i]);
  }
  const size_t n = 1000;
  std::vector<int64_t> x(n), sum(n, -1);
  for (size_t j = 0; j < n; ++j) x[j] = (old + 1) * 1000003 + static_cast<int64_t>(j);
  RK_OK(done(attncclAllReduce(x.data(), sum.data(), n, attncclInt64, attncclSum, nc, nullptr), nc));
  int64_t base = 0;
  for (int s : survivors) base += (s + 1) * 1000003;
  for (size_t j = 0; j < n; ++j) {
    RK_CHECK(sum[j] == base + m * static_cast<int64_t>(j), "all-reduce element %zu is %lld, want %lld", j,
             static_cast<long long>(sum[j]), static_cast<long long>(base + m * static_cast<int64_t>(j)));
  }
  if (attention) {
    AttnCase& c = attnCase();
    RK_SUB(attnccl_test::checkRank(c, nc, attncclAlgoRing, /*backward=*/true, &attnccl_test::singleRank(c)));
  }
  return "";
}

attncclConfig_t parentConfig(const char* transport, int blocking, int timeoutMs) {
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.transport = transport;
  cfg.cpuThreads = 1;
  cfg.timeoutMs = timeoutMs;
  cfg.blocking = blocking;
  return cfg;
}

// (a) Healthy parent of 4 ranks: shrinks one after the other excluding {0} (the parent's rank
// 0: the new root is old rank 1), {1, 3} and nobody; each checked, then destroyed.
TEST(CommShrink, HealthyParentExcludingOneOrTwoRanksIncludingRankZero) {
  attnCase();
  const std::vector<std::vector<int>> sets = {{0}, {3, 1}, {}};
  for (Mode mode : {Mode::kThreads, Mode::kProcesses}) {
    std::string err = runRanks(4, mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      attncclConfig_t cfg = parentConfig(nullptr, 1, 60000);
      attncclComm_t parent = nullptr;
      RK_OK(attncclCommInitRank(&parent, n, id, rank, &cfg));
      for (const std::vector<int>& excl : sets) {
        if (std::find(excl.begin(), excl.end(), rank) != excl.end()) continue;  // takes no part
        attncclComm_t nc = nullptr;
        RK_OK(attncclCommShrink(parent, excl.data(), static_cast<int>(excl.size()), &nc, nullptr));
        RK_CHECK(nc != nullptr, "no new communicator");
        RK_SUB(checkNewComm(nc, rank, survivorsOf(n, excl), /*attention=*/excl.size() > 0));
        RK_OK(attncclCommDestroy(nc));
      }
      // The parent is still whole: every rank, excluded ones too, uses it once more.
      int32_t mine = rank, all[4] = {-1, -1, -1, -1};
      RK_OK(attncclAllGather(&mine, all, 1, attncclInt32, parent, nullptr));
      for (int r = 0; r < n; ++r) RK_CHECK(all[r] == r, "parent all-gather slot %d holds %d", r, all[r]);
      RK_OK(attncclCommDestroy(parent));
      return "";
    });
    EXPECT_EQ(err, "") << modeName(mode);
  }
}

// A shrink's communicator shrinks in turn (it has a listener of its own): 4 -> 3 (without old
// rank 0) -> 2 (without its rank 2, old rank 3), over processes.
TEST(CommShrink, TheNewCommunicatorShrinksAgain) {
  attnCase();
  std::string err = runRanks(4, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclConfig_t cfg = parentConfig(nullptr, 1, 60000);
    attncclComm_t parent = nullptr, child = nullptr, grandchild = nullptr;
    RK_OK(attncclCommInitRank(&parent, n, id, rank, &cfg));
    if (rank != 0) {
      const int first[1] = {0}, second[1] = {2};
      RK_OK(attncclCommShrink(parent, first, 1, &child, nullptr));
      if (rank != 3) {
        RK_OK(attncclCommShrink(child, second, 1, &grandchild, nullptr));
        RK_SUB(checkNewComm(grandchild, rank - 1, {0, 1}, /*attention=*/true));  // child ranks 0, 1
        RK_OK(attncclCommDestroy(grandchild));
      }
      RK_OK(attncclCommDestroy(child));
    }
    RK_OK(attncclCommDestroy(parent));
    return "";
  });
  EXPECT_EQ(err, "");
}

// (b) 4 rank processes call all-gathers (or attention forwards) in a loop; the test SIGKILLs
// `victim` once every rank has called a few, i.e. in the middle of a call. The survivors' loop
// ends with a failed call (the parent is now in an error state); without aborting it they
// shrink excluding the victim, check the new communicator (attention re-sharded over 3 ranks),
// and destroy both (the parent first when parentFirst).
void killedThenShrink(const char* tp, int victim, bool parentFirst, bool attentionLoop) {
  attnCase();
  const int n = 4;
  ProcRanks ranks(n, [&](int rank, int nranks, const attncclUniqueId& id, const Say& say) -> std::string {
    // A survivor's last call may wait on a rank that already failed and left (over UCX it does
    // not say so) until this timeout: it keeps the test short. The shrink waits for such a
    // survivor (the rendezvous waits the new timeout plus the parent's).
    attncclConfig_t cfg = parentConfig(tp, 1, 4000);
    attncclComm_t parent = nullptr;
    RK_OK(attncclCommInitRank(&parent, nranks, id, rank, &cfg));
    std::vector<float> a(4096, 1.f * rank), b(4096 * nranks);
    const attncclAttnDesc_t& d = attnCase().desc();
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, nranks, rank, &T, nullptr));
    std::vector<float> q(static_cast<size_t>(T) * d.numHeadsQ * d.headDim, 0.25f),
        kv(static_cast<size_t>(T) * d.numHeadsKV * d.headDim, 0.5f), out(q.size()),
        lse(static_cast<size_t>(T) * d.numHeadsQ);
    attncclResult_t r = attncclSuccess;
    for (int i = 0; r == attncclSuccess && i < 1000000; ++i) {
      if (attentionLoop) {
        r = attncclAttnForward(q.data(), kv.data(), kv.data(), out.data(), lse.data(), &d, attncclAlgoRing, parent,
                               nullptr);
      } else {
        r = attncclAllGather(a.data(), b.data(), a.size(), attncclFloat32, parent, nullptr);
      }
      if (i == 3) say("CALLING");
    }
    attncclResult_t async = attncclSuccess;
    RK_OK(attncclCommGetAsyncError(parent, &async));
    RK_CHECK(r != attncclSuccess && async != attncclSuccess, "parent not in an error state: last call %s, async %s",
             attncclGetErrorString(r), attncclGetErrorString(async));
    const int excl[1] = {victim};
    attncclComm_t nc = nullptr;
    RK_OK(attncclCommShrink(parent, excl, 1, &nc, nullptr));
    if (parentFirst) RK_OK(attncclCommDestroy(parent));
    RK_SUB(checkNewComm(nc, rank, survivorsOf(nranks, {victim}), /*attention=*/true));
    RK_OK(attncclCommDestroy(nc));
    if (!parentFirst) RK_OK(attncclCommDestroy(parent));
    return "";
  });
  ASSERT_TRUE(ranks.started());
  const bool calling = ranks.pollUntil(
      [&] {
        for (int r = 0; r < n; ++r) {
          if (!ranks.hasLine(r, "CALLING")) return false;
        }
        return true;
      },
      60);
  ASSERT_TRUE(calling) << "the ranks did not start calling";
  ranks.kill(victim);
  EXPECT_TRUE(ranks.reapAll(120)) << "a rank hung";
  EXPECT_TRUE(ranks.killedBySignal(victim, SIGKILL));
  for (int r = 0; r < n; ++r) {
    if (r == victim) continue;
    ASSERT_FALSE(ranks.lines(r).empty()) << tp << " rank " << r;
    EXPECT_EQ(ranks.lines(r).back(), "") << tp << " rank " << r;
    EXPECT_EQ(ranks.status(r), 0) << tp << " rank " << r;
  }
  EXPECT_EQ(childProcesses(), std::vector<int>());
}

TEST(CommShrink, KilledRankZeroSurvivorsShrinkTheFailedParentOnEveryTransport) {
  // Rank 0 of the parent dies: the survivors' root is old rank 1.
  for (const char* tp : testTransports()) killedThenShrink(tp, 0, /*parentFirst=*/false, /*attentionLoop=*/false);
}

TEST(CommShrink, KilledMidAttentionParentDestroyedBeforeTheNewCommunicatorIsUsed) {
  killedThenShrink("shm", 2, /*parentFirst=*/true, /*attentionLoop=*/true);
}

// A non-blocking parent whose survivors shrink while their call is still in progress: the
// victim stops calling (it waits to be killed), the survivors queue an all-gather that waits on
// it, shrink at once (the new communicator inherits non-blocking: attncclInProgress, then
// ready), compute on it, and only then is the victim killed; the parent's call then fails, and
// the parent is destroyed.
TEST(CommShrink, NonBlockingParentWithACallInProgress) {
  const int n = 4, victim = 1;
  ProcRanks ranks(n, [&](int rank, int nranks, const attncclUniqueId& id, const Say& say) -> std::string {
    attncclConfig_t cfg = parentConfig("shm", 0, 30000);
    attncclComm_t parent = nullptr;
    RK_EXPECT_RESULT(attncclCommInitRank(&parent, nranks, id, rank, &cfg), attncclInProgress);
    RK_OK(settle(parent));
    std::vector<float> a(1024, 1.f * rank), b(1024 * nranks);
    RK_OK(done(attncclAllGather(a.data(), b.data(), a.size(), attncclFloat32, parent, nullptr), parent));
    if (rank == victim) {
      say("WAITING");
      for (;;) pause();  // killed by the test
    }
    RK_EXPECT_RESULT(attncclAllGather(a.data(), b.data(), a.size(), attncclFloat32, parent, nullptr),
                     attncclInProgress);
    const int excl[1] = {victim};
    attncclComm_t nc = nullptr;
    RK_EXPECT_RESULT(attncclCommShrink(parent, excl, 1, &nc, nullptr), attncclInProgress);
    RK_CHECK(nc != nullptr, "no new communicator");
    RK_OK(settle(nc));
    attncclResult_t state = attncclSuccess;
    RK_OK(attncclCommGetAsyncError(parent, &state));
    RK_CHECK(state == attncclInProgress, "the parent's call is no longer in progress: %s",
             attncclGetErrorString(state));
    RK_SUB(checkNewComm(nc, rank, survivorsOf(nranks, {victim}), /*attention=*/false));
    say("SHRUNK");
    state = settle(parent);  // the victim is killed once every survivor said SHRUNK
    RK_CHECK(state == attncclRemoteError || state == attncclTimeout, "the parent's call ended with %s",
             attncclGetErrorString(state));
    RK_OK(attncclCommDestroy(parent));
    RK_OK(attncclCommDestroy(nc));
    return "";
  });
  ASSERT_TRUE(ranks.started());
  const bool shrunk = ranks.pollUntil(
      [&] {
        for (int r = 0; r < n; ++r) {
          if (!ranks.hasLine(r, r == victim ? "WAITING" : "SHRUNK")) return false;
        }
        return true;
      },
      90);
  EXPECT_TRUE(shrunk) << "the survivors did not shrink";
  ranks.kill(victim);
  EXPECT_TRUE(ranks.reapAll(60)) << "a rank hung";
  for (int r = 0; r < n; ++r) {
    if (r == victim) continue;
    ASSERT_FALSE(ranks.lines(r).empty()) << "rank " << r;
    EXPECT_EQ(ranks.lines(r).back(), "") << "rank " << r;
  }
}

// (c) Every bad argument: attncclInvalidArgument (or InvalidUsage for the parent's state) with a
// message naming it; nothing changes, and a valid shrink afterwards works.
TEST(CommShrink, BadArgumentsNameTheArgumentAndChangeNothing) {
  std::string err = runRanks(3, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclConfig_t pc = parentConfig(nullptr, 1, 60000);
    attncclComm_t parent = nullptr;
    RK_OK(attncclCommInitRank(&parent, n, id, rank, &pc));
    attncclComm_t nc = reinterpret_cast<attncclComm_t>(0x1);
    auto expect = [&](attncclResult_t r, attncclResult_t want, const char* text) -> std::string {
      RK_CHECK(r == want, "got %s, want %s (%s)", attncclGetErrorString(r), attncclGetErrorString(want), text);
      RK_CHECK(strstr(attncclGetLastError(nullptr), text) != nullptr, "message '%s' lacks '%s'",
               attncclGetLastError(nullptr), text);
      RK_CHECK(nc == nullptr, "newcomm not cleared (%s)", text);
      nc = reinterpret_cast<attncclComm_t>(0x1);
      return "";
    };
    const int other = (rank + 1) % n;
    const int one[1] = {other}, mine[1] = {rank}, dup[2] = {other, other}, big[1] = {n}, neg[1] = {-1};
    const int everyone[3] = {0, 1, 2};
    RK_EXPECT_RESULT(attncclCommShrink(nullptr, one, 1, &nc, nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(nullptr), "comm is NULL") != nullptr, "%s", attncclGetLastError(nullptr));
    RK_EXPECT_RESULT(attncclCommShrink(parent, one, 1, nullptr, nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(nullptr), "newcomm is NULL") != nullptr, "%s", attncclGetLastError(nullptr));
    RK_SUB(expect(attncclCommShrink(parent, nullptr, 1, &nc, nullptr), attncclInvalidArgument,
                  "excludeRanks is NULL but excludeCount is 1"));
    RK_SUB(expect(attncclCommShrink(parent, one, -1, &nc, nullptr), attncclInvalidArgument, "excludeCount is -1"));
    RK_SUB(expect(attncclCommShrink(parent, everyone, 3, &nc, nullptr), attncclInvalidArgument,
                  "excludeCount is 3 but the communicator has 3 ranks"));
    RK_SUB(expect(attncclCommShrink(parent, big, 1, &nc, nullptr), attncclInvalidArgument,
                  format("excludeRanks[0] is %d (must be in [0, 3))", n).c_str()));
    RK_SUB(expect(attncclCommShrink(parent, neg, 1, &nc, nullptr), attncclInvalidArgument,
                  "excludeRanks[0] is -1 (must be in [0, 3))"));
    RK_SUB(expect(attncclCommShrink(parent, dup, 2, &nc, nullptr), attncclInvalidArgument,
                  format("excludeRanks[1] is %d, which excludeRanks[0] names already", other).c_str()));
    RK_SUB(expect(attncclCommShrink(parent, mine, 1, &nc, nullptr), attncclInvalidArgument,
                  format("excludeRanks[0] is %d, the calling rank", rank).c_str()));
    attncclConfig_t bad = ATTNCCL_CONFIG_INITIALIZER;
    bad.magic = 0x1234;
    RK_SUB(expect(attncclCommShrink(parent, one, 1, &nc, &bad), attncclInvalidArgument, "config->magic is 0x1234"));
    bad = ATTNCCL_CONFIG_INITIALIZER;
    bad.cpuThreads = -3;
    RK_SUB(expect(attncclCommShrink(parent, one, 1, &nc, &bad), attncclInvalidArgument, "config->cpuThreads is -3"));
    // Nothing changed: a shrink of everyone (excluding nobody; excludeRanks may be NULL then),
    // with a config of its own, then the parent itself.
    attncclConfig_t cc = parentConfig(nullptr, 1, 60000);
    RK_OK(attncclCommShrink(parent, nullptr, 0, &nc, &cc));
    RK_SUB(checkNewComm(nc, rank, {0, 1, 2}, /*attention=*/false));
    RK_OK(attncclCommDestroy(nc));
    RK_OK(attncclCommFinalize(parent));
    nc = reinterpret_cast<attncclComm_t>(0x1);
    RK_SUB(expect(attncclCommShrink(parent, one, 1, &nc, nullptr), attncclInvalidUsage, "was finalized"));
    RK_OK(attncclCommDestroy(parent));
    return "";
  });
  EXPECT_EQ(err, "");
}

// Survivors that disagree: ranks 0 and 1 exclude {3}, rank 2 excludes {1} (the same root, old
// rank 0). Nobody gets a communicator; rank 2 is told the rendezvous serves another list. Then
// they agree on {3} and the retry works: ranks 0 and 1 meet the first attempt's server still
// waiting for ranks (same list, same key), which serves them again. Rank 2 retries only once
// ranks 0 and 1 have failed: sooner, its corrected call could complete their first attempt.
TEST(CommShrink, SurvivorsThatDisagreeFailThenARetryWorks) {
  std::atomic<int> failedFirst{0};
  std::string err = runRanks(4, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    // The failing attempt waits its own timeout plus the parent's: both short.
    attncclConfig_t pc = parentConfig("shm", 1, 2000);
    attncclComm_t parent = nullptr;
    RK_OK(attncclCommInitRank(&parent, n, id, rank, &pc));
    if (rank != 3) {
      // The failing attempt's timeout: ranks 0 and 1 wait it out (rank 2 never joins their
      // list). Rank 2 keeps asking until its own timeout and then reports the root's refusal,
      // which it has only if the root's rendezvous answered meanwhile: with 1 s it once had not
      // (ASan build, the root's thread late), so rank 2 gets 5 s, room for a slow machine.
      attncclConfig_t quick = parentConfig("shm", 1, rank == 2 ? 5000 : 1000);
      const int three[1] = {3}, one[1] = {1};
      attncclComm_t nc = nullptr;
      attncclResult_t r = attncclCommShrink(parent, rank == 2 ? one : three, 1, &nc, &quick);
      RK_CHECK(r != attncclSuccess && nc == nullptr, "a disagreeing shrink returned %s", attncclGetErrorString(r));
      if (rank == 2) {
        RK_CHECK(r == attncclInvalidUsage && strstr(attncclGetLastError(nullptr), "serves another communicator"),
                 "rank 2: %s: %s", attncclGetErrorString(r), attncclGetLastError(nullptr));
        for (int i = 0; i < 600000 && failedFirst.load() < 2; ++i) usleep(100);
      } else {
        failedFirst.fetch_add(1);
      }
      attncclConfig_t cc = parentConfig("shm", 1, 60000);
      RK_OK(attncclCommShrink(parent, three, 1, &nc, &cc));
      RK_SUB(checkNewComm(nc, rank, {0, 1, 2}, /*attention=*/false));
      RK_OK(attncclCommDestroy(nc));
    }
    RK_OK(attncclCommDestroy(parent));
    return "";
  });
  EXPECT_EQ(err, "");
}

// A shrink that fails because a survivor never comes (rank 2 does not call), retried without it:
// the retry's list differs, so the root's new server takes over from the first attempt's, which
// may still be waiting; rank 1 may meet the old one first and asks again.
TEST(CommShrink, AFailedShrinkRetriedWithoutTheRankThatNeverCame) {
  std::string err = runRanks(4, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclConfig_t pc = parentConfig("shm", 1, 2000);
    attncclComm_t parent = nullptr;
    RK_OK(attncclCommInitRank(&parent, n, id, rank, &pc));
    if (rank < 2) {
      attncclConfig_t quick = parentConfig("shm", 1, 1000);
      const int first[1] = {3}, second[2] = {3, 2};
      attncclComm_t nc = nullptr;
      attncclResult_t r = attncclCommShrink(parent, first, 1, &nc, &quick);
      RK_CHECK(r != attncclSuccess && nc == nullptr, "a shrink missing rank 2 returned %s", attncclGetErrorString(r));
      attncclConfig_t cc = parentConfig("shm", 1, 60000);
      RK_OK(attncclCommShrink(parent, second, 2, &nc, &cc));
      RK_SUB(checkNewComm(nc, rank, {0, 1}, /*attention=*/true));
      RK_OK(attncclCommDestroy(nc));
    }
    RK_OK(attncclCommDestroy(parent));
    return "";
  });
  EXPECT_EQ(err, "");
}

}  // namespace
