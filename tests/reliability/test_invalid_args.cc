// Table-driven invalid-argument tests for every public function of attnccl.h: each row is one
// call with one bad argument (or a wrong call sequence), the result it must return, and text the
// message must contain (the argument's name and value). Both ranks of a two-rank communicator run
// the whole table, then use the communicator: a refused call must leave it usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "reliability/invalid_args_attention.h"
#include "reliability/invalid_args_table.h"
#include "support/ranks.h"

using namespace attnccl::test;
using namespace attnccl::invalid_args;

namespace {

std::vector<Row> rows() {
  const attncclResult_t IA = attncclInvalidArgument, IU = attncclInvalidUsage;
  std::vector<Row> t = {
      // ---- versions, ids
      {"GetVersion NULL", [](Ctx&) { return attncclGetVersion(nullptr); }, IA, "version is NULL"},
      {"GetUniqueId NULL", [](Ctx&) { return attncclGetUniqueId(nullptr); }, IA, "uniqueId is NULL"},
      // ---- init and config fields
      {"InitRank comm NULL",
       [](Ctx&) {
         attncclUniqueId id;
         attncclGetUniqueId(&id);
         return attncclCommInitRank(nullptr, 1, id, 0, nullptr);
       },
       IA, "comm is NULL"},
      {"InitRank nranks 0",
       [](Ctx&) {
         attncclUniqueId id;
         attncclGetUniqueId(&id);
         attncclComm_t c;
         return attncclCommInitRank(&c, 0, id, 0, nullptr);
       },
       IA, "nranks is 0"},
      {"InitRank rank -1",
       [](Ctx&) {
         attncclUniqueId id;
         attncclGetUniqueId(&id);
         attncclComm_t c;
         return attncclCommInitRank(&c, 2, id, -1, nullptr);
       },
       IA, "rank is -1"},
      {"InitRank rank == nranks",
       [](Ctx&) {
         attncclUniqueId id;
         attncclGetUniqueId(&id);
         attncclComm_t c;
         return attncclCommInitRank(&c, 3, id, 3, nullptr);
       },
       IA, "rank is 3"},
      {"InitRank bogus id",
       [](Ctx&) {
         attncclUniqueId id;
         memset(&id, 0x5a, sizeof id);
         attncclComm_t c;
         return attncclCommInitRank(&c, 1, id, 0, nullptr);
       },
       IA, "commId"},
      {"config magic", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.magic = 7; }); }, IA, "magic is 0x7"},
      {"config size 0", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.size = 0; }); }, IA, "size is 0"},
      {"config size 5000", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.size = 5000; }); }, IA,
       "size is 5000"},
      {"config device -5", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.device = -5; }); }, IA,
       "device is -5"},
      {"config blocking 2", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.blocking = 2; }); }, IA,
       "blocking is 2"},
      {"config timeoutMs -1", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.timeoutMs = -1; }); }, IA,
       "timeoutMs is -1"},
      {"config cpuThreads -3", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.cpuThreads = -3; }); }, IA,
       "cpuThreads is -3"},
      {"config cpuThreads 5000", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.cpuThreads = 5000; }); },
       IA, "cpuThreads is 5000"},
      {"config transport", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.transport = "pigeon"; }); }, IA,
       "'pigeon'"},
      {"config hybridGroupSize -1",
       [](Ctx&) { return initWith([](attncclConfig_t& c) { c.hybridGroupSize = -1; }); }, IA,
       "hybridGroupSize is -1"},
#if !ATTNCCL_HAVE_CUDA
      {"config device 0 without CUDA", [](Ctx&) { return initWith([](attncclConfig_t& c) { c.device = 0; }); },
       attncclNotSupported, "device is 0"},
