// Building-block collectives on every transport, as threads and as processes, world sizes
// 1, 2, 3, 5, 8, every dtype of ReduceScatter, eager and rendezvous sizes. Every element encodes
// where it came from (origin rank, destination block, index), so a misplaced block fails.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "comm/comm.h"
#include "core/params.h"
#include "support/ranks.h"
#include "core/topology.h"
#include "transport/shm.h"

using namespace attnccl;
using namespace attnccl::test;

namespace {

// Small integers: exact in every dtype, and sums of up to 8 of them stay exact in fp16/bf16.
int64_t code(int origin, int block, size_t i) { return origin + 2 * block + static_cast<int64_t>(i % 7); }

void store(void* buf, attncclDataType_t t, size_t i, int64_t v) {
  switch (t) {
    case attncclInt8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(v); break;
    case attncclUint8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v); break;
    case attncclInt32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
    case attncclInt64: static_cast<int64_t*>(buf)[i] = v; break;
    case attncclFloat16: static_cast<uint16_t*>(buf)[i] = floatToFp16(static_cast<float>(v)); break;
    case attncclBfloat16: static_cast<uint16_t*>(buf)[i] = floatToBf16(static_cast<float>(v)); break;
    case attncclFloat32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case attncclFloat64: static_cast<double*>(buf)[i] = static_cast<double>(v); break;
    default: break;
  }
}

int64_t load(const void* buf, attncclDataType_t t, size_t i) {
  switch (t) {
    case attncclInt8: return static_cast<const int8_t*>(buf)[i];
    case attncclUint8: return static_cast<const uint8_t*>(buf)[i];
    case attncclInt32: return static_cast<const int32_t*>(buf)[i];
    case attncclInt64: return static_cast<const int64_t*>(buf)[i];
    case attncclFloat16: return static_cast<int64_t>(fp16ToFloat(static_cast<const uint16_t*>(buf)[i]));
    case attncclBfloat16: return static_cast<int64_t>(bf16ToFloat(static_cast<const uint16_t*>(buf)[i]));
    case attncclFloat32: return static_cast<int64_t>(static_cast<const float*>(buf)[i]);
    case attncclFloat64: return static_cast<int64_t>(static_cast<const double*>(buf)[i]);
    default: return -1;
  }
}

std::vector<char> buffer(size_t count, attncclDataType_t t) {
  return std::vector<char>(count * dtypeSize(t) + 1, static_cast<char>(0x7f));  // poisoned
}

std::string checkAllGather(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t) {
  auto send = buffer(count, t), recv = buffer(count * n, t);
  for (size_t i = 0; i < count; ++i) store(send.data(), t, i, code(rank, 0, i));
  RK_OK(attncclAllGather(send.data(), recv.data(), count, t, comm, nullptr));
  for (int o = 0; o < n; ++o) {
    for (size_t i = 0; i < count; ++i) {
      int64_t got = load(recv.data(), t, o * count + i), want = code(o, 0, i);
      RK_CHECK(got == want, "allgather %s count %zu: block %d[%zu] = %lld, want %lld", dtypeName(t), count, o, i,
               static_cast<long long>(got), static_cast<long long>(want));
    }
  }
  // In place: sendbuff is this rank's block of recvbuff.
  auto inplace = buffer(count * n, t);
  for (size_t i = 0; i < count; ++i) store(inplace.data(), t, rank * count + i, code(rank, 1, i));
  RK_OK(attncclAllGather(inplace.data() + rank * count * dtypeSize(t), inplace.data(), count, t, comm, nullptr));
  for (int o = 0; o < n; ++o) {
    for (size_t i = 0; i < count; ++i) {
      RK_CHECK(load(inplace.data(), t, o * count + i) == code(o, 1, i), "in-place allgather block %d[%zu]", o, i);
    }
  }
  return "";
}

std::string checkReduceScatter(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t) {
  auto send = buffer(count * n, t), recv = buffer(count, t);
  for (int b = 0; b < n; ++b)
    for (size_t i = 0; i < count; ++i) store(send.data(), t, b * count + i, code(rank, b, i));
  RK_OK(attncclReduceScatter(send.data(), recv.data(), count, t, attncclSum, comm, nullptr));
  for (size_t i = 0; i < count; ++i) {
    int64_t want = 0;
    for (int o = 0; o < n; ++o) want += code(o, rank, i);
    if (t == attncclInt8) want = static_cast<int8_t>(want);
    if (t == attncclUint8) want = static_cast<uint8_t>(want);
    int64_t got = load(recv.data(), t, i);
    RK_CHECK(got == want, "reduce-scatter %s count %zu: [%zu] = %lld, want %lld", dtypeName(t), count, i,
             static_cast<long long>(got), static_cast<long long>(want));
  }
  return "";
}

