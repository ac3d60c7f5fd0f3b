// The rendezvous's verdicts (src/comm/bootstrap.cc), with ranks as threads of this process that
// speak to it through BootstrapClient. What a surviving rank is told decides what its
// attncclCommInitRank returns, so each way a rendezvous can end is pinned here:
//   - every rank finishes: success everywhere;
//   - a rank leaves after the last round, while the others already said done (a rank killed at
//     the end of init; the case reliability.test_chaos once caught answering "invalid usage"):
//     the others get attncclRemoteError;
//   - a rank leaves while the others are in a round: the others get attncclRemoteError;
//   - a rank asks for another round while the others said done (ranks running different
//     programs): attncclInvalidUsage, on every rank;
//   - a shrink's rank told that the address serves another rendezvous, whose deadline then runs
//     out in a later attempt: attncclInvalidUsage naming the refusal, not attncclTimeout.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "attnccl.h"
#include "comm/bootstrap.h"

namespace attnccl {
namespace {

constexpr int kRanks = 3;
constexpr int kTimeoutMs = 10000;

// What one rank does after its first round.
enum class Then { Finish, Leave, AnotherRound };

// Runs kRanks ranks through connect and one round; rank r then does plan[r]. Returns each rank's
// result of that last step (Leave: attncclSuccess).
std::vector<attncclResult_t> runRendezvous(const std::vector<Then>& plan) {
  attncclUniqueId id;
  EXPECT_EQ(bootstrapGetUniqueId(&id), attncclSuccess);
  std::vector<attncclResult_t> results(kRanks, attncclInternalError);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      BootstrapClient client;
      attncclResult_t res = client.connect(id, kRanks, r, kTimeoutMs);
      if (res != attncclSuccess) {
        results[r] = res;
        return;
      }
      std::vector<std::string> all;
      res = client.allGather("rank " + std::to_string(r), &all);
      if (res != attncclSuccess) {
        results[r] = res;
        return;
      }
      for (int q = 0; q < kRanks; ++q) EXPECT_EQ(all[q], "rank " + std::to_string(q));
      switch (plan[r]) {
        case Then::Finish:
          results[r] = client.finish();
          break;
        case Then::Leave:
          client.close();
          results[r] = attncclSuccess;
          break;
        case Then::AnotherRound:
          results[r] = client.allGather("again", &all);
          break;
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

TEST(Bootstrap, EveryRankFinishing) {
  auto res = runRendezvous({Then::Finish, Then::Finish, Then::Finish});
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(res[r], attncclSuccess) << "rank " << r;
}

TEST(Bootstrap, ARankLeavingAfterTheLastRoundIsARemoteError) {
  for (int victim = 0; victim < kRanks; ++victim) {
    std::vector<Then> plan(kRanks, Then::Finish);
    plan[victim] = Then::Leave;
    auto res = runRendezvous(plan);
    for (int r = 0; r < kRanks; ++r) {
      if (r != victim) EXPECT_EQ(res[r], attncclRemoteError) << "rank " << r << ", rank " << victim << " left";
    }
  }
}

// (A rank that leaves before every rank has connected is awaited until the deadline instead: the
// server takes it for a rank that gave up and will come again, so that case ends in a timeout.)
TEST(Bootstrap, ARankLeavingDuringARoundIsARemoteError) {
  auto res = runRendezvous({Then::AnotherRound, Then::Leave, Then::AnotherRound});
  EXPECT_EQ(res[0], attncclRemoteError);
  EXPECT_EQ(res[2], attncclRemoteError);
}

TEST(Bootstrap, RanksDisagreeingOnTheRoundsIsInvalidUsage) {
  auto res = runRendezvous({Then::Finish, Then::AnotherRound, Then::Finish});
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(res[r], attncclInvalidUsage) << "rank " << r;
}

// A listener scripted as an abandoned shrink's server that then goes quiet: the first hello is
// refused as "another rendezvous", every later one is accepted and never answered (a loaded
// server, or the listener between two servers, as in an ASan CI run of test_comm_shrink). The
// client retries until its deadline; the answer it must report is the refusal it got.
TEST(Bootstrap, ARefusalForAnotherRendezvousOutlivesALaterSilentAttempt) {
  std::shared_ptr<BootstrapListener> listener;
  std::string address;
  ASSERT_EQ(bootstrapListen(&listener, &address), attncclSuccess);
  attncclUniqueId id;
  ASSERT_EQ(bootstrapIdAt(address, 42, &id), attncclSuccess);
  std::atomic<bool> done{false};
  std::atomic<int> hellos{0};
  std::thread server([&] {
    std::vector<int> silent;
    while (!done.load()) {
      pollfd pf{listener->fd(), POLLIN, 0};
      if (poll(&pf, 1, 20) <= 0) continue;
      const int c = accept(listener->fd(), nullptr, nullptr);
      if (c < 0) continue;
      char hello[64];
      pollfd pc{c, POLLIN, 0};
      if (poll(&pc, 1, 2000) > 0 && recv(c, hello, sizeof(hello), 0) > 0 && hellos.fetch_add(1) == 0) {
        const int32_t refusal[2] = {attncclInvalidUsage, -1};  // RoundHeader: another rendezvous
        EXPECT_EQ(send(c, refusal, sizeof(refusal), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(refusal)));
        close(c);
      } else {
        silent.push_back(c);
      }
    }
    for (int c : silent) close(c);
  });
  BootstrapClient client;
  client.setRetryOtherRendezvous(true);
  const attncclResult_t res = client.connect(id, 3, 1, 1500);
  const std::string msg = attncclGetLastError(nullptr);
  done.store(true);
  server.join();
  EXPECT_GE(hellos.load(), 2) << "the client did not ask again after the refusal";
  EXPECT_EQ(res, attncclInvalidUsage) << msg;
  EXPECT_NE(msg.find("serves another communicator"), std::string::npos) << msg;
}

}  // namespace
}  // namespace attnccl
