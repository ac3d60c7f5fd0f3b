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
// For a large partial (a prefill chunk; attn/kvcache/cost.h, kvCombineByHeads) the combine is
// instead a reduce-scatter by query heads then an all-gather of the merged heads (combineByHeads
// below): two rounds, about 2 (P-1)/P of a partial out per rank instead of (P-1), and each rank
// merges only its heads. A decode step's partial is a few KB: one round, where latency rules.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <new>

#include "attn/kvcache/cache.h"
#include "attn/kvcache/cost.h"
#include "attn/layout.h"
#include "attn/tile.h"
#include "collectives/exchange.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

namespace {

// Below this many keys a split-K piece's tile calls cost more than splitting saves.
constexpr int64_t kMinPieceKeys = 2048;
std::atomic<int64_t> gMinPieceKeysForTest{0};
std::atomic<int> gCombineForTest{0};  // 0 = by the sizes, 1 = all-gather, 2 = by heads

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
void kvSetCombineForTest(int mode) { gCombineForTest.store(mode); }

namespace {

// One round: a message to every peer and one from every peer, all posted at once (receives
// first), then every received header checked against this rank's call. send(p) / recv(p) give
// the buffer and size for peer p (a receive's size is the most it may hold); expect(p, hasData)
// the size its message must have.
template <typename SendOf, typename RecvOf, typename Expect>
attncclResult_t round(KvState& s, uint32_t tag, int64_t L, int64_t n, SendOf send, RecvOf recv, Expect expect) {
  attncclComm* comm = s.comm;
  const int me = comm->rank;
  const std::vector<int> peers = peerOrder(me, comm->nranks);
  Engine& e = comm->engine;
  OpArray ops(e, 2 * peers.size());
  for (size_t i = 0; i < peers.size(); ++i) {
    auto [buf, bytes] = recv(peers[i]);
    ATTN_CHECK(e.irecv(peers[i], tag, buf, bytes, &ops[i]));
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    auto [buf, bytes] = send(peers[i]);
    ATTN_CHECK(e.isend(peers[i], tag, buf, bytes, &ops[peers.size() + i]));
  }
  ATTN_CHECK(e.waitAll(ops));
  for (size_t i = 0; i < peers.size(); ++i) {
    const int p = peers[i];
    MsgHeader h;
    if (ops[i].bytes < sizeof h)
      return fail(attncclInvalidUsage, "attncclKvCacheAttend: rank %d sent %zu bytes, not a cache partial", p,
                  ops[i].bytes);
    memcpy(&h, recv(p).first, sizeof h);
    if (h.descHash != s.descHash || h.length != L || h.n != n || h.rank != p)
      return fail(attncclInvalidUsage,
                  "attncclKvCacheAttend: rank %d attends n = %lld at length %lld (descriptor hash %016llx), this "
                  "rank %d n = %lld at length %lld (hash %016llx): the ranks' caches or calls differ",
                  p, static_cast<long long>(h.n), static_cast<long long>(h.length),
                  static_cast<unsigned long long>(h.descHash), me, static_cast<long long>(n), static_cast<long long>(L),
                  static_cast<unsigned long long>(s.descHash));
    const size_t want = expect(p, h.hasData != 0);
    if (ops[i].bytes != want)
      return fail(attncclInvalidUsage, "attncclKvCacheAttend: rank %d sent %zu bytes where %zu were expected", p,
                  ops[i].bytes, want);
  }
  return attncclSuccess;
}

bool hasData(const char* msg) {
  MsgHeader h;
  memcpy(&h, msg, sizeof h);
  return h.hasData != 0;
}

const float* payload(const char* msg) { return reinterpret_cast<const float*>(msg + sizeof(MsgHeader)); }

// Reduce-scatter by heads, then all-gather (two rounds; attn/kvcache/cost.h says when): rank r
// owns the query heads [hb(r), he(r)) (as even as possible). Round 1: every rank sends rank r
// the rows of r's heads from its partial; r merges the P pieces of its heads in rank order.
// Round 2: every rank sends its merged heads to every other. Each head is merged by one rank, in
// rank order, and every rank receives those very bits.
//
//   piece of rank r: header + O [n][he-hb][D] + LSE [he-hb][n], fp32
//   per rank: (P-1) pieces of others' heads out, then (P-1) copies of its own merged piece
attncclResult_t combineByHeads(KvState& s, int64_t L, int64_t n, const char* mine, void* out, float* lse) {
  attncclComm* comm = s.comm;
  const KvShape& sh = s.shape;
  const int P = comm->nranks, me = comm->rank, Hq = sh.numHeadsQ;
  const int64_t D = sh.headDim, qWidth = int64_t{Hq} * D;
  std::vector<int64_t> hb(static_cast<size_t>(P)), cnt(static_cast<size_t>(P));
  std::vector<size_t> pieceBytes(static_cast<size_t>(P)), packOff(static_cast<size_t>(P)),
      finOff(static_cast<size_t>(P));
  size_t total = 0;
  for (int r = 0; r < P; ++r) {
    int64_t b, e;
    evenPiece(Hq, P, r, &b, &e);
    hb[r] = b;
    cnt[r] = e - b;
    pieceBytes[r] = kvMessageBytes(n, static_cast<int>(cnt[r]), sh.headDim, true);
    packOff[r] = total;
    total += pieceBytes[r];
  }
  const size_t recvOff = total;  // P slots of this rank's piece size
  total += static_cast<size_t>(P) * pieceBytes[me];
  for (int r = 0; r < P; ++r) {
    finOff[r] = total;
    total += pieceBytes[r];
  }
  char* base = nullptr;
  ATTN_CHECK(s.headSplit.ensure(total, &base));
  auto pack = [&](int r) { return base + packOff[r]; };
  auto got = [&](int p) { return p == me ? pack(me) : base + recvOff + static_cast<size_t>(p) * pieceBytes[me]; };
  auto fin = [&](int r) { return base + finOff[r]; };
  MsgHeader h;
  memcpy(&h, mine, sizeof h);
  const bool myData = h.hasData != 0;
  const float* myO = payload(mine);
  const float* myL = myO + n * qWidth;
  // My partial, cut into the P pieces (rows of each rank's heads).
  for (int r = 0; r < P; ++r) {
    memcpy(pack(r), &h, sizeof h);
    if (!myData) continue;
    float* o = reinterpret_cast<float*>(pack(r) + sizeof(MsgHeader));
    const size_t row = static_cast<size_t>(cnt[r] * D);
    for (int64_t i = 0; i < n; ++i) memcpy(o + i * row, myO + i * qWidth + hb[r] * D, row * sizeof(float));
    memcpy(o + n * row, myL + hb[r] * n, static_cast<size_t>(cnt[r] * n) * sizeof(float));
  }
  auto pieceOf = [&](int r, bool data) { return kvMessageBytes(n, static_cast<int>(cnt[r]), sh.headDim, data); };
  ATTN_CHECK(round(
      s, kTagKvCache, L, n,
      [&](int p) { return std::make_pair(static_cast<const char*>(pack(p)), pieceOf(p, myData)); },
      [&](int p) { return std::make_pair(got(p), pieceBytes[me]); },
      [&](int, bool data) { return pieceOf(me, data); }));
  // Merge my heads' P pieces in rank order.
  const int64_t myRow = cnt[me] * D;
  MsgHeader fh{L, n, s.descHash, me, 1};
  memcpy(fin(me), &fh, sizeof fh);
  float* acc = reinterpret_cast<float*>(fin(me) + sizeof(MsgHeader));
  float* accL = acc + n * myRow;
  if (cnt[me] > 0) {
    clearAccumulator(acc, n, static_cast<int>(cnt[me]), sh.headDim, myRow, accL, n);
    for (int p = 0; p < P; ++p) {
      if (!hasData(got(p))) continue;
      const float* o = payload(got(p));
      mergeAccumulators(acc, accL, o, o + n * myRow, n, static_cast<int>(cnt[me]), sh.headDim, myRow, n, *comm->pool);
    }
  }
  ATTN_CHECK(round(
      s, kTagKvCache + 1, L, n, [&](int) { return std::make_pair(static_cast<const char*>(fin(me)), pieceBytes[me]); },
      [&](int p) { return std::make_pair(fin(p), pieceBytes[p]); }, [&](int p, bool) { return pieceBytes[p]; }));
  // Every rank's merged heads into out [n][Hq][D] and lse [Hq][n].
  const size_t esz = s.elemBytes();
  for (int r = 0; r < P; ++r) {
    if (cnt[r] == 0) continue;
    const float* o = payload(fin(r));
    storeRows(sh.dtype, o, cnt[r] * D, static_cast<char*>(out) + static_cast<size_t>(hb[r] * D) * esz, qWidth, n,
              cnt[r] * D, *comm->pool);
    if (lse != nullptr) memcpy(lse + hb[r] * n, o + n * cnt[r] * D, static_cast<size_t>(cnt[r] * n) * sizeof(float));
  }
  return attncclSuccess;
}

}  // namespace

attncclResult_t kvAttend(KvState& s, int64_t length, const void* q, int64_t n, void* out, float* lse) {
  attncclComm* comm = s.comm;
  const KvShape& sh = s.shape;
  const int P = comm->nranks, me = comm->rank;
  const int64_t L = length;
  const int64_t qWidth = static_cast<int64_t>(sh.numHeadsQ) * sh.headDim;
  const size_t partialFloats = kvPartialFloats(n, sh.numHeadsQ, sh.headDim);
  const size_t msgBytes = kvMessageBytes(n, sh.numHeadsQ, sh.headDim, true);
  const int64_t lo = sh.windowLeft >= 0 ? std::max<int64_t>(0, L - n - sh.windowLeft) : 0;
  const int forced = gCombineForTest.load();
  const bool byHeads = P > 1 && (forced == 2 || (forced == 0 && kvCombineByHeads(P, n, sh.numHeadsQ, sh.headDim)));
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
    if (byHeads) return combineByHeads(s, L, n, msg(me), out, lse);

    // 2. one round: every partial to every rank
    if (P > 1) {
      ATTN_CHECK(round(
          s, kTagKvCache, L, n,
          [&](int) {
            return std::make_pair(static_cast<const char*>(msg(me)),
                                  kvMessageBytes(n, sh.numHeadsQ, sh.headDim, mine.hasData != 0));
          },
          [&](int p) { return std::make_pair(msg(p), msgBytes); },
          [&](int, bool data) { return kvMessageBytes(n, sh.numHeadsQ, sh.headDim, data); }));
    }

    // 3. merge in rank order (the same order, hence the same bits, on every rank)
    float* accLse = acc + n * qWidth;
    clearAccumulator(acc, n, sh.numHeadsQ, sh.headDim, qWidth, accLse, n);
    for (int r = 0; r < P; ++r) {
      if (!hasData(msg(r))) continue;
      const float* o = payload(msg(r));
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
