// ATTNCCL_CHECKSUM=1: every message between ranks carries a hash of its payload, verified on
// arrival. Transfers stay correct on every path (shm eager, in-place, CMA and staged pulls; UCX
// eager and rendezvous), the statistics do not count the trailers, attention collectives give the
// reference's answers, a corrupted transfer fails the receive with attncclRemoteError, and ranks
// must agree on the mode.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm/comm.h"
#include "core/params.h"
#include "support/dist_case.h"
#include "support/proc_ranks.h"
#include "support/ranks.h"
#include "transport/checksum.h"

using namespace attnccl::test;

namespace {

// Sets environment variables for the scope of a test (the library reads them at init).
class EnvScope {
 public:
  using Vars = std::vector<std::pair<const char*, const char*>>;
  explicit EnvScope(Vars vars) : vars_(std::move(vars)) {
    for (auto& kv : vars_) setenv(kv.first, kv.second, 1);
    attnccl::reloadParams();
  }
  ~EnvScope() {
    for (auto& kv : vars_) unsetenv(kv.first);
    attnccl::reloadParams();
  }

 private:
  Vars vars_;
};

std::string exchangeAndCheck(attncclComm_t comm, int rank, int n, size_t count) {
  std::vector<float> mine(count), all(count * n), sendBlocks(count * n), recvBlocks(count * n);
  for (size_t i = 0; i < count; ++i) mine[i] = static_cast<float>(rank * 1000003 + i);
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < count; ++i) sendBlocks[p * count + i] = static_cast<float>(rank * 7919 + p * 131 + i);
  attncclCommStats_t before = {sizeof(attncclCommStats_t), 0, 0, 0, 0}, after = before;
  RK_OK(attncclCommGetStats(comm, &before));
  RK_OK(attncclAllGather(mine.data(), all.data(), count, attncclFloat32, comm, nullptr));
  RK_OK(attncclAllToAll(sendBlocks.data(), recvBlocks.data(), count, attncclFloat32, comm, nullptr));
  RK_OK(attncclCommGetStats(comm, &after));
  for (int p = 0; p < n; ++p) {
    for (size_t i = 0; i < count; ++i) {
      RK_CHECK(all[p * count + i] == static_cast<float>(p * 1000003 + i), "allgather block %d [%zu]", p, i);
      RK_CHECK(recvBlocks[p * count + i] == static_cast<float>(p * 7919 + rank * 131 + i), "alltoall block %d [%zu]",
               p, i);
    }
  }
  // Payload only: two collectives, n-1 messages each way, count floats each.
  const uint64_t want = 2ull * (n - 1) * count * sizeof(float);
  RK_CHECK(after.bytesSent - before.bytesSent == want, "sent %llu bytes, payload %llu",
           static_cast<unsigned long long>(after.bytesSent - before.bytesSent), static_cast<unsigned long long>(want));
  RK_CHECK(after.messagesRecv - before.messagesRecv == 2ull * (n - 1), "messages %llu",
           static_cast<unsigned long long>(after.messagesRecv - before.messagesRecv));
  return "";
}

TEST(Checksum, HashIsSensitiveToEveryByteAndTheLength) {
  std::vector<unsigned char> buf(1000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 37 + 11);
  const uint64_t h = attnccl::checksum64(buf.data(), buf.size());
  EXPECT_EQ(h, attnccl::checksum64(buf.data(), buf.size()));
  for (size_t at : {size_t(0), size_t(7), size_t(31), size_t(32), size_t(500), size_t(999)}) {
    for (int bit = 0; bit < 8; ++bit) {
      buf[at] ^= static_cast<unsigned char>(1u << bit);
      EXPECT_NE(attnccl::checksum64(buf.data(), buf.size()), h) << "byte " << at << " bit " << bit;
      buf[at] ^= static_cast<unsigned char>(1u << bit);
    }
  }
  EXPECT_NE(attnccl::checksum64(buf.data(), buf.size() - 1), h);
  std::vector<unsigned char> zeros(64, 0);
  EXPECT_NE(attnccl::checksum64(zeros.data(), 63), attnccl::checksum64(zeros.data(), 64));
  EXPECT_NE(attnccl::checksum64(nullptr, 0), attnccl::checksum64(zeros.data(), 1));
}

TEST(Checksum, TransfersVerifiedOnEveryPath) {
  EnvScope on(EnvScope::Vars{{"ATTNCCL_CHECKSUM", "1"}, {"ATTNCCL_SHM_CMA", "1"}});
  // 100 floats: shm eager; 30000: shm pull (in place between threads, CMA between processes),
  // UCX rendezvous.
  for (const char* tp : testTransports()) {
    for (Mode mode : {Mode::kThreads, Mode::kProcesses}) {
      for (size_t count : {size_t(100), size_t(30000)}) {
        std::string err = runRanks(3, mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
          attncclComm_t comm = nullptr;
          RK_SUB(initComm(&comm, rank, n, id, tp));
          RK_CHECK(comm->engine.checksums(), "checksum mode is off");
          RK_SUB(exchangeAndCheck(comm, rank, n, count));
          RK_OK(attncclCommDestroy(comm));
          return "";
        });
        EXPECT_EQ(err, "") << tp << " " << modeName(mode) << " count " << count;
      }
    }
  }
  // The staged path: no CMA, no in-place reads.
  EnvScope staged(EnvScope::Vars{{"ATTNCCL_SHM_CMA", "0"}, {"ATTNCCL_SHM_DIRECT", "0"}});
  std::string err = runRanks(2, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, "shm"));
    RK_SUB(exchangeAndCheck(comm, rank, n, 200000));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "") << "staged";
}

