// The sharded KV cache (include/attnccl.h, "inference"): after every step of a script of prefill
// chunks (append n tokens, attend their n queries) and decode steps (n = 1), every rank's out and
// lse are compared with the fp64 reference over the whole cached sequence, causal, taking the
// query rows [L-n, L). (The reference is computed once over the final sequence: under a causal
// mask row p depends only on keys j <= p, so its rows are those of the reference over any prefix
// that holds p.) Outputs are poisoned before every call; every rank must also get bit-identical
// results (the merge runs in rank order). Both placements, blocks that do and do not divide the
// chunks, 1..8 ranks as threads and as processes, shm and ucx, the three dtypes, GQA/MQA,
// windows; the capacity and argument errors, and that they change nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "attn/kvcache/cache.h"
#include "attn/kvcache/placement.h"
#include "support/ranks.h"
#include "support/reference.h"
#include "support/tensors.h"

using namespace attnccl;
using namespace attnccl::test;
using namespace attnccl_test;

namespace {

struct KvCase {
  int nranks = 2;
  Mode mode = Mode::kThreads;
  const char* transport = "shm";
  attncclDataType_t dtype = attncclFloat32;
  int hq = 4, hkv = 2, d = 16;
  attncclKvPlacement_t placement = attncclKvPlaceRoundRobin;
  int64_t block = 4;  // 0 = the library's choice
  int64_t window = -1;
  float scale = 0.f;
  std::vector<int64_t> steps = {5, 1, 1, 8, 1, 3, 1, 1, 7, 1};  // n per step: 1 = decode
  int64_t spare = 3;                                            // capacity = sum(steps) + spare
  int cpuThreads = 1;
  int combine = 0;          // attn::kvSetCombineForTest: 0 by the sizes, 1 all-gather, 2 by heads
  bool checkBytes = false;  // every step's bytes sent equal the combine's volume
};

std::string caseName(const KvCase& c) {
  return format("P=%d %s %s %s Hq=%d Hkv=%d D=%d %s block=%lld window=%lld", c.nranks, modeName(c.mode), c.transport,
                c.dtype == attncclFloat32   ? "fp32"
                : c.dtype == attncclFloat16 ? "fp16"
                                            : "bf16",
                c.hq, c.hkv, c.d, c.placement == attncclKvPlaceRoundRobin ? "round-robin" : "contiguous",
                static_cast<long long>(c.block), static_cast<long long>(c.window));
}

uint64_t fnv(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

attncclKvCacheDesc_t kvDesc(const KvCase& c, int64_t capacity) {
  attncclKvCacheDesc_t d = ATTNCCL_KV_CACHE_DESC_INITIALIZER;
  d.dtype = c.dtype;
  d.numHeadsQ = c.hq;
  d.numHeadsKV = c.hkv;
  d.headDim = c.d;
  d.capacity = capacity;
  d.placement = c.placement;
  d.blockTokens = c.block;
  d.windowLeft = c.window;
  d.softmaxScale = c.scale;
  return d;
}

std::string runScript(const KvCase& c, uint64_t seed, int rank, int nranks, const attncclUniqueId& id) {
  int64_t T = 0;
  for (int64_t n : c.steps) T += n;
  const int64_t qW = int64_t{c.hq} * c.d, kvW = int64_t{c.hkv} * c.d;
  Tensor q = randomTensor(c.dtype, T * qW, subSeed(seed, 0));
  Tensor k = randomTensor(c.dtype, T * kvW, subSeed(seed, 1));
  Tensor v = randomTensor(c.dtype, T * kvW, subSeed(seed, 2));
  attncclAttnDesc_t rd = ATTNCCL_ATTN_DESC_INITIALIZER;
  rd.seqLen = T;
  rd.numHeadsQ = c.hq;
  rd.numHeadsKV = c.hkv;
  rd.headDim = c.d;
  rd.causal = 1;
  rd.windowLeft = c.window;
  rd.softmaxScale = c.scale;
  const RefForward ref = refForward(rd, q.toDouble(), k.toDouble(), v.toDouble());

  attncclComm_t comm = nullptr;
  RK_SUB(initComm(&comm, rank, nranks, id, c.transport, c.cpuThreads));
  attncclKvCacheDesc_t d = kvDesc(c, T + c.spare);
  attncclKvCache_t cache = nullptr;
  RK_OK(attncclKvCacheCreate(&cache, &d, comm));
  const size_t esz = c.dtype == attncclFloat32 ? 4 : 2;
  int64_t L = 0;
  for (size_t step = 0; step < c.steps.size(); ++step) {
    const int64_t n = c.steps[step];
    RK_OK(attncclKvCacheAppend(cache, static_cast<const char*>(k.data()) + L * kvW * esz,
                               static_cast<const char*>(v.data()) + L * kvW * esz, n, nullptr));
    L += n;
    int64_t len = -1;
    RK_OK(attncclKvCacheLength(cache, &len));
    RK_CHECK(len == L, "length %lld after step %zu, expected %lld", static_cast<long long>(len), step,
             static_cast<long long>(L));
    Tensor out(c.dtype, n * qW);
    std::vector<float> lse(static_cast<size_t>(n * c.hq));
    poison(out);
    poison(lse);
    attncclCommStats_t st0 = {sizeof st0, 0, 0, 0, 0}, st1 = {sizeof st1, 0, 0, 0, 0};
    RK_OK(attncclCommGetStats(comm, &st0));
    RK_OK(attncclKvCacheAttend(cache, static_cast<const char*>(q.data()) + (L - n) * qW * esz, n, out.data(),
                               lse.data(), nullptr));
    RK_OK(attncclCommGetStats(comm, &st1));
    if (c.checkBytes) {
      const bool byHeads = c.combine == 2 || (c.combine == 0 && nranks > 2 && n * c.hq * (c.d + 1) * 4 >= 65536);
      // Does this rank see any key? (Its slots below L, less those the window hides.)
      attn::KvPlacement pl;
      pl.kind = c.placement;
      pl.nranks = nranks;
      pl.capacity = T + c.spare;
      pl.block = c.block ? c.block : attn::defaultKvBlockTokens(pl.capacity, nranks);
      const int64_t lo = c.window >= 0 ? std::max<int64_t>(0, L - n - c.window) : 0;
      const bool data = pl.ownedBelow(rank, L) > pl.ownedBelow(rank, lo);
      uint64_t want = 0;
      for (int p = 0; p < nranks; ++p) {
        if (p == rank) continue;
        if (!byHeads) {
          want += 32 + (data ? static_cast<uint64_t>(n * c.hq * (c.d + 1) * 4) : 0);
        } else {  // rank p's heads of my partial (if I have one), then my merged heads
          const int64_t cp = c.hq / nranks + (p < c.hq % nranks ? 1 : 0);
          const int64_t cm = c.hq / nranks + (rank < c.hq % nranks ? 1 : 0);
          want += 32 + (data ? static_cast<uint64_t>(n * cp * (c.d + 1) * 4) : 0) + 32 +
                  static_cast<uint64_t>(n * cm * (c.d + 1) * 4);
        }
      }
      RK_CHECK(st1.bytesSent - st0.bytesSent == want, "step %zu (n %lld): rank %d sent %llu bytes, the %s sends %llu",
               step, static_cast<long long>(n), rank, static_cast<unsigned long long>(st1.bytesSent - st0.bytesSent),
               byHeads ? "combine by heads" : "all-gather", static_cast<unsigned long long>(want));
    }
    // The reference's rows [L-n, L) and its lse [Hq][L-n .. L).
    std::vector<double> wantO(ref.out.begin() + (L - n) * qW, ref.out.begin() + L * qW);
    std::vector<double> wantL, gotL;
    for (int h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < n; ++i) {
        wantL.push_back(ref.lse[h * T + L - n + i]);
        gotL.push_back(lse[h * n + i]);
      }
    const double eo = relNormError(out.toDouble(), wantO), el = maxAbsError(gotL, wantL);
    RK_CHECK(eo <= tolerance(c.dtype) && el <= kLseTolerance,
             "rank %d step %zu (n %lld, length %lld): out error %g (tol %g), lse error %g (tol %g)", rank, step,
             static_cast<long long>(n), static_cast<long long>(L), eo, tolerance(c.dtype), el, kLseTolerance);
    // Bit-identical on every rank: the hashes of out and lse, gathered.
    uint64_t h = fnv(lse.data(), lse.size() * sizeof(float), fnv(out.data(), static_cast<size_t>(n * qW) * esz));
    std::vector<uint64_t> all(static_cast<size_t>(nranks));
    RK_OK(attncclAllGather(&h, all.data(), sizeof h, attncclUint8, comm, nullptr));
    for (int p = 0; p < nranks; ++p)
      RK_CHECK(all[p] == h, "step %zu: rank %d's result differs from rank %d's (not bit-identical)", step, p, rank);
  }
  RK_OK(attncclKvCacheDestroy(cache));
  RK_OK(attncclCommDestroy(comm));
  return "";
}

void runCase(const KvCase& c) {
  attn::kvSetCombineForTest(c.combine);
  const uint64_t seed = testSeed();
  std::string err = runRanks(c.nranks, c.mode, [&](int rank, int nranks, const attncclUniqueId& id) {
    return runScript(c, seed, rank, nranks, id);
  });
  attn::kvSetCombineForTest(0);
  EXPECT_EQ(err, "") << caseName(c) << " combine " << c.combine << " " << seedText(seed);
}

bool haveUcx() {
  for (const char* t : testTransports())
    if (std::string(t) == "ucx") return true;
  return false;
}

}  // namespace

TEST(KvPlacement, OwnerSlotAndPositionAgree) {
  for (int P : {1, 2, 3, 5, 8})
    for (attncclKvPlacement_t kind : {attncclKvPlaceRoundRobin, attncclKvPlaceContiguous})
      for (int64_t cap : {1, 7, 16, 61})
        for (int64_t block : {1, 3, 4, 16}) {
          attn::KvPlacement pl;
          pl.kind = kind;
          pl.nranks = P;
          pl.capacity = cap;
          pl.block = block;
          std::vector<int64_t> seen(static_cast<size_t>(P), 0);
          for (int64_t p = 0; p < cap; ++p) {
            const int r = pl.owner(p);
            ASSERT_TRUE(r >= 0 && r < P) << p;
            // Slots fill in position order: the p-th token of rank r is slot seen[r].
            ASSERT_EQ(pl.slot(p), seen[r]) << "P " << P << " kind " << kind << " cap " << cap << " pos " << p;
            ASSERT_EQ(pl.position(r, seen[r]), p);
            ++seen[r];
            for (int q = 0; q < P; ++q) ASSERT_EQ(pl.ownedBelow(q, p + 1), seen[q]);
            if (kind == attncclKvPlaceRoundRobin) {
              ASSERT_EQ(r, (p / block) % P);
            }
          }
          int64_t total = 0;
          for (int q = 0; q < P; ++q) {
            ASSERT_EQ(pl.shardCapacity(q), seen[q]);
            total += pl.shardCapacity(q);
            // contiguous: pieces as even as possible
            if (kind == attncclKvPlaceContiguous) {
              ASSERT_LE(seen[q] - cap / P, 1);
            }
          }
          ASSERT_EQ(total, cap);
        }
}

TEST(KvCache, ThreadRanksBothPlacements) {
  for (int P : {1, 2, 3, 4, 5, 8})
    for (attncclKvPlacement_t pl : {attncclKvPlaceRoundRobin, attncclKvPlaceContiguous}) {
      KvCase c;
      c.nranks = P;
      c.placement = pl;
      c.block = P % 2 ? 3 : 4;  // 3 divides none of the chunks 5, 8, 7; 4 divides 8
      runCase(c);
    }
}

// The combine by heads (reduce-scatter of the partials by query heads, then an all-gather of
// the merged heads), forced at every step: ranks with several, one or no heads (Hq 6 over up to
// 8 ranks), windows, dtypes, processes and ucx; and chosen by the sizes for large chunks, with
// the exact bytes of either combine at every step.
TEST(KvCache, CombineByHeads) {
  for (int P : {2, 3, 5, 8}) {
    KvCase c;
    c.nranks = P;
    c.combine = 2;
    c.hq = 6;
    c.hkv = 3;
    c.d = 8;
    c.block = 3;
    c.checkBytes = true;
    c.placement = P % 2 ? attncclKvPlaceContiguous : attncclKvPlaceRoundRobin;
    if (P == 5) c.window = 4;
    if (P == 3) c.dtype = attncclBfloat16;
    runCase(c);
  }
  KvCase p;
  p.nranks = 3;
  p.mode = Mode::kProcesses;
  p.combine = 2;
  p.checkBytes = true;
  runCase(p);
  if (haveUcx()) {
    p.mode = Mode::kThreads;
    p.transport = "ucx";
    runCase(p);
  }
  KvCase a;  // by the sizes: chunks of 250+ tokens (partials >= 64 KB) by heads, decode steps in one round
  a.nranks = 3;
  a.steps = {250, 1, 260, 1};
  a.checkBytes = true;
  runCase(a);
}

TEST(KvCache, DefaultBlockAndLongerCache) {
  KvCase c;
  c.nranks = 3;
  c.block = 0;  // the library's choice (16 here): one rank holds everything at first
  c.steps = {40, 1, 1, 1, 17, 1, 1};
  runCase(c);
}

TEST(KvCache, Dtypes) {
  for (attncclDataType_t t : {attncclFloat16, attncclBfloat16})
    for (attncclKvPlacement_t pl : {attncclKvPlaceRoundRobin, attncclKvPlaceContiguous}) {
      KvCase c;
      c.nranks = 3;
      c.dtype = t;
      c.placement = pl;
      runCase(c);
    }
}

TEST(KvCache, GqaMqaAndScale) {
  for (int hkv : {1, 2, 6}) {
    KvCase c;
    c.nranks = 4;
    c.hq = 6;
    c.hkv = hkv;
    c.d = 8;
    c.scale = 0.3f;
    runCase(c);
  }
}

TEST(KvCache, Windows) {
  // Windows that hide whole shards (block 2, window 3: most ranks see nothing at a decode step)
  // and that cut through a chunk.
  for (int64_t w : {0, 3, 9})
    for (attncclKvPlacement_t pl : {attncclKvPlaceRoundRobin, attncclKvPlaceContiguous}) {
      KvCase c;
      c.nranks = 5;
      c.block = 2;
      c.window = w;
      c.placement = pl;
      runCase(c);
    }
}

TEST(KvCache, PoolThreads) {
  KvCase c;
  c.nranks = 2;
  c.cpuThreads = 2;
  c.d = 64;
  c.steps = {300, 1, 1, 129, 1};
  runCase(c);
  // Shards cut into pieces for the pool (split-K; pieces of >= 16 keys for the test instead of
  // 2048), merged in order: GQA with packed query rows, MQA with a window, 3 threads per rank.
  attn::kvSetMinPieceKeysForTest(16);
  KvCase k;
  k.nranks = 2;
  k.cpuThreads = 3;
  k.steps = {70, 1, 9, 1, 40, 1};
  runCase(k);
  k.hkv = 1;
  k.window = 50;
  k.placement = attncclKvPlaceContiguous;
  runCase(k);
  attn::kvSetMinPieceKeysForTest(0);
}

TEST(KvCache, ProcessRanks) {
  for (int P : {2, 4}) {
    KvCase c;
    c.nranks = P;
    c.mode = Mode::kProcesses;
    c.block = 3;
    runCase(c);
  }
  KvCase m;
  m.nranks = 4;
  m.mode = Mode::kMixed;
  m.placement = attncclKvPlaceContiguous;
  runCase(m);
}

TEST(KvCache, Ucx) {
  if (!haveUcx()) GTEST_SKIP() << "this build has no UCX transport";
  for (int P : {2, 3}) {
    KvCase c;
    c.nranks = P;
    c.transport = "ucx";
    c.block = 3;
    c.window = P == 3 ? 4 : -1;
    runCase(c);
  }
  KvCase p;
  p.nranks = 2;
  p.mode = Mode::kProcesses;
  p.transport = "ucx";
  runCase(p);
}

// Every bad argument: the named error, and the cache (and the communicator) unchanged: the
// attends after the failed calls still match the reference.
TEST(KvCache, ErrorsChangeNothing) {
  const uint64_t seed = testSeed();
  std::string err = runRanks(2, Mode::kThreads, [&](int rank, int nranks, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, nranks, id));
    KvCase c;
    const int64_t cap = 6, qW = int64_t{c.hq} * c.d, kvW = int64_t{c.hkv} * c.d;
    attncclKvCacheDesc_t d = kvDesc(c, cap);
    attncclKvCache_t cache = nullptr;
    // descriptor errors (local: no rank reaches the collective part)
    {
      attncclKvCacheDesc_t b = d;
      b.numHeadsQ = 3;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      RK_CHECK(strstr(attncclGetLastError(comm), "numHeadsQ 3") != nullptr, "%s", attncclGetLastError(comm));
      RK_CHECK(cache == nullptr, "cache set after a failed create");
      b = d;
      b.capacity = 0;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      b = d;
      b.magic = 1;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      b = d;
      b.windowLeft = -2;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      b = d;
      b.blockTokens = -1;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      b = d;
      reinterpret_cast<int*>(&b.placement)[0] = 7;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, nullptr, comm), attncclInvalidArgument);
      RK_EXPECT_RESULT(attncclKvCacheCreate(nullptr, &d, comm), attncclInvalidArgument);
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &d, nullptr), attncclInvalidArgument);
    }
    // ranks that pass different descriptors: both fail, clearly
    {
      attncclKvCacheDesc_t b = d;
      if (rank == 1) b.capacity = cap + 1;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      RK_CHECK(strstr(attncclGetLastError(comm), "different cache descriptor") != nullptr, "%s",
               attncclGetLastError(comm));
      RK_CHECK(cache == nullptr, "cache set after a failed create");
    }
    // a shard no rank can allocate (2^43 slots each): every rank fails, none waits for the others
    {
      attncclKvCacheDesc_t b = d;
      b.numHeadsQ = b.numHeadsKV = b.headDim = 1;
      b.capacity = int64_t{1} << 44;
      RK_EXPECT_RESULT(attncclKvCacheCreate(&cache, &b, comm), attncclInvalidArgument);
      RK_CHECK(strstr(attncclGetLastError(comm), "could not allocate") != nullptr, "%s", attncclGetLastError(comm));
      RK_CHECK(cache == nullptr, "cache set after a failed create");
    }
    RK_OK(attncclKvCacheCreate(&cache, &d, comm));
    Tensor q = randomTensor(c.dtype, cap * qW, subSeed(seed, 0));
    Tensor k = randomTensor(c.dtype, cap * kvW, subSeed(seed, 1));
    Tensor v = randomTensor(c.dtype, cap * kvW, subSeed(seed, 2));
    Tensor out(c.dtype, cap * qW);
    std::vector<float> lse(static_cast<size_t>(cap * c.hq));
    int64_t len = -1;
    // attend on an empty cache, n = 0, bad pointers
    RK_EXPECT_RESULT(attncclKvCacheAttend(cache, q.data(), 1, out.data(), lse.data(), nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "length 0") != nullptr, "%s", attncclGetLastError(comm));
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), v.data(), 0, nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, nullptr, v.data(), 2, nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), nullptr, 2, nullptr), attncclInvalidArgument);
    int dummyStream = 0;
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), v.data(), 2, reinterpret_cast<cudaStream_t>(&dummyStream)),
                     attncclInvalidArgument);
    // past capacity: an error, nothing appended
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), v.data(), cap + 1, nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "do not fit") != nullptr, "%s", attncclGetLastError(comm));
    RK_OK(attncclKvCacheLength(cache, &len));
    RK_CHECK(len == 0, "length %lld after failed appends", static_cast<long long>(len));
    RK_OK(attncclKvCacheAppend(cache, k.data(), v.data(), 4, nullptr));
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), v.data(), 3, nullptr), attncclInvalidArgument);
    RK_OK(attncclKvCacheLength(cache, &len));
    RK_CHECK(len == 4, "length %lld after a failed append past capacity", static_cast<long long>(len));
    RK_EXPECT_RESULT(attncclKvCacheAttend(cache, q.data(), 0, out.data(), lse.data(), nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheAttend(cache, q.data(), 5, out.data(), lse.data(), nullptr), attncclInvalidArgument);
    RK_CHECK(strstr(attncclGetLastError(comm), "n 5 is more than the cache's length 4") != nullptr, "%s",
             attncclGetLastError(comm));
    RK_EXPECT_RESULT(attncclKvCacheAttend(cache, nullptr, 1, out.data(), lse.data(), nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheAttend(cache, q.data(), 1, nullptr, lse.data(), nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheAttend(nullptr, q.data(), 1, out.data(), lse.data(), nullptr),
                     attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheLength(cache, nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclKvCacheLength(nullptr, &len), attncclInvalidArgument);
    // still correct: fill to capacity, attend the last 2 (and once with lse NULL)
    RK_OK(attncclKvCacheAppend(cache, static_cast<const char*>(k.data()) + 4 * kvW * 4,
                               static_cast<const char*>(v.data()) + 4 * kvW * 4, 2, nullptr));
    attncclAttnDesc_t rd = ATTNCCL_ATTN_DESC_INITIALIZER;
    rd.seqLen = cap;
    rd.numHeadsQ = c.hq;
    rd.numHeadsKV = c.hkv;
    rd.headDim = c.d;
    rd.causal = 1;
    const RefForward ref = refForward(rd, q.toDouble(), k.toDouble(), v.toDouble());
    for (float* l : {lse.data(), static_cast<float*>(nullptr)}) {
      poison(out);
      RK_OK(attncclKvCacheAttend(cache, static_cast<const char*>(q.data()) + 4 * qW * 4, 2, out.data(), l, nullptr));
      std::vector<double> got = out.toDouble();
      got.resize(static_cast<size_t>(2 * qW));
      std::vector<double> want(ref.out.begin() + 4 * qW, ref.out.end());
      RK_CHECK(relNormError(got, want) <= tolerance(c.dtype), "after the errors: out error %g",
               relNormError(got, want));
    }
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), v.data(), 1, nullptr), attncclInvalidArgument);
    RK_OK(attncclKvCacheDestroy(cache));
    RK_OK(attncclKvCacheDestroy(nullptr));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "") << seedText(seed);
}