std::string checkAllToAll(attncclComm_t comm, int rank, int n, size_t count, attncclDataType_t t) {
  auto send = buffer(count * n, t), recv = buffer(count * n, t);
  for (int b = 0; b < n; ++b)
    for (size_t i = 0; i < count; ++i) store(send.data(), t, b * count + i, code(rank, b, i));
  RK_OK(attncclAllToAll(send.data(), recv.data(), count, t, comm, nullptr));
  for (int o = 0; o < n; ++o) {
    for (size_t i = 0; i < count; ++i) {
      RK_CHECK(load(recv.data(), t, o * count + i) == code(o, rank, i), "alltoall %s count %zu from %d [%zu]",
               dtypeName(t), count, o, i);
    }
  }
  return "";
}

// AllToAllv with uneven counts: rank i sends (i + j + base) % 4 * scale elements to rank j (some
// zero), packed in reverse peer order so displacements are not monotone.
std::string checkAllToAllv(attncclComm_t comm, int rank, int n, size_t scale, attncclDataType_t t) {
  auto cnt = [&](int from, int to) { return static_cast<size_t>((from + 2 * to + 1) % 4) * scale; };
  std::vector<size_t> sc(n), sd(n), rc(n), rd(n);
  size_t so = 0, ro = 0;
  for (int p = n - 1; p >= 0; --p) {
    sc[p] = cnt(rank, p);
    sd[p] = so;
    so += sc[p];
    rc[p] = cnt(p, rank);
    rd[p] = ro;
    ro += rc[p];
  }
  auto send = buffer(so, t), recv = buffer(ro, t);
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < sc[p]; ++i) store(send.data(), t, sd[p] + i, code(rank, p, i));
  RK_OK(attncclAllToAllv(send.data(), sc.data(), sd.data(), recv.data(), rc.data(), rd.data(), t, comm, nullptr));
  for (int p = 0; p < n; ++p) {
    for (size_t i = 0; i < rc[p]; ++i) {
      RK_CHECK(load(recv.data(), t, rd[p] + i) == code(p, rank, i), "alltoallv from %d [%zu]", p, i);
    }
  }
  return "";
}

// Grouped sends/recvs to every peer (a full exchange posted in one group never deadlocks).
std::string checkGroupedSendRecv(attncclComm_t comm, int rank, int n, size_t count) {
  std::vector<std::vector<int32_t>> out(n, std::vector<int32_t>(count)), in(n, std::vector<int32_t>(count, -1));
  RK_OK(attncclGroupStart());
  for (int p = 0; p < n; ++p) {
    for (size_t i = 0; i < count; ++i) out[p][i] = static_cast<int32_t>(code(rank, p, i) * 1000 + i);
    RK_OK(attncclSend(out[p].data(), count, attncclInt32, p, comm, nullptr));
    RK_OK(attncclRecv(in[p].data(), count, attncclInt32, p, comm, nullptr));
  }
  RK_OK(attncclGroupEnd());
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < count; ++i)
      RK_CHECK(in[p][i] == static_cast<int32_t>(code(p, rank, i) * 1000 + i), "grouped recv from %d [%zu]", p, i);
  return "";
}

struct Case {
  int nranks;
  Mode mode;
  const char* transport;
};

class Collectives : public testing::TestWithParam<Case> {};

TEST_P(Collectives, AllCollectivesAllTypes) {
  const Case c = GetParam();
  std::string err = runRanks(c.nranks, c.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, c.transport));
    const attncclDataType_t all[] = {attncclInt8, attncclUint8, attncclInt32, attncclInt64,
                                     attncclFloat16, attncclBfloat16, attncclFloat32, attncclFloat64};
    for (size_t count : {size_t(0), size_t(1), size_t(1000), size_t(70001)}) {
      for (attncclDataType_t t : all) {
        RK_SUB(checkAllGather(comm, rank, n, count, t));
        RK_SUB(checkReduceScatter(comm, rank, n, count, t));
        RK_SUB(checkAllToAll(comm, rank, n, count, t));
      }
      RK_SUB(checkAllToAllv(comm, rank, n, count / 3 + 1, attncclFloat32));
      RK_SUB(checkGroupedSendRecv(comm, rank, n, count + 1));
    }
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

