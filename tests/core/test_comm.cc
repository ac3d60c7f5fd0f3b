// Communicator lifecycle: init as threads, processes and mixed, world sizes 1..8, over every
// transport; queries, split, stats, errors that name their argument, abort.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "support/ranks.h"

using namespace attnccl::test;

namespace {

struct InitCase {
  int nranks;
  Mode mode;
  const char* transport;
};

std::string initCaseName(const testing::TestParamInfo<InitCase>& info) {
  return format("n%d_%s_%s", info.param.nranks, modeName(info.param.mode), info.param.transport);
}

class CommInit : public testing::TestWithParam<InitCase> {};

TEST_P(CommInit, InitQueryPingRingDestroy) {
  const InitCase c = GetParam();
  std::string err = runRanks(c.nranks, c.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, c.transport));
    int count = -1, me = -1;
    RK_OK(attncclCommCount(comm, &count));
    RK_OK(attncclCommUserRank(comm, &me));
    RK_CHECK(count == n && me == rank, "count %d rank %d", count, me);
    // A ring exchange whose payload encodes (sender, receiver).
    int next = (rank + 1) % n, prev = (rank + n - 1) % n;
    int64_t out = rank * 1000 + next, in = -1;
    RK_OK(attncclGroupStart());
    RK_OK(attncclSend(&out, 1, attncclInt64, next, comm, nullptr));
    RK_OK(attncclRecv(&in, 1, attncclInt64, prev, comm, nullptr));
    RK_OK(attncclGroupEnd());
    RK_CHECK(in == prev * 1000 + rank, "rank %d got %lld from %d", rank, static_cast<long long>(in), prev);
    attncclResult_t async = attncclInternalError;
    RK_OK(attncclCommGetAsyncError(comm, &async));
    RK_CHECK(async == attncclSuccess, "async error %d", async);
    RK_OK(attncclCommFinalize(comm));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

std::vector<InitCase> initCases() {
  std::vector<InitCase> v;
  for (const char* t : testTransports()) {
    for (int n : {1, 2, 3, 5, 8}) {
      for (Mode m : {Mode::kThreads, Mode::kProcesses, Mode::kMixed}) {
        if (n == 1 && m != Mode::kThreads) continue;
        v.push_back({n, m, t});
      }
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, CommInit, testing::ValuesIn(initCases()), initCaseName);

TEST(Comm, SplitByParityReversedKeys) {
  for (Mode mode : {Mode::kThreads, Mode::kProcesses}) {
    std::string err = runRanks(5, mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      attncclComm_t comm = nullptr, sub = nullptr;
      RK_SUB(initComm(&comm, rank, n, id));
      // Rank 4 opts out; the others split by parity, ordered by descending rank.
      int color = rank == 4 ? ATTNCCL_SPLIT_NOCOLOR : rank % 2;
      RK_OK(attncclCommSplit(comm, color, -rank, &sub, nullptr));
      if (rank == 4) {
        RK_CHECK(sub == nullptr, "opted-out rank got a communicator");
      } else {
        int count = 0, me = -1;
        RK_OK(attncclCommCount(sub, &count));
        RK_OK(attncclCommUserRank(sub, &me));
        RK_CHECK(count == 2, "sub count %d", count);
        RK_CHECK(me == (rank < 2 ? 1 : 0), "rank %d has sub rank %d", rank, me);
        int32_t mine = rank, all[2] = {-1, -1};
        RK_OK(attncclAllGather(&mine, all, 1, attncclInt32, sub, nullptr));
        int lo = rank % 2, hi = lo + 2;
        RK_CHECK(all[0] == hi && all[1] == lo, "sub allgather got %d %d", all[0], all[1]);
        RK_OK(attncclCommDestroy(sub));
      }
      RK_OK(attncclCommDestroy(comm));
      return "";
    });
    EXPECT_EQ(err, "") << modeName(mode);
  }
}

TEST(Comm, StatsCountCrossRankPayloadOnly) {
  std::string err = runRanks(3, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id));
    attncclCommStats_t before = {sizeof(attncclCommStats_t), 0, 0, 0, 0};
    RK_OK(attncclCommGetStats(comm, &before));
    std::vector<float> send(1000, 1.f * rank), recv(3000);
    RK_OK(attncclAllGather(send.data(), recv.data(), 1000, attncclFloat32, comm, nullptr));
    attncclCommStats_t after = {sizeof(attncclCommStats_t), 0, 0, 0, 0};
    RK_OK(attncclCommGetStats(comm, &after));
    RK_CHECK(after.bytesSent - before.bytesSent == 2 * 4000, "sent %llu",
             static_cast<unsigned long long>(after.bytesSent - before.bytesSent));
    RK_CHECK(after.bytesRecv - before.bytesRecv == 2 * 4000, "recv %llu",
             static_cast<unsigned long long>(after.bytesRecv - before.bytesRecv));
    RK_CHECK(after.messagesSent - before.messagesSent == 2, "messages %llu",
             static_cast<unsigned long long>(after.messagesSent - before.messagesSent));
    // Self traffic is not counted.
    RK_OK(attncclGroupStart());
    RK_OK(attncclSend(send.data(), 10, attncclFloat32, rank, comm, nullptr));
    RK_OK(attncclRecv(recv.data(), 10, attncclFloat32, rank, comm, nullptr));
    RK_OK(attncclGroupEnd());
    attncclCommStats_t self = {sizeof(attncclCommStats_t), 0, 0, 0, 0};
    RK_OK(attncclCommGetStats(comm, &self));
    RK_CHECK(self.bytesSent == after.bytesSent && self.bytesRecv == after.bytesRecv, "self traffic counted");
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

TEST(Comm, InvalidArgumentsNameTheArgumentAndLeaveCommUsable) {
  std::string err = runRanks(2, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id));
    float x = 0;
    RK_EXPECT_RESULT(attncclSend(&x, 1, attncclFloat32, 7, comm, nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "peer is 7") != nullptr, "message: %s", attncclGetLastError(comm));
    RK_EXPECT_RESULT(attncclSend(nullptr, 4, attncclFloat32, 0, comm, nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "sendbuff is NULL") != nullptr, "message: %s",
             attncclGetLastError(comm));
    RK_EXPECT_RESULT(attncclAllGather(&x, &x, 1, static_cast<attncclDataType_t>(42), comm, nullptr),
                     attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "datatype is 42") != nullptr, "message: %s",
             attncclGetLastError(comm));
    RK_EXPECT_RESULT(attncclReduceScatter(&x, &x, 1, attncclFloat32, static_cast<attncclRedOp_t>(5), comm, nullptr),
                     attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclAllGather(&x, &x, 1, attncclFloat32, comm, reinterpret_cast<cudaStream_t>(0x10)),
                     attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "stream") != nullptr, "message: %s", attncclGetLastError(comm));
    RK_EXPECT_RESULT(attncclCommCount(comm, nullptr), attncclInvalidArgument);
    // Still usable.
    float mine = static_cast<float>(rank + 1), all[2] = {0, 0};
    RK_OK(attncclAllGather(&mine, all, 1, attncclFloat32, comm, nullptr));
    RK_CHECK(all[0] == 1.f && all[1] == 2.f, "allgather after errors: %g %g", all[0], all[1]);
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

