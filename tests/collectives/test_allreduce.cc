// attncclAllReduce and the every-op attncclReduceScatter: every op x dtype at sizes 0, 1 and odd
// (the one-round path), in place and out of place, on 1, 2, 3, 4, 5 and 8 ranks, as threads and
// as processes (and 4 ranks as 2 processes x 2 threads), over shm and ucx. The large path
// (reduce-scatter + all-gather, several chunks, uneven segments) is costly on 2 cores, so each
// case runs it for one (op, dtype) pair and the
// pairs rotate over the cases: every op and every dtype takes the large path somewhere, on every
// rank count and transport. Results are checked element by element against a double reference
// computed in the test (exact for integers), and the large results are compared bit for bit
// across the ranks (every rank reduces in the same rank order).
#include <gtest/gtest.h>

#include <vector>

#include "collectives/rank_cases.h"
#include "collectives/reduction_values.h"
#include "collectives/segments.h"
#include "support/ranks.h"

using namespace attnccl;
using namespace attnccl::test;

namespace {

// sendbuff/recvbuff of one call; in place uses one buffer for both.
std::string checkAllReduce(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                           bool inPlace, uint64_t* hash = nullptr) {
  const Table in(op, t, n, rank, false, count), ref(op, t, n, rank, true, count);
  auto send = poisoned(count, t), recv = poisoned(count, t);
  for (size_t i = 0; i < count; ++i) storeAs(send.data(), t, i, in(i));
  char* out = inPlace ? send.data() : recv.data();
  RK_OK(attncclAllReduce(send.data(), out, count, t, op, comm, nullptr));
  for (size_t i = 0; i < count; ++i) {
    const double got = loadAs(out, t, i), want = ref(i);
    RK_CHECK(matches(t, got, want), "allreduce %s %s count %zu %s: [%zu] = %.9g, want %.9g", opName(op), dtypeName(t),
             count, inPlace ? "in place" : "out of place", i, got, want);
  }
  // The guard element past the end is untouched.
  RK_CHECK(out[count * dtypeSize(t)] == 0x7f, "allreduce wrote past recvbuff (count %zu)", count);
  if (!inPlace) {
    for (size_t i = 0; i < count; ++i)
      RK_CHECK(loadAs(send.data(), t, i) == in(i), "allreduce changed sendbuff [%zu]", i);
  }
  if (hash) *hash = hashBytes(out, count * dtypeSize(t));
  return "";
}

// Every rank holds the same bytes: gather the hashes and compare.
std::string checkSameBits(attncclComm_t comm, int n, uint64_t mine, const char* what) {
  std::vector<uint64_t> all(n);
  RK_OK(attncclAllGather(&mine, all.data(), 1, attncclInt64, comm, nullptr));
  for (int p = 1; p < n; ++p) RK_CHECK(all[p] == all[0], "%s: rank %d's result differs from rank 0's", what, p);
  return "";
}

std::string checkReduceScatter(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t,
                               attncclRedOp_t op, bool inPlace) {
  // Rank r's block b element i = value(op, t, r, b * count + i), so block b reduces like the
  // all-reduce of the whole buffer restricted to block b.
  const Table in(op, t, n, rank, false, count * n), ref(op, t, n, rank, true, count * n);
  auto send = poisoned(count * n, t), recv = poisoned(count, t);
  for (size_t i = 0; i < count * n; ++i) storeAs(send.data(), t, i, in(i));
  char* out = inPlace ? send.data() + rank * count * dtypeSize(t) : recv.data();
  RK_OK(attncclReduceScatter(send.data(), out, count, t, op, comm, nullptr));
  for (size_t i = 0; i < count; ++i) {
    const double got = loadAs(out, t, i), want = ref(rank * count + i);
    RK_CHECK(matches(t, got, want), "reduce-scatter %s %s count %zu: [%zu] = %.9g, want %.9g", opName(op),
             dtypeName(t), count, i, got, want);
  }
  return "";
}

using Case = RankCase;

class AllReduce : public testing::TestWithParam<Case> {};

TEST_P(AllReduce, EveryOpEveryTypeBothPaths) {
  const Case c = GetParam();
  std::string err = runRanks(c.nranks, c.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, c.transport));
    // The one-round path: every op and dtype, sizes 0, 1 and odd, in place and not.
    for (attncclRedOp_t op : kAllOps) {
      for (attncclDataType_t t : kAllTypes) {
        for (size_t count : {size_t(0), size_t(1), size_t(37)}) {
          RK_SUB(checkAllReduce(comm, rank, n, count, t, op, false));
          RK_SUB(checkAllReduce(comm, rank, n, count, t, op, true));
        }
        RK_SUB(checkReduceScatter(comm, rank, n, 5, t, op, (c.index + static_cast<int>(t)) % 2 == 0));
      }
    }
    // The large path for this case's (op, dtype): 2.5 chunks per segment plus an odd rest, so the
    // split is uneven and the last chunk partial. In place on every other case.
    const attncclRedOp_t op = kAllOps[c.index % 5];
    const attncclDataType_t t = kAllTypes[(c.index * 3) % 8];
    const size_t chunk = segmentChunkElems(t);
    const size_t count = static_cast<size_t>(n) * chunk * 5 / 2 + 3;
    uint64_t h = 0;
    RK_SUB(checkAllReduce(comm, rank, n, count, t, op, c.index % 2 == 1, &h));
    RK_SUB(checkSameBits(comm, n, h, "large allreduce"));
    // A float sum just above the one-round limit (a single chunk), compared across ranks too.
    RK_SUB(checkAllReduce(comm, rank, n, (256u << 10) / 4 + 1, attncclFloat32, attncclSum, c.index % 2 == 0, &h));
    RK_SUB(checkSameBits(comm, n, h, "allreduce above the one-round limit"));
    RK_SUB(checkReduceScatter(comm, rank, n, chunk + 7, t, op, c.index % 2 == 0));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

INSTANTIATE_TEST_SUITE_P(All, AllReduce, testing::ValuesIn(rankCases()), rankCaseName);

// Deterministic: the same call twice gives the same bits (the rank order of the reduction does
// not depend on which message arrived first).
TEST(AllReduceDeterminism, RepeatedCallsGiveTheSameBits) {
  std::string err = runRanks(4, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, "shm"));
    const size_t count = 3 * segmentChunkElems(attncclFloat32) + 11;
    std::vector<float> in(count), a(count), b(count);
    for (size_t i = 0; i < count; ++i) in[i] = 1.0f / static_cast<float>(1 + (i * 7 + rank * 13) % 97);
    RK_OK(attncclAllReduce(in.data(), a.data(), count, attncclFloat32, attncclSum, comm, nullptr));
    RK_OK(attncclAllReduce(in.data(), b.data(), count, attncclFloat32, attncclSum, comm, nullptr));
    RK_CHECK(memcmp(a.data(), b.data(), count * 4) == 0, "two identical calls differ");
    RK_SUB(checkSameBits(comm, n, hashBytes(a.data(), count * 4), "fp32 sum of inexact values"));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

// Inside attncclGroupStart/End the calls are recorded and run at GroupEnd, in issue order.
TEST(AllReduceGroup, CallsInAGroupRunAtGroupEndInOrder) {
  std::string err = runRanks(3, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, "shm"));
    std::vector<int32_t> a(1000, rank + 1), b(1000, -1), c(1000, -1);
    RK_OK(attncclGroupStart());
    RK_OK(attncclAllReduce(a.data(), b.data(), a.size(), attncclInt32, attncclProd, comm, nullptr));
    // Uses b, which the all-reduce recorded before it writes.
    RK_OK(attncclBroadcast(b.data(), c.data(), b.size(), attncclInt32, 2, comm, nullptr));
    RK_OK(attncclBarrier(comm, nullptr));
    RK_CHECK(b[0] == -1, "a grouped call ran before attncclGroupEnd");
    RK_OK(attncclGroupEnd());
    for (size_t i = 0; i < b.size(); ++i) RK_CHECK(b[i] == 6 && c[i] == 6, "[%zu] = %d, %d", i, b[i], c[i]);
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

}  // namespace
