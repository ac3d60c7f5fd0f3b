// Context-parallel attend over a sharded KV cache: the queries go to the cache, the cache never
// moves. With L cached positions and n queries at positions [L-n, L) (replicated on every rank):
//
//   1. partial: rank r attends the n queries to its own visible slots, causal (query p sees
//      j <= p) and windowed (p - j <= windowLeft), with the training tiles, into an fp32
//      partial (O_r, LSE_r); never rounded to the storage dtype.
//        visible slots of r: [ownedBelow(r, lo), ownedBelow(r, L)),
//        lo = max(0, L - n - windowLeft) with a window, else 0
//   2. combine: one round, an all-gather of the partials. Every rank sends its message to every
//      other and receives theirs, all posted at once:
//        message_r = header (L, n, hash, has-data) + [ O_r [n][Hq][D] | LSE_r [Hq][n] ] fp32
//      A rank with no visible slot (a window hides its shard, or it owns nothing below L yet)
//      sends the header alone. Per rank per step: (P-1) messages of
//      32 + n Hq (D + 1) 4 bytes out and as many in.
//   3. merge: every rank merges the P partials in rank order 0, 1, ..., P-1 (the LSE rule of
//      attncclMergeStates), so every rank computes the bit-identical result.
//
//        rank 0: q ─► tiles(shard 0) ─► (O0,L0) ─┐          ┌─► merge 0..P-1 ─► out
//        rank 1: q ─► tiles(shard 1) ─► (O1,L1) ─┼─ all-gather ─► merge 0..P-1 ─► out
//        rank 2: q ─► tiles(shard 2) ─► (O2,L2) ─┘          └─► merge 0..P-1 ─► out
//
// Why an all-gather and not a reduce-scatter by heads + all-gather: it is one round (the
// decode message is a few KB, so latency rules) and its volume, (P-1) n Hq (D+1) 4 bytes in
// per rank, is only above the two-round alternative's 2 (P-1)/P n Hq (D+1) 4 for P > 2 by a
// factor P/2: small against the shard read (L/P tokens of K and V) unless n is thousands.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <new>

#include "attn/kvcache/cache.h"
#include "attn/kvcache/cost.h"
#include "attn/tile.h"
#include "collectives/exchange.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