std::vector<Case> cases() {
  std::vector<Case> v;
  for (const char* t : testTransports())
    for (int n : {1, 2, 3, 5, 8})
      for (Mode m : {Mode::kThreads, Mode::kProcesses})
        if (n > 1 || m == Mode::kThreads) v.push_back({n, m, t});
  v.push_back({4, Mode::kMixed, "shm"});
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, Collectives, testing::ValuesIn(cases()), [](const testing::TestParamInfo<Case>& i) {
  return format("n%d_%s_%s", i.param.nranks, modeName(i.param.mode), i.param.transport);
});

// The three large-message paths of the shm transport give the same answers: in place from a
// library region (attncclMemAlloc), CMA, and staged chunks (CMA and in-place reads disabled).
TEST(CollectivesShmPaths, StagedAndInPlaceAgree) {
  struct Path {
    const char* name;
    const char* cma;
    const char* direct;
    bool libraryMemory;
  };
  for (const Path& p : {Path{"staged", "0", "0", false}, Path{"in-place", "0", "1", true}, Path{"cma", "1", "0", false}}) {
    std::string err = runRanks(3, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      setenv("ATTNCCL_SHM_CMA", p.cma, 1);
      setenv("ATTNCCL_SHM_DIRECT", p.direct, 1);
      reloadParams();
      attncclComm_t comm = nullptr;
      RK_SUB(initComm(&comm, rank, n, id, "shm"));
      const size_t count = (3u << 20) / 4 + 17;  // several staged chunks, not a multiple of one
      float* send = nullptr;
      std::vector<float> own;
      if (p.libraryMemory) {
        RK_OK(attncclMemAlloc(reinterpret_cast<void**>(&send), count * sizeof(float)));
      } else {
        own.resize(count);
        send = own.data();
      }
      for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(code(rank, 0, i));
      std::vector<float> recv(count * n, -1.f);
      RK_OK(attncclAllGather(send, recv.data(), count, attncclFloat32, comm, nullptr));
      for (int o = 0; o < n; ++o)
        for (size_t i = 0; i < count; i += 97)
          RK_CHECK(recv[o * count + i] == static_cast<float>(code(o, 0, i)), "%s path: block %d [%zu]", p.name, o, i);
      if (p.libraryMemory) RK_OK(attncclMemFree(send));
      RK_OK(attncclCommDestroy(comm));
      return "";
    });
    EXPECT_EQ(err, "") << p.name;
  }
}

// ATTNCCL_SHM_CMA=2 (the default): CMA only when the node's ranks have more compute threads than
// cores (the staged ring needs sender and receiver running at once); 0 and 1 force the choice.
// Two processes oversubscribe any machine by asking for as many compute threads as it has cores.
TEST(CollectivesShmPaths, CmaOnlyWhenOversubscribedByDefault) {
  attnccl::Topology topo;
  ASSERT_EQ(attnccl::Topology::detect(&topo), attncclSuccess);
  const int cores = static_cast<int>(topo.cores.size());  // the cores this process may run on
  struct Choice {
    const char* mode;
    int threads;  // compute threads per rank
    bool cma;
  };
  const std::vector<Choice> choices = {
      {"2", 1, 2 > cores}, {"2", cores, true}, {"0", cores, false}, {"1", 1, true}};
  for (const Choice& c : choices) {
    std::string err = runRanks(2, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      setenv("ATTNCCL_SHM_CMA", c.mode, 1);
      reloadParams();
      attncclComm_t comm = nullptr;
      RK_SUB(initComm(&comm, rank, n, id, "shm", c.threads));
      RK_CHECK(comm->shm && comm->shm->cmaAllowed() == c.cma,
               "ATTNCCL_SHM_CMA=%s, 2 processes x %d threads on %d cores: CMA %s", c.mode, c.threads, cores,
               comm->shm && comm->shm->cmaAllowed() ? "on" : "off");
      // Whichever copy was chosen moves a large message from a malloc'ed buffer intact.
      std::vector<float> send(300000), recv(300000, -1.f);
      for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<float>(rank * 1000000 + i);  // exact in fp32
      RK_OK(attncclGroupStart());
      RK_OK(attncclSend(send.data(), send.size(), attncclFloat32, 1 - rank, comm, nullptr));
      RK_OK(attncclRecv(recv.data(), recv.size(), attncclFloat32, 1 - rank, comm, nullptr));
      RK_OK(attncclGroupEnd());
      for (size_t i = 0; i < recv.size(); i += 101)
        RK_CHECK(recv[i] == static_cast<float>((1 - rank) * 1000000 + i), "element %zu from rank %d", i, 1 - rank);
      RK_OK(attncclCommDestroy(comm));
      return "";
    });
    EXPECT_EQ(err, "") << "ATTNCCL_SHM_CMA=" << c.mode << ", " << c.threads << " threads per rank";
  }
}