TEST(Comm, InitRejectsBadArguments) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclComm_t comm = nullptr;
  EXPECT_EQ(attncclCommInitRank(&comm, 0, id, 0, nullptr), attncclInvalidArgument);
  EXPECT_NE(strstr(attncclGetLastError(nullptr), "nranks is 0"), nullptr) << attncclGetLastError(nullptr);
  EXPECT_EQ(attncclCommInitRank(&comm, 2, id, 2, nullptr), attncclInvalidArgument);
  EXPECT_NE(strstr(attncclGetLastError(nullptr), "rank is 2"), nullptr);
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.magic = 7;
  EXPECT_EQ(attncclCommInitRank(&comm, 1, id, 0, &cfg), attncclInvalidArgument);
  EXPECT_NE(strstr(attncclGetLastError(nullptr), "magic"), nullptr);
  cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.transport = "carrier-pigeon";
  EXPECT_EQ(attncclCommInitRank(&comm, 1, id, 0, &cfg), attncclInvalidArgument);
  EXPECT_NE(strstr(attncclGetLastError(nullptr), "carrier-pigeon"), nullptr);
  attncclUniqueId bogus;
  memset(&bogus, 0, sizeof(bogus));
  EXPECT_EQ(attncclCommInitRank(&comm, 1, bogus, 0, nullptr), attncclInvalidArgument);
  EXPECT_EQ(comm, nullptr);
  int v = 0;
  EXPECT_EQ(attncclGetVersion(&v), attncclSuccess);
  EXPECT_EQ(v, ATTNCCL_VERSION_CODE);
  EXPECT_STREQ(attncclGetErrorString(attncclSuccess), "no error");
}

