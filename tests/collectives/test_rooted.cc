// attncclBroadcast from every root, attncclReduce to every root, attncclBarrier ordering, on
// 1, 2, 3, 4, 5 and 8 ranks as threads and processes over shm and ucx (and 4 ranks as 2 processes
// x 2 threads over shm).
//
// Broadcast: small (direct) and large (scatter + all-gather) sizes, every dtype in turn, in place
// and out of place on the root; non-root sendbuff is NULL (it must not be read). Reduce: the
// one-round and the reduce-scatter + gather paths, every op and dtype in turn over the roots;
// every non-root's recvbuff is poisoned and must come back untouched. Barrier: before each
// barrier every rank writes its epoch into shared memory; after it every rank must see every
// other rank's write.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "collectives/rank_cases.h"
#include "collectives/reduction_values.h"
#include "collectives/segments.h"
#include "support/ranks.h"

using namespace attnccl;
using namespace attnccl::test;

namespace {

uint64_t sentBytes(attncclComm_t comm) {
  attncclCommStats_t st;
  st.size = sizeof(st);
  return attncclCommGetStats(comm, &st) == attncclSuccess ? st.bytesSent : 0;
}

// rootSends, when set, receives the bytes the root sent during the call.
std::string checkBroadcast(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t, int root,
                           bool inPlace, uint64_t* rootSends = nullptr) {
  const Table in(attncclSum, t, n, root, false, count);
  auto send = poisoned(count, t), recv = poisoned(count, t);
  if (rank == root) {
    for (size_t i = 0; i < count; ++i) storeAs((inPlace ? recv : send).data(), t, i, in(i));
  }
  const void* s = rank == root ? (inPlace ? recv.data() : send.data()) : nullptr;
  const uint64_t before = sentBytes(comm);
  RK_OK(attncclBroadcast(s, recv.data(), count, t, root, comm, nullptr));
  if (rootSends && rank == root) *rootSends = sentBytes(comm) - before;
  for (size_t i = 0; i < count; ++i) {
    const double got = loadAs(recv.data(), t, i), want = in(i);
    RK_CHECK(got == want, "broadcast %s count %zu from %d: [%zu] = %g, want %g", dtypeName(t), count, root, i, got,
             want);
  }
  RK_CHECK(recv[count * dtypeSize(t)] == 0x7f, "broadcast wrote past recvbuff");
  return "";
}

std::string checkReduce(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                        int root, bool inPlace) {
  const Table in(op, t, n, rank, false, count), ref(op, t, n, rank, true, count);
  auto send = poisoned(count, t), recv = poisoned(count, t);
  for (size_t i = 0; i < count; ++i) storeAs(send.data(), t, i, in(i));
  const bool rootInPlace = inPlace && rank == root;
  char* out = rootInPlace ? send.data() : recv.data();
  RK_OK(attncclReduce(send.data(), out, count, t, op, root, comm, nullptr));
  if (rank == root) {
    for (size_t i = 0; i < count; ++i) {
      const double got = loadAs(out, t, i), want = ref(i);
      RK_CHECK(matches(t, got, want), "reduce %s %s count %zu to %d: [%zu] = %.9g, want %.9g", opName(op),
               dtypeName(t), count, root, i, got, want);
    }
  } else {
    for (size_t i = 0; i < recv.size(); ++i)
      RK_CHECK(recv[i] == 0x7f, "reduce to %d wrote non-root %d's recvbuff at byte %zu", root, rank, i);
    for (size_t i = 0; i < count; ++i)
      RK_CHECK(loadAs(send.data(), t, i) == in(i), "reduce changed non-root sendbuff [%zu]", i);
  }
  return "";
}

using Case = RankCase;

class Rooted : public testing::TestWithParam<Case> {};

TEST_P(Rooted, BroadcastAndReduceFromEveryRoot) {
  const Case c = GetParam();
  std::string err = runRanks(c.nranks, c.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, c.transport));
    for (int root = 0; root < n; ++root) {
      const int k = c.index + root;
      const attncclDataType_t t = kAllTypes[k % 8];
      const attncclRedOp_t op = kAllOps[k % 5];
      for (size_t count : {size_t(0), size_t(1), size_t(1001)}) {
        RK_SUB(checkBroadcast(comm, rank, n, count, t, root, k % 2 == 0));
        RK_SUB(checkReduce(comm, rank, n, count, t, op, root, k % 2 == 1));
      }
      // Above 1 MiB: the scatter path over ucx (uneven over the P-1 receivers), direct over shm.
      // The root sends N on the scatter path, (P-1) N on the direct one.
      const size_t big = (1u << 20) / dtypeSize(t) + 5;
      uint64_t rootSent = 0;
      RK_SUB(checkBroadcast(comm, rank, n, big, t, root, k % 2 == 1, &rootSent));
      const bool scatter = n > 2 && std::string(c.transport) == "ucx";
      const uint64_t want = (scatter ? 1 : n - 1) * big * dtypeSize(t);
      RK_CHECK(rank != root || rootSent == want, "broadcast root %d sent %llu bytes, want %llu (%s path)", root,
               static_cast<unsigned long long>(rootSent), static_cast<unsigned long long>(want),
               scatter ? "scatter" : "direct");
    }
    // Reduce's reduce-scatter + gather path, several chunks, to two roots (the last and this
    // case's), every op and dtype in turn over the cases.
    for (int root : {n - 1, c.index % n}) {
      const attncclDataType_t t = kAllTypes[(c.index * 3 + root) % 8];
      const attncclRedOp_t op = kAllOps[(c.index + root) % 5];
      const size_t count = static_cast<size_t>(n) * segmentChunkElems(t) * 3 / 2 + 5;
      RK_SUB(checkReduce(comm, rank, n, count, t, op, root, root % 2 == 0));
    }
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

// Shared between the ranks whether they are threads or forked processes.
struct Board {
  std::atomic<int> epoch[8];
};

TEST_P(Rooted, BarrierOrdersWritesBeforeItAfterIt) {
  const Case c = GetParam();
  void* mem = mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  Board* board = new (mem) Board();
  for (auto& e : board->epoch) e.store(-1);
  std::string err = runRanks(c.nranks, c.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, c.transport));
    for (int e = 0; e < 20; ++e) {
      // Uneven arrival: a different rank is late every epoch.
      if ((e % n) == rank) usleep(2000);
      board->epoch[rank].store(e, std::memory_order_release);
      RK_OK(attncclBarrier(comm, nullptr));
      for (int p = 0; p < n; ++p) {
        const int seen = board->epoch[p].load(std::memory_order_acquire);
        RK_CHECK(seen >= e, "after barrier %d rank %d sees rank %d at epoch %d", e, rank, p, seen);
      }
    }
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  munmap(mem, sizeof(Board));
  EXPECT_EQ(err, "");
}

INSTANTIATE_TEST_SUITE_P(All, Rooted, testing::ValuesIn(rankCases()), rankCaseName);

}  // namespace