// A broadcast root asks its receivers to read its buffer themselves (Op::pull): over shm between
// processes that is CMA even where the rule for other traffic picks the staged ring (the default
// with a core per rank), so the root's core only copies its own result. ATTNCCL_SHM_CMA=0 keeps
// everything staged. The receiving rank's pull counts say which copy moved each message.
TEST(CollectivesShmPaths, ABroadcastRootAsksForCma) {
  struct Case {
    const char* mode;  // nullptr: unset (the default)
    bool bcastByCma;
  };
  for (const Case& c : {Case{nullptr, true}, Case{"0", false}, Case{"1", true}}) {
    std::string err = runRanks(2, Mode::kProcesses, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
      if (c.mode != nullptr)
        setenv("ATTNCCL_SHM_CMA", c.mode, 1);
      else
        unsetenv("ATTNCCL_SHM_CMA");
      reloadParams();
      attncclComm_t comm = nullptr;
      RK_SUB(initComm(&comm, rank, n, id, "shm", 1));
      RK_CHECK(comm->shm != nullptr, "no shm transport");
      const size_t count = (1u << 20) / 4 + 17;
      std::vector<float> buf(count, -1.f);
      if (rank == 0)
        for (size_t i = 0; i < count; ++i) buf[i] = static_cast<float>(i);  // exact in fp32
      const attnccl::ShmTransport::PullCounts before = comm->shm->pullCounts();
      RK_OK(attncclBroadcast(buf.data(), buf.data(), count, attncclFloat32, 0, comm, nullptr));
      for (size_t i = 0; i < count; i += 97) RK_CHECK(buf[i] == static_cast<float>(i), "broadcast element %zu", i);
      const attnccl::ShmTransport::PullCounts afterBcast = comm->shm->pullCounts();
      if (rank == 1) {
        RK_CHECK(afterBcast.cma - before.cma == (c.bcastByCma ? 1u : 0u) &&
                     afterBcast.staged - before.staged == (c.bcastByCma ? 0u : 1u),
                 "broadcast: %llu CMA and %llu staged receives", (unsigned long long)(afterBcast.cma - before.cma),
                 (unsigned long long)(afterBcast.staged - before.staged));
      }
      // A plain exchange follows the communicator's rule, on both ranks.
      std::vector<float> send(count, static_cast<float>(rank)), recv(count, -1.f);
      RK_OK(attncclGroupStart());
      RK_OK(attncclSend(send.data(), count, attncclFloat32, 1 - rank, comm, nullptr));
      RK_OK(attncclRecv(recv.data(), count, attncclFloat32, 1 - rank, comm, nullptr));
      RK_OK(attncclGroupEnd());
      RK_CHECK(recv[0] == static_cast<float>(1 - rank) && recv[count - 1] == static_cast<float>(1 - rank),
               "sendrecv data");
      const attnccl::ShmTransport::PullCounts end = comm->shm->pullCounts();
      const bool cma = comm->shm->cmaAllowed();
      RK_CHECK(end.cma - afterBcast.cma == (cma ? 1u : 0u) && end.staged - afterBcast.staged == (cma ? 0u : 1u),
               "sendrecv (CMA %s): %llu CMA and %llu staged receives", cma ? "on" : "off",
               (unsigned long long)(end.cma - afterBcast.cma), (unsigned long long)(end.staged - afterBcast.staged));
      RK_OK(attncclCommDestroy(comm));
      return "";
    });
    EXPECT_EQ(err, "") << "ATTNCCL_SHM_CMA=" << (c.mode ? c.mode : "(unset)");
  }
}

TEST(CollectivesErrors, MismatchedCountsFailCleanly) {
  std::string err = runRanks(2, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id));
    std::vector<int32_t> buf(100000, rank);
    // Rank 0 sends more than rank 1 expects: the receive fails as invalid usage (no overflow).
    if (rank == 0) {
      attncclResult_t r = attncclSend(buf.data(), 50000, attncclInt32, 1, comm, nullptr);
      RK_CHECK(r == attncclInvalidUsage, "send result %s", attncclGetErrorString(r));
    } else {
      attncclResult_t r = attncclRecv(buf.data(), 10, attncclInt32, 0, comm, nullptr);
      RK_CHECK(r == attncclInvalidUsage, "recv result %s", attncclGetErrorString(r));
      RK_CHECK(buf[10] == 1, "receive overflowed its buffer");
    }
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

}  // namespace