#endif
      // ---- split
      {"Split comm NULL", [](Ctx&) { attncclComm_t n; return attncclCommSplit(nullptr, 0, 0, &n, nullptr); }, IA,
       "comm is NULL"},
      {"Split not a comm", [](Ctx&) { attncclComm_t n; return attncclCommSplit(fakeComm(), 0, 0, &n, nullptr); },
       IA, "is not a communicator"},
      {"Split newcomm NULL", [](Ctx& c) { return attncclCommSplit(c.comm, 0, 0, nullptr, nullptr); }, IA,
       "newcomm is NULL"},
      {"Split color -5", [](Ctx& c) { attncclComm_t n; return attncclCommSplit(c.comm, -5, 0, &n, nullptr); }, IA,
       "color is -5"},
      {"Split config magic",
       [](Ctx& c) {
         attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
         cfg.magic = 9;
         attncclComm_t n;
         return attncclCommSplit(c.comm, 0, 0, &n, &cfg);
       },
       IA, "magic is 0x9"},
      {"Split config blocking 3",
       [](Ctx& c) {
         attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
         cfg.blocking = 3;
         attncclComm_t n;
         return attncclCommSplit(c.comm, 0, 0, &n, &cfg);
       },
       IA, "blocking is 3"},
      // ---- shrink (more in tests/core/test_comm_shrink.cc)
      {"Shrink comm NULL", [](Ctx&) { attncclComm_t n; return attncclCommShrink(nullptr, nullptr, 0, &n, nullptr); },
       IA, "comm is NULL"},
      {"Shrink not a comm",
       [](Ctx&) { attncclComm_t n; return attncclCommShrink(fakeComm(), nullptr, 0, &n, nullptr); }, IA,
       "is not a communicator"},
      {"Shrink newcomm NULL", [](Ctx& c) { return attncclCommShrink(c.comm, nullptr, 0, nullptr, nullptr); }, IA,
       "newcomm is NULL"},
      {"Shrink excludeRanks NULL, count 1",
       [](Ctx& c) { attncclComm_t n; return attncclCommShrink(c.comm, nullptr, 1, &n, nullptr); }, IA,
       "excludeRanks is NULL but excludeCount is 1"},
      {"Shrink excludeRanks[0] 9",
       [](Ctx& c) {
         const int r[1] = {9};
         attncclComm_t n;
         return attncclCommShrink(c.comm, r, 1, &n, nullptr);
       },
       IA, "excludeRanks[0] is 9"},
      {"Shrink everyone excluded",
       [](Ctx& c) {
         const int r[2] = {0, 1};
         attncclComm_t n;
         return attncclCommShrink(c.comm, r, 2, &n, nullptr);
       },
       IA, "excludeCount is 2 but the communicator has 2 ranks"},
      // ---- lifecycle and queries on handles that are not communicators
      {"Finalize NULL", [](Ctx&) { return attncclCommFinalize(nullptr); }, IA, "comm is NULL"},
      {"Finalize not a comm", [](Ctx&) { return attncclCommFinalize(fakeComm()); }, IA, "is not a communicator"},
      {"Destroy not a comm", [](Ctx&) { return attncclCommDestroy(fakeComm()); }, IA, "is not a communicator"},
      {"Abort not a comm", [](Ctx&) { return attncclCommAbort(fakeComm()); }, IA, "is not a communicator"},
      {"GetAsyncError NULL comm",
       [](Ctx&) { attncclResult_t r; return attncclCommGetAsyncError(nullptr, &r); }, IA, "comm is NULL"},
      {"GetAsyncError NULL out", [](Ctx& c) { return attncclCommGetAsyncError(c.comm, nullptr); }, IA,
       "asyncError is NULL"},
      {"Count not a comm", [](Ctx&) { int n; return attncclCommCount(fakeComm(), &n); }, IA,
       "is not a communicator"},
      {"Count NULL", [](Ctx& c) { return attncclCommCount(c.comm, nullptr); }, IA, "count is NULL"},
      {"UserRank NULL comm", [](Ctx&) { int r; return attncclCommUserRank(nullptr, &r); }, IA, "comm is NULL"},
      {"UserRank NULL", [](Ctx& c) { return attncclCommUserRank(c.comm, nullptr); }, IA, "rank is NULL"},
      {"GetStats NULL comm",
       [](Ctx&) { attncclCommStats_t s = {sizeof(s), 0, 0, 0, 0}; return attncclCommGetStats(nullptr, &s); }, IA,
       "comm is NULL"},
      {"GetStats NULL", [](Ctx& c) { return attncclCommGetStats(c.comm, nullptr); }, IA, "stats is NULL"},
      {"GetStats size 0",
       [](Ctx& c) { attncclCommStats_t s = {0, 0, 0, 0, 0}; return attncclCommGetStats(c.comm, &s); }, IA,
       "stats->size is 0"},
      {"GetStats size 9999",
       [](Ctx& c) { attncclCommStats_t s = {9999, 0, 0, 0, 0}; return attncclCommGetStats(c.comm, &s); }, IA,
       "stats->size is 9999"},
      // ---- library memory
      {"MemAlloc ptr NULL", [](Ctx&) { return attncclMemAlloc(nullptr, 64); }, IA, "ptr is NULL"},
      {"MemAlloc size 0", [](Ctx&) { void* p; return attncclMemAlloc(&p, 0); }, IA, "size is 0"},
      {"MemAlloc size SIZE_MAX", [](Ctx&) { void* p; return attncclMemAlloc(&p, SIZE_MAX); }, IA,
       "size is 18446744073709551615"},
      {"MemFree foreign pointer", [](Ctx& c) { return attncclMemFree(c.a()); }, IA, "was not returned"},
      {"MemFree inside an allocation",
       [](Ctx&) {
         void* p = nullptr;
         if (attncclMemAlloc(&p, 256) != attncclSuccess) return attncclInternalError;
         attncclResult_t r = attncclMemFree(static_cast<char*>(p) + 8);
         attncclMemFree(p);
         return r;
       },
       IA, "was not returned"},
      // ---- point to point and groups
      {"Send comm NULL", [](Ctx& c) { return attncclSend(c.a(), 1, attncclFloat32, 0, nullptr, nullptr); }, IA,
       "comm is NULL"},
      {"Send datatype 42",
       [](Ctx& c) { return attncclSend(c.a(), 1, badEnum<attncclDataType_t>(42), 0, c.comm, nullptr); }, IA,
       "datatype is 42"},
      {"Send datatype -1",
       [](Ctx& c) { return attncclSend(c.a(), 1, badEnum<attncclDataType_t>(-1), 0, c.comm, nullptr); }, IA,
       "datatype is -1"},
      {"Send peer -1", [](Ctx& c) { return attncclSend(c.a(), 1, attncclFloat32, -1, c.comm, nullptr); }, IA,
       "peer is -1"},
      {"Send peer nranks", [](Ctx& c) { return attncclSend(c.a(), 1, attncclFloat32, c.nranks, c.comm, nullptr); },
       IA, "peer is 2"},
      {"Send NULL buffer", [](Ctx& c) { return attncclSend(nullptr, 4, attncclFloat32, 0, c.comm, nullptr); }, IA,
       "sendbuff is NULL"},
      {"Send count overflow",
       [](Ctx& c) { return attncclSend(c.a(), SIZE_MAX / 2, attncclFloat32, 0, c.comm, nullptr); }, IA,
       "count 9223372036854775807 is too large"},
      {"Send stream", [](Ctx& c) { return attncclSend(c.a(), 1, attncclFloat32, 0, c.comm, kStream); }, IA,
       "stream is 0x10"},
      {"Recv NULL buffer", [](Ctx& c) { return attncclRecv(nullptr, 4, attncclInt32, 0, c.comm, nullptr); }, IA,
       "recvbuff is NULL"},
      {"Recv peer 7", [](Ctx& c) { return attncclRecv(c.a(), 1, attncclInt32, 7, c.comm, nullptr); }, IA,
       "peer is 7"},
      {"GroupEnd without GroupStart", [](Ctx&) { return attncclGroupEnd(); }, IU, "without a matching"},
      // ---- collectives
      {"AllGather not a comm",
       [](Ctx& c) { return attncclAllGather(c.a(), c.b(), 1, attncclFloat32, fakeComm(), nullptr); }, IA,
       "is not a communicator"},
      {"AllGather sendbuff NULL",
       [](Ctx& c) { return attncclAllGather(nullptr, c.b(), 1, attncclFloat32, c.comm, nullptr); }, IA,
       "sendbuff is NULL"},
      {"AllGather recvbuff NULL",
       [](Ctx& c) { return attncclAllGather(c.a(), nullptr, 1, attncclFloat32, c.comm, nullptr); }, IA,
       "recvbuff is NULL"},
      {"AllGather count overflow",
       [](Ctx& c) { return attncclAllGather(c.a(), c.b(), SIZE_MAX / 8, attncclFloat64, c.comm, nullptr); }, IA,
       "sendcount"},
      {"AllGather datatype 8",
       [](Ctx& c) { return attncclAllGather(c.a(), c.b(), 1, badEnum<attncclDataType_t>(8), c.comm, nullptr); },
       IA, "datatype is 8"},
      {"AllGather stream",
       [](Ctx& c) { return attncclAllGather(c.a(), c.b(), 1, attncclFloat32, c.comm, kStream); }, IA,
       "stream is 0x10"},
      {"ReduceScatter op 5",
       [](Ctx& c) {
         return attncclReduceScatter(c.a(), c.b(), 1, attncclFloat32, badEnum<attncclRedOp_t>(5), c.comm, nullptr);
       },
       IA, "op is 5"},
      {"ReduceScatter op -1",
       [](Ctx& c) {
         return attncclReduceScatter(c.a(), c.b(), 1, attncclFloat32, badEnum<attncclRedOp_t>(-1), c.comm, nullptr);
       },
       IA, "op is -1"},
      {"ReduceScatter recvbuff NULL",
       [](Ctx& c) { return attncclReduceScatter(c.a(), nullptr, 3, attncclFloat32, attncclSum, c.comm, nullptr); },
       IA, "recvbuff is NULL"},
      {"ReduceScatter recvcount overflow",
       [](Ctx& c) {
         return attncclReduceScatter(c.a(), c.b(), SIZE_MAX / 3, attncclFloat32, attncclSum, c.comm, nullptr);
       },
       IA, "recvcount"},
      {"AllReduce not a comm",
       [](Ctx& c) { return attncclAllReduce(c.a(), c.b(), 1, attncclFloat32, attncclSum, fakeComm(), nullptr); }, IA,
       "is not a communicator"},
      {"AllReduce op 5",
       [](Ctx& c) {
         return attncclAllReduce(c.a(), c.b(), 1, attncclFloat32, badEnum<attncclRedOp_t>(5), c.comm, nullptr);
       },
       IA, "attncclAllReduce: op is 5"},
      {"AllReduce op -1",
       [](Ctx& c) {
         return attncclAllReduce(c.a(), c.b(), 1, attncclFloat32, badEnum<attncclRedOp_t>(-1), c.comm, nullptr);
       },
       IA, "op is -1"},
      {"AllReduce datatype 8",
       [](Ctx& c) {
         return attncclAllReduce(c.a(), c.b(), 1, badEnum<attncclDataType_t>(8), attncclSum, c.comm, nullptr);
       },
       IA, "datatype is 8"},
      {"AllReduce sendbuff NULL",
       [](Ctx& c) { return attncclAllReduce(nullptr, c.b(), 3, attncclFloat32, attncclMax, c.comm, nullptr); }, IA,
       "attncclAllReduce: sendbuff is NULL"},
      {"AllReduce recvbuff NULL",
       [](Ctx& c) { return attncclAllReduce(c.a(), nullptr, 3, attncclFloat32, attncclMin, c.comm, nullptr); }, IA,
       "recvbuff is NULL"},
      {"AllReduce count overflow",
       [](Ctx& c) {
         return attncclAllReduce(c.a(), c.b(), SIZE_MAX / 2, attncclFloat32, attncclAvg, c.comm, nullptr);
       },
       IA, "count"},
      {"AllReduce stream",
       [](Ctx& c) { return attncclAllReduce(c.a(), c.b(), 1, attncclFloat32, attncclSum, c.comm, kStream); }, IA,
       "stream is 0x10"},
      {"Broadcast root 2",
       [](Ctx& c) { return attncclBroadcast(c.a(), c.b(), 1, attncclFloat32, 2, c.comm, nullptr); }, IA,
       "attncclBroadcast: root is 2"},
      {"Broadcast root -1",
       [](Ctx& c) { return attncclBroadcast(c.a(), c.b(), 1, attncclFloat32, -1, c.comm, nullptr); }, IA,
       "root is -1"},
      {"Broadcast recvbuff NULL",
       [](Ctx& c) { return attncclBroadcast(c.a(), nullptr, 2, attncclInt8, 0, c.comm, nullptr); }, IA,
       "recvbuff is NULL"},
      {"Broadcast count overflow",
       [](Ctx& c) { return attncclBroadcast(c.a(), c.b(), SIZE_MAX / 4, attncclInt64, 0, c.comm, nullptr); }, IA,
       "count"},
      {"Broadcast datatype -3",
       [](Ctx& c) { return attncclBroadcast(c.a(), c.b(), 1, badEnum<attncclDataType_t>(-3), 0, c.comm, nullptr); },
       IA, "datatype is -3"},
      {"Broadcast stream",
       [](Ctx& c) { return attncclBroadcast(c.a(), c.b(), 1, attncclFloat32, 0, c.comm, kStream); }, IA,
       "stream is 0x10"},
      {"Reduce op 7",
       [](Ctx& c) {
         return attncclReduce(c.a(), c.b(), 1, attncclFloat32, badEnum<attncclRedOp_t>(7), 0, c.comm, nullptr);
       },
       IA, "attncclReduce: op is 7"},
      {"Reduce root 5",
       [](Ctx& c) { return attncclReduce(c.a(), c.b(), 1, attncclFloat32, attncclSum, 5, c.comm, nullptr); }, IA,
       "root is 5"},
      {"Reduce sendbuff NULL",
       [](Ctx& c) { return attncclReduce(nullptr, c.b(), 1, attncclFloat32, attncclSum, 0, c.comm, nullptr); }, IA,
       "sendbuff is NULL"},
      {"Reduce count overflow",
       [](Ctx& c) {
         return attncclReduce(c.a(), c.b(), SIZE_MAX / 2, attncclFloat32, attncclProd, 0, c.comm, nullptr);
       },
       IA, "count"},
      {"Reduce stream",
       [](Ctx& c) { return attncclReduce(c.a(), c.b(), 1, attncclFloat32, attncclSum, 0, c.comm, kStream); }, IA,
       "stream is 0x10"},
      {"Barrier not a comm", [](Ctx&) { return attncclBarrier(fakeComm(), nullptr); }, IA, "is not a communicator"},
      {"Barrier NULL comm", [](Ctx&) { return attncclBarrier(nullptr, nullptr); }, IA, "comm is NULL"},
      {"Barrier stream", [](Ctx& c) { return attncclBarrier(c.comm, kStream); }, IA, "stream is 0x10"},
      {"AllToAll in place", [](Ctx& c) { return attncclAllToAll(c.a(), c.a(), 4, attncclFloat32, c.comm, nullptr); },
       IA, "in-place"},
      {"AllToAll sendbuff NULL",
       [](Ctx& c) { return attncclAllToAll(nullptr, c.b(), 4, attncclFloat32, c.comm, nullptr); }, IA,
       "sendbuff is NULL"},
      {"AllToAll count overflow",
       [](Ctx& c) { return attncclAllToAll(c.a(), c.b(), SIZE_MAX / 4, attncclFloat32, c.comm, nullptr); }, IA,
       "count"},
      {"AllToAllv NULL counts",
       [](Ctx& c) {
         size_t d[2] = {0, 1};
         return attncclAllToAllv(c.a(), nullptr, d, c.b(), d, d, attncclFloat32, c.comm, nullptr);
       },
       IA, "must not be NULL"},
      {"AllToAllv count overflow",
       [](Ctx& c) {
         size_t n[2] = {SIZE_MAX / 2, 1}, d[2] = {0, 1};
         return attncclAllToAllv(c.a(), n, d, c.b(), d, d, attncclFloat32, c.comm, nullptr);
       },
       IA, "sendcounts"},
      {"AllToAllv recvbuff NULL",
       [](Ctx& c) {
         size_t n[2] = {1, 1}, d[2] = {0, 1};
         return attncclAllToAllv(c.a(), n, d, nullptr, n, d, attncclFloat32, c.comm, nullptr);
       },
       IA, "recvbuff is NULL"},
      {"AllToAllv datatype",
       [](Ctx& c) {
         size_t n[2] = {1, 1}, d[2] = {0, 1};
         return attncclAllToAllv(c.a(), n, d, c.b(), n, d, badEnum<attncclDataType_t>(77), c.comm, nullptr);
       },
       IA, "datatype is 77"},
  };
  return t;
}