// AllReduce (both paths), Broadcast, Reduce and Barrier under checksum mode: verified transfers,
// exact results (small integers in fp32), and payload-only statistics for the one-round path.
TEST(Checksum, AllReduceBroadcastReduceBarrierVerified) {
  EnvScope on(EnvScope::Vars{{"ATTNCCL_CHECKSUM", "1"}});
  for (const char* tp : testTransports()) {
    std::string err = runRanks(3, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      attncclComm_t comm = nullptr;
      RK_SUB(initComm(&comm, rank, n, id, tp));
      RK_CHECK(comm->engine.checksums(), "checksum mode is off");
      for (size_t count : {size_t(1000), size_t(300001)}) {
        std::vector<float> x(count), y(count, -1.f);
        for (size_t i = 0; i < count; ++i) x[i] = static_cast<float>((rank + 1) * (i % 1000));
        attncclCommStats_t before = {sizeof(attncclCommStats_t), 0, 0, 0, 0}, after = before;
        RK_OK(attncclCommGetStats(comm, &before));
        RK_OK(attncclAllReduce(x.data(), y.data(), count, attncclFloat32, attncclSum, comm, nullptr));
        RK_OK(attncclCommGetStats(comm, &after));
        for (size_t i = 0; i < count; ++i) RK_CHECK(y[i] == static_cast<float>(6 * (i % 1000)), "allreduce [%zu]", i);
        if (count == 1000) {  // one round: the whole buffer to each of the n-1 peers
          RK_CHECK(after.bytesSent - before.bytesSent == (n - 1) * count * sizeof(float), "sent %llu bytes",
                   static_cast<unsigned long long>(after.bytesSent - before.bytesSent));
        }
        RK_OK(attncclBroadcast(x.data(), y.data(), count, attncclFloat32, 2, comm, nullptr));
        for (size_t i = 0; i < count; ++i) RK_CHECK(y[i] == static_cast<float>(3 * (i % 1000)), "broadcast [%zu]", i);
        RK_OK(attncclReduce(x.data(), y.data(), count, attncclFloat32, attncclMax, 1, comm, nullptr));
        if (rank == 1) {
          for (size_t i = 0; i < count; ++i) RK_CHECK(y[i] == static_cast<float>(3 * (i % 1000)), "reduce [%zu]", i);
        }
        RK_OK(attncclBarrier(comm, nullptr));
      }
      RK_OK(attncclCommDestroy(comm));
      return "";
    });
    EXPECT_EQ(err, "") << tp;
  }
}

TEST(Checksum, AttentionCollectivesMatchTheReference) {
  EnvScope on(EnvScope::Vars{{"ATTNCCL_CHECKSUM", "1"}});
  using namespace attnccl_test;
  for (attncclAlgo_t algo : {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoUlysses}) {
    for (const char* tp : testTransports()) {
      CaseSpec spec;
      spec.seqLen = 45;
      spec.hq = 4;
      spec.hkv = 2;
      spec.dim = 16;
      spec.causal = true;
      spec.layout = attncclLayoutZigzag;
      AttnCase c(spec, testSeed());
      DistOptions o;
      o.algo = algo;
      o.nranks = 3;
      o.transport = tp;
      EXPECT_EQ(runDistributed(c, o), "") << attncclAlgoName(algo) << " " << tp;
    }
  }
}

TEST(Checksum, ACorruptedTransferFailsTheReceive) {
  EnvScope on(EnvScope::Vars{{"ATTNCCL_CHECKSUM", "1"}});
  for (const char* tp : testTransports()) {
    for (size_t count : {size_t(100), size_t(30000)}) {
      std::string err = runRanks(2, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
        attncclComm_t comm = nullptr;
        RK_SUB(initComm(&comm, rank, n, id, tp, 1, 20000));
        std::vector<float> mine(count, 1.f + rank), all(count * n);
        RK_OK(attncclAllGather(mine.data(), all.data(), count, attncclFloat32, comm, nullptr));
        // Rank 1's next received payload gets one bit flipped, as a faulty link would.
        if (rank == 1) comm->engine.corruptReceivesForTest(1);
        attncclResult_t r = attncclAllGather(mine.data(), all.data(), count, attncclFloat32, comm, nullptr);
        if (rank == 1) {
          RK_CHECK(r == attncclRemoteError, "corrupted transfer returned %s", attncclGetErrorString(r));
          const char* msg = attncclGetLastError(comm);
          RK_CHECK(strstr(msg, "checksum mismatch") != nullptr && strstr(msg, "from rank 0") != nullptr,
                   "message: %s", msg);
        } else {
          RK_CHECK(r == attncclSuccess || r == attncclRemoteError, "rank 0: %s", attncclGetErrorString(r));
        }
        RK_OK(attncclCommAbort(comm));
        return "";
      });
      EXPECT_EQ(err, "") << tp << " count " << count;
    }
  }
}

TEST(Checksum, RanksMustAgreeOnTheMode) {
  std::string err = runRanks(2, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    if (rank == 0) setenv("ATTNCCL_CHECKSUM", "1", 1);
    attnccl::reloadParams();
    attncclComm_t comm = nullptr;
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.timeoutMs = 10000;
    attncclResult_t r = attncclCommInitRank(&comm, n, id, rank, &cfg);
    RK_CHECK(r == attncclInvalidUsage, "init returned %s", attncclGetErrorString(r));
    RK_CHECK(strstr(attncclGetLastError(nullptr), "ATTNCCL_CHECKSUM") != nullptr, "message: %s",
             attncclGetLastError(nullptr));
    return "";
  });
  EXPECT_EQ(err, "");
}

}  // namespace
