// Waiting ranks that sleep (transport/doorbell.h):
//   - the doorbell loses no wake-up: two threads ping-pong through two doorbells thousands of
//     times with a sleep timeout (30 s) far longer than the test, and no sleep may last until its
//     timeout (a lost wake-up stalls there); a sleep may end early without a ring (EINTR: a
//     signal for the process), which costs a look and is counted apart;
//   - a sleep that nobody rings ends by its timeout;
//   - communicators whose waits always sleep (ATTNCCL_WAIT_SLEEP=1, ATTNCCL_SPIN_US=0) move
//     every message size (eager, in-place/CMA pulls, staged chunks) correctly, ranks as threads
//     and as processes, and the attention collectives match the one-rank result.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "core/params.h"
#include "support/ranks.h"
#include "transport/doorbell.h"

namespace attnccl {
namespace {

TEST(Doorbell, PingPongLosesNoWakeUp) {
  constexpr int kRounds = 20000;
  constexpr int64_t kLongUs = 30LL * 1000 * 1000;  // a lost wake-up would stall for 30 s
  Doorbell bells[2];
  std::atomic<int> turn{0};  // whose move it is: the published state each side waits for
  std::atomic<int> stalled{0}, slept{0}, unrung{0};
  auto player = [&](int me) {
    for (int round = 0; round < kRounds; ++round) {
      const int want = 2 * round + me;
      while (turn.load(std::memory_order_acquire) != want) {
        const uint32_t seen = bells[me].arm();
        if (turn.load(std::memory_order_acquire) == want) {
          bells[me].cancel();
          break;
        }
        const auto sleepStart = std::chrono::steady_clock::now();
        bells[me].sleep(seen, kLongUs);
        slept.fetch_add(1);
        if (std::chrono::steady_clock::now() - sleepStart > std::chrono::seconds(5)) stalled.fetch_add(1);
        if (bells[me].seq.load() == seen && turn.load(std::memory_order_acquire) != want) unrung.fetch_add(1);
      }
      turn.store(want + 1, std::memory_order_release);
      bells[1 - me].ring();
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::thread a(player, 0), b(player, 1);
  a.join();
  b.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("  %d rounds in %.2f s, %d sleeps (%d ended without a ring)\n", kRounds, s, slept.load(), unrung.load());
  EXPECT_EQ(turn.load(), 2 * kRounds);
  EXPECT_EQ(stalled.load(), 0) << "a sleep lasted > 5 s: a lost wake-up";
  EXPECT_LT(unrung.load(), kRounds / 100) << "sleeps keep ending without a ring: the futex does not sleep";
  EXPECT_GT(slept.load(), 0) << "the players never slept: the test did not test the doorbell";
  EXPECT_EQ(bells[0].sleepers.load(), 0u);
  EXPECT_EQ(bells[1].sleepers.load(), 0u);
}

TEST(Doorbell, UnrungSleepEndsByItsTimeout) {
  Doorbell bell;
  const uint32_t seen = bell.arm();
  const auto t0 = std::chrono::steady_clock::now();
  bell.sleep(seen, 20000);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(ms, 15.0);
  EXPECT_EQ(bell.sleepers.load(), 0u);
}

// Every wait of these communicators sleeps as soon as nothing progressed.
class SleepingWaits : public ::testing::TestWithParam<test::Mode> {
 protected:
  void SetUp() override {
    setenv("ATTNCCL_WAIT_SLEEP", "1", 1);
    setenv("ATTNCCL_SPIN_US", "0", 1);
    reloadParams();
  }
  void TearDown() override {
    unsetenv("ATTNCCL_WAIT_SLEEP");
    unsetenv("ATTNCCL_SPIN_US");
    reloadParams();
  }
};

TEST_P(SleepingWaits, AllGatherEverySizeAndAttention) {
  const int P = 3;
  std::string err = test::runRanks(P, GetParam(), [](int rank, int nranks, const attncclUniqueId& id) {
    attncclComm_t comm = nullptr;
    std::string e = test::initComm(&comm, rank, nranks, id, "shm");
    if (!e.empty()) return e;
    // 4 B (eager) .. 8 MiB (pulls; staged chunks when the peer cannot be read in place)
    for (size_t n = 1; n <= (size_t(2) << 20); n *= 8) {
      std::vector<int32_t> mine(n), all(n * nranks, -1);
      for (size_t i = 0; i < n; ++i) mine[i] = static_cast<int32_t>(rank * 1000003 + i);
      RK_OK(attncclAllGather(mine.data(), all.data(), n, attncclInt32, comm, nullptr));
      for (int r = 0; r < nranks; ++r) {
        for (size_t i = 0; i < n; i += 97) {
          RK_CHECK(all[r * n + i] == static_cast<int32_t>(r * 1000003 + i), "count %zu rank %d element %zu", n, r, i);
        }
      }
    }
    // Attention over these waits: the ring (K/V blocks passed around) and the all-gather (one
    // fused exchange) must agree (their accuracy against fp64 is tested in tests/dist).
    attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
    d.dtype = attncclFloat32;
    d.seqLen = 96;
    d.numHeadsQ = 2;
    d.numHeadsKV = 2;
    d.headDim = 16;
    d.causal = 1;
    d.layout = attncclLayoutZigzag;
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, nranks, rank, &T, nullptr));
    const size_t elems = static_cast<size_t>(T) * 2 * 16;
    std::vector<float> q(elems), k(elems), v(elems), o(elems, NAN), lse(static_cast<size_t>(T) * 2, NAN);
    for (size_t i = 0; i < elems; ++i) {
      q[i] = 0.01f * static_cast<float>((i * 7 + rank * 13) % 23);
      k[i] = 0.02f * static_cast<float>((i * 5 + rank * 3) % 19);
      v[i] = 0.03f * static_cast<float>((i * 11 + rank) % 17);
    }
    std::vector<float> oRing = o, oGather = o, lseRing = lse, lseGather = lse;
    RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), oRing.data(), lseRing.data(), &d, attncclAlgoRing, comm,
                             nullptr));
    RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), oGather.data(), lseGather.data(), &d, attncclAlgoAllGather,
                             comm, nullptr));
    for (size_t i = 0; i < elems; ++i) {
      RK_CHECK(std::fabs(oRing[i] - oGather[i]) <= 1e-5f, "O[%zu]: ring %g, all-gather %g", i, oRing[i], oGather[i]);
    }
    RK_OK(attncclCommDestroy(comm));
    return std::string();
  });
  EXPECT_EQ(err, "");
}

INSTANTIATE_TEST_SUITE_P(Modes, SleepingWaits, ::testing::Values(test::Mode::kThreads, test::Mode::kProcesses),
                         [](const ::testing::TestParamInfo<test::Mode>& i) { return test::modeName(i.param); });

}  // namespace
}  // namespace attnccl