// An aborted communicator takes the cache with it: Append and Attend refuse (the communicator
// is unusable), Length still answers and Destroy frees the cache.
TEST(KvCache, UnusableWithAnAbortedCommunicator) {
  std::string err = runRanks(1, Mode::kThreads, [&](int rank, int nranks, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, nranks, id));
    KvCase c;
    attncclKvCacheDesc_t d = kvDesc(c, 8);
    attncclKvCache_t cache = nullptr;
    RK_OK(attncclKvCacheCreate(&cache, &d, comm));
    Tensor k = randomTensor(c.dtype, 8 * c.hkv * c.d, 1), q = randomTensor(c.dtype, 8 * c.hq * c.d, 2);
    Tensor out(c.dtype, 8 * c.hq * c.d);
    RK_OK(attncclKvCacheAppend(cache, k.data(), k.data(), 2, nullptr));
    RK_OK(attncclCommAbort(comm));
    RK_EXPECT_RESULT(attncclKvCacheAppend(cache, k.data(), k.data(), 1, nullptr), attncclInvalidUsage);
    RK_EXPECT_RESULT(attncclKvCacheAttend(cache, q.data(), 1, out.data(), nullptr, nullptr), attncclInvalidUsage);
    int64_t len = -1;
    RK_OK(attncclKvCacheLength(cache, &len));
    RK_CHECK(len == 2, "length %lld", static_cast<long long>(len));
    RK_OK(attncclKvCacheDestroy(cache));  // attncclCommAbort freed the communicator
    return "";
  });
  EXPECT_EQ(err, "");
}