// Runs every row; "" when all returned what they must with a message naming the argument.
std::string runTable(Ctx& c, const std::vector<Row>& table) {
  std::string errs;
  for (const Row& row : table) {
    attncclResult_t r = row.call(c);
    const char* msg = attncclGetLastError(nullptr);
    if (r != row.expect) {
      errs += format("%s: returned %s (%d), expected %s: %s\n", row.name, attncclGetErrorString(r), r,
                     attncclGetErrorString(row.expect), msg);
    } else if (strstr(msg, row.needle) == nullptr) {
      errs += format("%s: message '%s' lacks '%s'\n", row.name, msg, row.needle);
    }
  }
  return errs;
}

TEST(InvalidArgs, EveryPublicFunctionNamesTheArgumentAndTheCommStaysUsable) {
  const std::vector<Row> table = rows(), attn = attentionRows();
  std::string err = runRanks(2, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    Ctx c;
    c.nranks = n;
    RK_SUB(initComm(&c.comm, rank, n, id, nullptr, 1, 20000));
    c.desc.seqLen = 16;
    c.desc.numHeadsQ = 4;
    c.desc.numHeadsKV = 2;
    c.desc.headDim = 8;
    std::string errs = runTable(c, table) + runTable(c, attn);
    RK_CHECK(errs.empty(), "\n%s", errs.c_str());
    // Nothing above communicated or broke the communicator.
    attncclResult_t async = attncclInternalError;
    RK_OK(attncclCommGetAsyncError(c.comm, &async));
    RK_CHECK(async == attncclSuccess, "async error %s after refused calls", attncclGetErrorString(async));
    int32_t mine = 10 + rank, all[2] = {0, 0};
    RK_OK(attncclAllGather(&mine, all, 1, attncclInt32, c.comm, nullptr));
    RK_CHECK(all[0] == 10 && all[1] == 11, "allgather after refused calls: %d %d", all[0], all[1]);
    RK_OK(attncclCommDestroy(c.comm));
    return "";
  });
  EXPECT_EQ(err, "");
  printf("[ invalid args ] %zu rows, each refused with its argument named, on 2 ranks\n", table.size() + attn.size());
}

