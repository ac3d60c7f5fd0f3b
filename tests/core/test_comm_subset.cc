// Subset communicators (src/comm/comm_subset.cc): a communicator over some of a parent's ranks that
// borrows the parent's transports. Checked: identity and peer mapping, messages over the
// subset land where the parent's rank numbers say, creating one sends nothing and opens no
// transport, two subsets with disjoint peers and the parent take turns on the same streams, and
// the parent's abort ends a subset's wait. Threads and processes, shm and ucx.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "comm/comm.h"
#include "support/ranks.h"

using namespace attnccl::test;

namespace {

struct SubsetCase {
  int nranks;
  Mode mode;
  const char* transport;
};

std::string caseName(const testing::TestParamInfo<SubsetCase>& info) {
  return format("n%d_%s_%s", info.param.nranks, modeName(info.param.mode), info.param.transport);
}

class CommSubset : public testing::TestWithParam<SubsetCase> {};
class CommSubsetAbort : public testing::TestWithParam<SubsetCase> {};

// A ring over `c` whose payload encodes (parent rank of the sender, parent rank of the receiver).
std::string ringOver(attncclComm_t c, const std::vector<int>& members, uint32_t tag) {
  attnccl::Engine& e = c->engine;
  const int n = c->nranks, me = c->rank, next = (me + 1) % n, prev = (me + n - 1) % n;
  int64_t out = members[me] * 1000 + members[next], in = -1;
  attnccl::Op ops[2];
  RK_OK(e.isend(next, tag, &out, sizeof(out), &ops[0]));
  RK_OK(e.irecv(prev, tag, &in, sizeof(in), &ops[1]));
  RK_OK(e.waitAll(ops, 2));
  RK_CHECK(in == members[prev] * 1000 + members[me], "subset rank %d (parent %d) got %lld from subset rank %d", me,
           members[me], static_cast<long long>(in), prev);
  return "";
}

TEST_P(CommSubset, MapsRanksSendsNothingToExistAndSharesStreams) {
  const SubsetCase sc = GetParam();
  std::string err = runRanks(sc.nranks, sc.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, sc.transport));
    // Even and odd parent ranks: disjoint peers, as the hybrid's group and ring communicators.
    std::vector<int> even, odd;
    for (int r = 0; r < n; ++r) (r % 2 == 0 ? even : odd).push_back(r);
    const std::vector<int>& mine = rank % 2 == 0 ? even : odd;
    const uint64_t sentBefore = comm->engine.stats().messagesSent.load();
    attncclComm_t sub = nullptr, whole = nullptr;
    RK_OK(attnccl::commCreateSubset(comm, mine, &sub));
    // The whole parent, reversed: subset rank k is parent rank n-1-k.
    std::vector<int> reversed;
    for (int r = n - 1; r >= 0; --r) reversed.push_back(r);
    RK_OK(attnccl::commCreateSubset(comm, reversed, &whole));
    RK_CHECK(comm->engine.stats().messagesSent.load() == sentBefore, "creating subsets sent %llu messages",
             static_cast<unsigned long long>(comm->engine.stats().messagesSent.load() - sentBefore));
    RK_CHECK(!sub->shm && !sub->ucx && !whole->shm && !whole->ucx, "a subset opened a transport of its own");
    RK_CHECK(sub->nranks == static_cast<int>(mine.size()) && mine[sub->rank] == rank, "subset identity %d/%d",
             sub->rank, sub->nranks);
    RK_CHECK(whole->rank == n - 1 - rank && whole->nranks == n, "reversed identity %d/%d", whole->rank, whole->nranks);
    RK_CHECK(whole->peers[whole->rank].pid == comm->peers[rank].pid, "peer info not mapped");
    // The parent, the subset and the reversed whole take turns on the same tag.
    for (int round = 0; round < 3; ++round) {
      std::vector<int> all;
      for (int r = 0; r < n; ++r) all.push_back(r);
      RK_SUB(ringOver(comm, all, attnccl::kTagInternal));
      RK_SUB(ringOver(sub, mine, attnccl::kTagInternal));
      RK_SUB(ringOver(whole, reversed, attnccl::kTagInternal));
    }
    // The subset counts its own traffic (the hybrid folds it into the parent's counters).
    const uint64_t subSent = sub->engine.stats().messagesSent.load();
    RK_CHECK(subSent == (sub->nranks > 1 ? 3u : 0u), "subset counted %llu messages sent",
             static_cast<unsigned long long>(subSent));
    RK_OK(attncclCommDestroy(sub));
    RK_OK(attncclCommDestroy(whole));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

TEST_P(CommSubsetAbort, ParentAbortEndsSubsetWait) {
  const SubsetCase sc = GetParam();
  std::string err = runRanks(sc.nranks, sc.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, sc.transport));
    std::vector<int> all;
    for (int r = 0; r < n; ++r) all.push_back(r);
    attncclComm_t sub = nullptr;
    RK_OK(attnccl::commCreateSubset(comm, all, &sub));
    if (rank == 0) {
      // Waits for a message nobody sends; the parent's abort must end the wait.
      std::thread aborter([comm] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        comm->aborted.store(true);
      });
      int64_t in = 0;
      auto t0 = std::chrono::steady_clock::now();
      attncclResult_t r = sub->engine.recv(1, attnccl::kTagInternal, &in, sizeof(in));
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      aborter.join();
      RK_CHECK(r == attncclInvalidUsage, "the wait returned %d, not the abort's attncclInvalidUsage", r);
      RK_CHECK(s < 0.6, "the wait ended %.2f s after it began (abort at 0.1 s, peers leave at 1.5 s)", s);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // alive while rank 0 waits
    }
    RK_OK(attncclCommDestroy(sub));
    RK_OK(attncclCommAbort(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

std::vector<SubsetCase> cases(std::vector<int> sizes) {
  std::vector<SubsetCase> v;
  for (const char* t : testTransports()) {
    for (int n : sizes) {
      for (Mode m : {Mode::kThreads, Mode::kProcesses}) {
        if (n == 1 && m != Mode::kThreads) continue;
        v.push_back({n, m, t});
      }
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, CommSubset, testing::ValuesIn(cases({1, 2, 3, 5})), caseName);
INSTANTIATE_TEST_SUITE_P(All, CommSubsetAbort, testing::ValuesIn(cases({2, 5})), caseName);

}  // namespace