TEST(Comm, DuplicateRankIsRejectedNotHung) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclResult_t r[3];
  attncclComm_t comms[3] = {nullptr, nullptr, nullptr};
  std::vector<std::thread> t;
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = 3000;
  int ranks[3] = {0, 1, 1};
  for (int i = 0; i < 3; ++i) {
    t.emplace_back([&, i] {
      // The duplicate arrives second, while the rendezvous still waits for rank 0.
      if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (i == 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      r[i] = attncclCommInitRank(&comms[i], 2, id, ranks[i], &cfg);
    });
  }
  for (auto& th : t) th.join();
  // The duplicate is rejected if it reaches the rendezvous while it still accepts, or times out
  // (bounded) if it comes after the two real ranks have finished; it never joins.
  int ok = 0, refused = 0;
  for (int i = 0; i < 3; ++i) {
    if (r[i] == attncclSuccess) ++ok;
    if (r[i] == attncclInvalidUsage || r[i] == attncclTimeout) ++refused;
    attncclCommDestroy(comms[i]);
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(refused, 1) << r[0] << " " << r[1] << " " << r[2];
}

TEST(Comm, MissingRankTimesOut) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = 500;
  attncclComm_t comm = nullptr;
  auto start = std::chrono::steady_clock::now();
  attncclResult_t r = attncclCommInitRank(&comm, 2, id, 0, &cfg);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r, attncclTimeout) << attncclGetLastError(nullptr);
  EXPECT_LT(s, 5.0);
  EXPECT_EQ(comm, nullptr);
}

TEST(Comm, NonBlockingCallsCompleteInBackground) {
  std::string err = runRanks(2, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    attncclComm_t comm = nullptr;
    RK_EXPECT_RESULT(attncclCommInitRank(&comm, n, id, rank, &cfg), attncclInProgress);
    std::vector<int32_t> mine(4, rank + 1), all(8, 0);
    RK_EXPECT_RESULT(attncclAllGather(mine.data(), all.data(), 4, attncclInt32, comm, nullptr), attncclInProgress);
    attncclResult_t state = attncclInProgress;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (state == attncclInProgress && std::chrono::steady_clock::now() < until) {
      RK_OK(attncclCommGetAsyncError(comm, &state));
      std::this_thread::yield();
    }
    RK_CHECK(state == attncclSuccess, "async state %d", state);
    RK_CHECK(all[0] == 1 && all[7] == 2, "allgather result %d %d", all[0], all[7]);
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

TEST(Comm, AbortWakesBlockedReceive) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclComm_t comms[2] = {nullptr, nullptr};
  std::thread t1([&] { attncclCommInitRank(&comms[1], 2, id, 1, nullptr); });
  ASSERT_EQ(attncclCommInitRank(&comms[0], 2, id, 0, nullptr), attncclSuccess);
  t1.join();
  ASSERT_NE(comms[1], nullptr);
  attncclResult_t r = attncclSuccess;
  float x;
  std::thread blocked([&] { r = attncclRecv(&x, 1, attncclFloat32, 1, comms[0], nullptr); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(attncclCommAbort(comms[0]), attncclSuccess);
  blocked.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r, attncclSuccess);
  EXPECT_LT(s, 2.0);
  // The peer sees rank 0 gone instead of waiting for its timeout.
  EXPECT_EQ(attncclRecv(&x, 1, attncclFloat32, 0, comms[1], nullptr), attncclRemoteError);
  EXPECT_EQ(attncclCommDestroy(comms[1]), attncclSuccess);
}

TEST(Comm, MemAllocRoundTrip) {
  void* p = nullptr;
  ASSERT_EQ(attncclMemAlloc(&p, 12345), attncclSuccess);
  ASSERT_NE(p, nullptr);
  memset(p, 0x5a, 12345);
  EXPECT_EQ(attncclMemFree(p), attncclSuccess);
  int local = 0;
  EXPECT_EQ(attncclMemFree(&local), attncclInvalidArgument);
}

}  // namespace