namespace {

// Below this many keys a split-K piece's tile calls cost more than splitting saves.
constexpr int64_t kMinPieceKeys = 2048;
std::atomic<int64_t> gMinPieceKeysForTest{0};

struct MsgHeader {
  int64_t length;
  int64_t n;
  uint64_t descHash;
  int32_t rank;
  int32_t hasData;
};
static_assert(sizeof(MsgHeader) == kKvHeaderBytes, "the header is the size attn/kvcache/cost.h counts");

// This rank's partial (O, LSE) for the queries at [L-n, L) over its visible slots [s0, s1),
// into o [n][Hq][D] and lse [Hq][n].
//
// Per key/value head h, its g = Hq/Hkv query heads and the n queries are folded into one block
// of n g query rows against one head of keys (row t = i g + j: query i, head h g + j, at position
// L-n+i; positions may repeat, the tiles need them non-decreasing only), so a decode step reads
// each head's keys once for the whole group (one GEMM of g rows) rather than once per query head.
// The keys are cut into pieces for the rank's pool (flash-decoding's split-K: a decode step has
// too few query rows to feed more than one thread otherwise); each piece runs the tile on one
// thread into its own accumulator, and the pieces merge in order.
void partial(KvState& s, const void* q, int64_t n, int64_t s0, int64_t s1, int64_t L, float* o, float* lse) {
  const KvShape& sh = s.shape;
  const int64_t D = sh.headDim, qWidth = static_cast<int64_t>(sh.numHeadsQ) * D;
  clearAccumulator(o, n, sh.numHeadsQ, sh.headDim, qWidth, lse, n);
  if (s1 <= s0) return;
  ThreadPool& pool = *s.comm->pool;
  const int g = sh.group(), hkv = sh.numHeadsKV;
  const int64_t rows = n * g, keys = s1 - s0;
  const size_t esz = s.elemBytes();
  std::vector<int64_t> rpos(static_cast<size_t>(rows)), rdoc(static_cast<size_t>(rows), 0);
  for (int64_t t = 0; t < rows; ++t) rpos[t] = L - n + t / g;
  // The folded query rows of head h at stride D: q itself when they already lie so (one query,
  // or one key/value head), else packed.
  const bool direct = n == 1 || hkv == 1;
  std::vector<char> qPacked;
  if (!direct) {
    qPacked.resize(static_cast<size_t>(hkv * rows * D) * esz);
    for (int h = 0; h < hkv; ++h)
      for (int64_t i = 0; i < n; ++i)
        memcpy(qPacked.data() + static_cast<size_t>((h * rows + i * g) * D) * esz,
               static_cast<const char*>(q) + static_cast<size_t>(i * qWidth + int64_t{h} * g * D) * esz,
               static_cast<size_t>(g * D) * esz);
  }
  const int64_t minPieceKeys = gMinPieceKeysForTest.load() > 0 ? gMinPieceKeysForTest.load() : kMinPieceKeys;
  const int pieces = static_cast<int>(std::clamp<int64_t>(keys / minPieceKeys, 1, pool.size()));
  const size_t accRows = static_cast<size_t>(hkv) * pieces * rows;
  std::vector<float> oP(accRows * D), lP(accRows);
  auto oAt = [&](int h, int pc) { return oP.data() + (static_cast<size_t>(h) * pieces + pc) * rows * D; };
  auto lAt = [&](int h, int pc) { return lP.data() + (static_cast<size_t>(h) * pieces + pc) * rows; };
  pool.run(int64_t{hkv} * pieces, [&](int64_t item, int) {
    const int h = static_cast<int>(item / pieces), pc = static_cast<int>(item % pieces);
    const int64_t a0 = s0 + keys * pc / pieces, a1 = s0 + keys * (pc + 1) / pieces;
    FwdTileArgs a;
    a.dtype = sh.dtype;
    a.headDim = sh.headDim;
    a.scale = sh.scale;
    a.mask.causal = true;
    a.mask.windowLeft = sh.windowLeft;
    a.heads.numQ = 1;
    a.heads.numKV = 1;
    a.heads.group = 1;
    a.q = direct ? static_cast<const char*>(q) + static_cast<size_t>(int64_t{h} * g * D) * esz
                 : qPacked.data() + static_cast<size_t>(int64_t{h} * rows * D) * esz;
    a.ldq = D;
    a.qTok = {rows, rpos.data(), rdoc.data()};
    a.k = s.kAt(h, a0);
    a.v = s.vAt(h, a0);
    a.ldkv = D;
    a.kTok = {a1 - a0, s.pos.data() + a0, s.doc.data() + a0};
    a.o = oAt(h, pc);
    a.ldo = D;
    a.lse = lAt(h, pc);
    a.ldlse = rows;
    clearAccumulator(a.o, rows, 1, sh.headDim, D, a.lse, rows);
    ThreadPool here(1);  // this piece on this thread
    fwdTile(a, here);
  });
  for (int h = 0; h < hkv; ++h) {
    for (int pc = 1; pc < pieces; ++pc)
      mergeAccumulators(oAt(h, 0), lAt(h, 0), oAt(h, pc), lAt(h, pc), rows, 1, sh.headDim, D, rows, pool);
    const float* oh = oAt(h, 0);
    const float* lh = lAt(h, 0);
    for (int64_t i = 0; i < n; ++i)
      for (int j = 0; j < g; ++j) {
        const int64_t t = i * g + j, head = int64_t{h} * g + j;
        memcpy(o + i * qWidth + head * D, oh + t * D, static_cast<size_t>(D) * sizeof(float));
        lse[head * n + i] = lh[t];
      }
  }
}

}  // namespace

void kvSetMinPieceKeysForTest(int64_t keys) { gMinPieceKeysForTest.store(keys); }