// A non-blocking communicator queues the calls in order on its worker: an attend sees the length
// of its own call (not the appends queued after it), and destroying the handle while calls are
// still queued is safe (they hold the cache's state).
TEST(KvCache, NonBlockingQueuesInOrder) {
  const uint64_t seed = testSeed();
  KvCase c;
  const int64_t T = 7, qW = int64_t{c.hq} * c.d, kvW = int64_t{c.hkv} * c.d;
  Tensor q = randomTensor(c.dtype, T * qW, subSeed(seed, 0));
  Tensor k = randomTensor(c.dtype, T * kvW, subSeed(seed, 1));
  Tensor v = randomTensor(c.dtype, T * kvW, subSeed(seed, 2));
  attncclAttnDesc_t rd = ATTNCCL_ATTN_DESC_INITIALIZER;
  rd.seqLen = T;
  rd.numHeadsQ = c.hq;
  rd.numHeadsKV = c.hkv;
  rd.headDim = c.d;
  rd.causal = 1;
  const RefForward ref = refForward(rd, q.toDouble(), k.toDouble(), v.toDouble());
  std::string err = runRanks(3, Mode::kThreads, [&](int rank, int nranks, const attncclUniqueId& id) -> std::string {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    cfg.cpuThreads = 1;
    attncclComm_t comm = nullptr;
    attncclResult_t r = attncclCommInitRank(&comm, nranks, id, rank, &cfg);
    RK_CHECK(r == attncclSuccess || r == attncclInProgress, "init: %s", attncclGetErrorString(r));
    attncclKvCacheDesc_t d = kvDesc(c, T);
    attncclKvCache_t cache = nullptr;
    auto queued = [](attncclResult_t x) { return x == attncclSuccess || x == attncclInProgress; };
    RK_CHECK(queued(attncclKvCacheCreate(&cache, &d, comm)), "create: %s", attncclGetLastError(comm));
    Tensor out6(c.dtype, 6 * qW), out1(c.dtype, qW);
    poison(out6);
    poison(out1);
    RK_CHECK(queued(attncclKvCacheAppend(cache, k.data(), v.data(), 6, nullptr)), "%s", attncclGetLastError(comm));
    RK_CHECK(queued(attncclKvCacheAttend(cache, q.data(), 6, out6.data(), nullptr, nullptr)), "%s",
             attncclGetLastError(comm));
    RK_CHECK(queued(attncclKvCacheAppend(cache, static_cast<const char*>(k.data()) + 6 * kvW * 4,
                                         static_cast<const char*>(v.data()) + 6 * kvW * 4, 1, nullptr)),
             "%s", attncclGetLastError(comm));
    int64_t len = -1;
    RK_OK(attncclKvCacheLength(cache, &len));
    RK_CHECK(len == 7, "length %lld right after the queued appends", static_cast<long long>(len));
    RK_CHECK(queued(attncclKvCacheAttend(cache, static_cast<const char*>(q.data()) + 6 * qW * 4, 1, out1.data(),
                                         nullptr, nullptr)),
             "%s", attncclGetLastError(comm));
    RK_OK(attncclKvCacheDestroy(cache));  // the queued calls keep the state alive
    attncclResult_t state = attncclInProgress;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (state == attncclInProgress && std::chrono::steady_clock::now() < until) {
      RK_OK(attncclCommGetAsyncError(comm, &state));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    RK_CHECK(state == attncclSuccess, "async state %s: %s", attncclGetErrorString(state), attncclGetLastError(comm));
    std::vector<double> want6(ref.out.begin(), ref.out.begin() + 6 * qW),
        want1(ref.out.begin() + 6 * qW, ref.out.end());
    RK_CHECK(relNormError(out6.toDouble(), want6) <= tolerance(c.dtype), "prefill error %g",
             relNormError(out6.toDouble(), want6));
    RK_CHECK(relNormError(out1.toDouble(), want1) <= tolerance(c.dtype), "decode error %g",
             relNormError(out1.toDouble(), want1));
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "") << seedText(seed);
}