TEST(InvalidArgs, WrongCallSequences) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclComm_t comm = nullptr;
  ASSERT_EQ(attncclCommInitRank(&comm, 1, id, 0, nullptr), attncclSuccess);
  float x = 1.f, y = 0.f;
  ASSERT_EQ(attncclAllGather(&x, &y, 1, attncclFloat32, comm, nullptr), attncclSuccess);
  EXPECT_EQ(attncclGroupEnd(), attncclInvalidUsage);
  ASSERT_EQ(attncclCommFinalize(comm), attncclSuccess);
  // Use after finalize: data calls and split are refused, queries still answer.
  EXPECT_EQ(attncclAllGather(&x, &y, 1, attncclFloat32, comm, nullptr), attncclInvalidUsage);
  EXPECT_NE(strstr(attncclGetLastError(nullptr), "finalized"), nullptr) << attncclGetLastError(nullptr);
  EXPECT_EQ(attncclSend(&x, 1, attncclFloat32, 0, comm, nullptr), attncclInvalidUsage);
  attncclComm_t sub = nullptr;
  EXPECT_EQ(attncclCommSplit(comm, 0, 0, &sub, nullptr), attncclInvalidUsage);
  EXPECT_EQ(attncclCommFinalize(comm), attncclInvalidUsage);
  EXPECT_NE(strstr(attncclGetLastError(nullptr), "finalized already"), nullptr);
  int n = 0;
  EXPECT_EQ(attncclCommCount(comm, &n), attncclSuccess);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
  // NULL is accepted by the release calls, as free(NULL).
  EXPECT_EQ(attncclCommDestroy(nullptr), attncclSuccess);
  EXPECT_EQ(attncclCommAbort(nullptr), attncclSuccess);
  EXPECT_EQ(attncclMemFree(nullptr), attncclSuccess);
  // Out-of-range enum values are named, never used.
  EXPECT_STREQ(attncclGetErrorString(badEnum<attncclResult_t>(99)), "unknown result code");
  EXPECT_STREQ(attncclAlgoName(badEnum<attncclAlgo_t>(42)), "unknown");
}

TEST(InvalidArgs, GetStatsHonoursAShorterStruct) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclComm_t comm = nullptr;
  ASSERT_EQ(attncclCommInitRank(&comm, 1, id, 0, nullptr), attncclSuccess);
  // A caller that knows only the first two counters: the rest of its memory is not written.
  struct {
    attncclCommStats_t s;
    uint64_t guard;
  } st;
  memset(&st, 0xab, sizeof st);
  st.s.size = offsetof(attncclCommStats_t, messagesSent);
  ASSERT_EQ(attncclCommGetStats(comm, &st.s), attncclSuccess);
  EXPECT_EQ(st.s.bytesSent, 0u);
  EXPECT_EQ(st.s.bytesRecv, 0u);
  EXPECT_EQ(st.s.messagesSent, 0xababababababababull);
  EXPECT_EQ(st.guard, 0xababababababababull);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
}

}  // namespace