attncclResult_t kvAttend(KvState& s, int64_t length, const void* q, int64_t n, void* out, float* lse) {
  attncclComm* comm = s.comm;
  const KvShape& sh = s.shape;
  const int P = comm->nranks, me = comm->rank;
  const int64_t L = length;
  const int64_t qWidth = static_cast<int64_t>(sh.numHeadsQ) * sh.headDim;
  const size_t partialFloats = kvPartialFloats(n, sh.numHeadsQ, sh.headDim);
  const size_t msgBytes = kvMessageBytes(n, sh.numHeadsQ, sh.headDim, true);
  const int64_t lo = sh.windowLeft >= 0 ? std::max<int64_t>(0, L - n - sh.windowLeft) : 0;
  try {
    char* base = nullptr;
    ATTN_CHECK(s.partials.ensure(static_cast<size_t>(P) * msgBytes + partialFloats * sizeof(float), &base));
    auto msg = [&](int r) { return base + static_cast<size_t>(r) * msgBytes; };
    float* acc = reinterpret_cast<float*>(msg(P));

    // 1. this rank's partial, straight into its message
    const int64_t s0 = s.place.ownedBelow(me, lo), s1 = s.place.ownedBelow(me, L);
    MsgHeader mine{L, n, s.descHash, me, s1 > s0 ? 1 : 0};
    memcpy(msg(me), &mine, sizeof mine);
    float* myO = reinterpret_cast<float*>(msg(me) + sizeof(MsgHeader));
    partial(s, q, n, s0, s1, L, myO, myO + n * qWidth);
    // The tiles' fp32 staging of a 16-bit shard (one key/value head's visible slots) is kept on
    // this thread for the next decode step rather than freed and faulted in again every step.

    // 2. one round: every partial to every rank
    if (P > 1) {
      const size_t sendBytes = kvMessageBytes(n, sh.numHeadsQ, sh.headDim, mine.hasData != 0);
      const std::vector<int> peers = peerOrder(me, P);
      Engine& e = comm->engine;
      // Receives first (the slot of each peer, sized for a full partial), then the sends.
      OpArray ops(e, 2 * peers.size());
      for (size_t i = 0; i < peers.size(); ++i)
        ATTN_CHECK(e.irecv(peers[i], kTagKvCache, msg(peers[i]), msgBytes, &ops[i]));
      for (size_t i = 0; i < peers.size(); ++i)
        ATTN_CHECK(e.isend(peers[i], kTagKvCache, msg(me), sendBytes, &ops[peers.size() + i]));
      ATTN_CHECK(e.waitAll(ops));
      for (size_t i = 0; i < peers.size(); ++i) {
        const int p = peers[i];
        MsgHeader h;
        if (ops[i].bytes < sizeof h)
          return fail(attncclInvalidUsage, "attncclKvCacheAttend: rank %d sent %zu bytes, not a cache partial", p,
                      ops[i].bytes);
        memcpy(&h, msg(p), sizeof h);
        if (h.descHash != s.descHash || h.length != L || h.n != n || h.rank != p)
          return fail(attncclInvalidUsage,
                      "attncclKvCacheAttend: rank %d attends n = %lld at length %lld (descriptor hash %016llx), this "
                      "rank %d n = %lld at length %lld (hash %016llx): the ranks' caches or calls differ",
                      p, static_cast<long long>(h.n), static_cast<long long>(h.length),
                      static_cast<unsigned long long>(h.descHash), me, static_cast<long long>(n),
                      static_cast<long long>(L), static_cast<unsigned long long>(s.descHash));
        const size_t want = kvMessageBytes(n, sh.numHeadsQ, sh.headDim, h.hasData != 0);
        if (ops[i].bytes != want)
          return fail(attncclInvalidUsage, "attncclKvCacheAttend: rank %d sent %zu bytes where %zu were expected", p,
                      ops[i].bytes, want);
      }
    }

    // 3. merge in rank order (the same order, hence the same bits, on every rank)
    float* accLse = acc + n * qWidth;
    clearAccumulator(acc, n, sh.numHeadsQ, sh.headDim, qWidth, accLse, n);
    for (int r = 0; r < P; ++r) {
      MsgHeader h;
      memcpy(&h, msg(r), sizeof h);
      if (!h.hasData) continue;
      const float* o = reinterpret_cast<const float*>(msg(r) + sizeof(MsgHeader));
      mergeAccumulators(acc, accLse, o, o + n * qWidth, n, sh.numHeadsQ, sh.headDim, qWidth, n, *comm->pool);
    }
    storeRows(sh.dtype, acc, qWidth, out, qWidth, n, qWidth, *comm->pool);
    if (lse != nullptr) memcpy(lse, accLse, static_cast<size_t>(n) * sh.numHeadsQ * sizeof(float));
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "attncclKvCacheAttend: out of memory (n %lld)", static_cast<long long>(n));
  }
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
