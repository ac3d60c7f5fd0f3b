#include "attn/executor.h"

#include <algorithm>

#include <chrono>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

#include "attn/comm_state.h"
#include "attn/plan.h"
#include "core/dtype.h"
#include "core/log.h"
#include "core/result.h"

namespace attnccl {
namespace attn {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The rank's own data and accumulators, and the arena.
struct Frame {
  const ExecContext& ctx;
  const Problem& p;
  const Schedule& s;
  bool backward;
  int64_t T;       // this rank's tokens
  int Hq, Hkv, D;
  size_t es;       // storage element size
  int64_t ldq, ldkv;
  char* arena = nullptr;
  // Local inputs (storage dtype) and fp32 accumulators.
  const char* q = nullptr;
  const char* k = nullptr;
  const char* v = nullptr;
  const char* dout = nullptr;
  // Strides of the caller's tensors (attn/tensors.h; the arena and accumulators are dense).
  RowStrides qs, ks, vs, dos;
  int64_t ldlse = 0;
  const float* lse = nullptr;  // backward: the caller's final LSE [Hq][ldlse]
  std::vector<float> delta;    // backward: rowsum(dO * O) [Hq][T]
  std::vector<float> oAcc, lAcc;              // forward
  std::vector<float> dqAcc, dkAcc, dvAcc;     // backward
  // The rank's own K and V packed into dense rows (keep->packedK, packedV), once per call, when
  // the caller's are strided views (every message that carries them reads these; the all-gather
  // sends them P-1 times).
  bool kvPacked = false;
  ExecScratch* keep;  // staging, posts and packed rows, kept between calls

  Frame(const ExecContext& c, const Problem& pr, const Schedule& sc, ExecScratch* k)
      : ctx(c), p(pr), s(sc), backward(sc.backward), keep(k) {
    T = p.tokens[c.rank].size();
    Hq = p.heads.numQ;
    Hkv = p.heads.numKV;
    D = p.shape.headDim;
    es = dtypeSize(p.shape.dtype);
    ldq = static_cast<int64_t>(Hq) * D;
    ldkv = static_cast<int64_t>(Hkv) * D;
  }
  // The segments of a slot, from the layout its plan resolved (no allocation).
  SlotSegments slot(const ItemRef& r) const { return slotSegments(r.layout, arena + r.offset); }
};

// Query-side view of an item for a tile: rows [b, e) of origin, pointers to row b.
struct QView {
  int64_t b = 0, e = 0;
  const char* q = nullptr;
  const char* dout = nullptr;
  const float* lse = nullptr;
  const float* delta = nullptr;
  int64_t ldlse = 0;
  int64_t ldq = 0, hsq = 0, lddout = 0, hsdout = 0;  // strides of q and dout
};

QView queryView(const Frame& f, const ItemRef& r) {
  QView v;
  v.b = r.rowBegin;
  v.e = r.rowEnd;
  if (r.local) {
    v.ldq = tokenStride(f.qs, f.Hq, f.D);
    v.hsq = headStride(f.qs, f.D);
    v.q = f.q + v.b * v.ldq * f.es;
    if (f.backward) {
      v.lddout = tokenStride(f.dos, f.Hq, f.D);
      v.hsdout = headStride(f.dos, f.D);
      v.dout = f.dout + v.b * v.lddout * f.es;
      v.lse = f.lse + v.b;
      v.delta = f.delta.data() + v.b;
      v.ldlse = f.ldlse;
    }
    return v;
  }
  v.ldq = v.lddout = f.ldq;
  v.hsq = v.hsdout = f.D;
  const ItemLayout& stored = r.layout;
  const SlotSegments seg = f.slot(r);
  int64_t skip = v.b - stored.rowBegin;
  v.q = seg[0].ptr + skip * f.ldq * f.es;
  if (f.backward) {
    v.dout = seg[1].ptr + skip * f.ldq * f.es;
    v.lse = reinterpret_cast<const float*>(seg[2].ptr) + skip;
    v.delta = reinterpret_cast<const float*>(seg[3].ptr) + skip;
    v.ldlse = stored.rows;
  }
  return v;
}

// Key/value side of an item for a tile: pointers and strides (the caller's, or the arena's dense).
struct KvView {
  const char* k = nullptr;
  const char* v = nullptr;
  RowStrides ks, vs;  // 0 = dense
};

KvView kvView(const Frame& f, const ItemRef& r) {
  if (r.local) return {f.k, f.v, f.ks, f.vs};
  const SlotSegments seg = f.slot(r);
  return {seg[0].ptr, seg[1].ptr, {}, {}};
}

void setKv(const Frame& f, const KvView& kv, const void** k, const void** v, int64_t* ldk, int64_t* ldv,
           int64_t* hsk, int64_t* hsv) {
  *k = kv.k;
  *v = kv.v;
  *ldk = tokenStride(kv.ks, f.Hkv, f.D);
  *ldv = tokenStride(kv.vs, f.Hkv, f.D);
  *hsk = headStride(kv.ks, f.D);
  *hsv = headStride(kv.vs, f.D);
}

// Packs n rows of a strided [n][H][D] view into dense rows at dst (a send reads them).
Segment packRows(const Frame& f, const char* src, RowStrides st, int64_t n, int H, char* dst) {
  const size_t bytes = static_cast<size_t>(n) * H * f.D * f.es;
  copyHeads(f.es, src, tokenStride(st, H, f.D), headStride(st, f.D), dst, static_cast<int64_t>(H) * f.D, f.D, n, H,
            f.D, *f.ctx.pool);
  return {dst, bytes};
}

Tokens tokensOf(const Problem& p, int origin, int64_t b, int64_t e) {
  const RankTokens& t = p.tokens[origin];
  return Tokens{e - b, t.pos.data() + b, t.doc.data() + b};
}

void fillCommon(const Frame& f, TileCommon* c) {
  c->dtype = f.p.shape.dtype;
  c->headDim = f.D;
  c->scale = f.p.shape.scale;
  c->mask = f.p.mask();
  c->heads = f.p.heads;
}

// (o, lse) rows += partial (oB, lseB), numerically stable; lse layouts may differ.
void mergeOut(float* o, float* lse, int64_t ldlse, const float* oB, const float* lseB, int64_t ldlseB, int64_t rows,
              int H, int D) {
  for (int h = 0; h < H; ++h) {
    for (int64_t i = 0; i < rows; ++i) {
      float l2 = lseB[h * ldlseB + i];
      if (l2 == kNegInf) continue;
      float& l1 = lse[h * ldlse + i];
      float* orow = o + (i * H + h) * D;
      const float* brow = oB + (i * H + h) * D;
      if (l1 == kNegInf) {
        memcpy(orow, brow, D * sizeof(float));
        l1 = l2;
        continue;
      }
      float m = std::max(l1, l2);
      float l = m + std::log(std::exp(l1 - m) + std::exp(l2 - m));
      float w1 = std::exp(l1 - l), w2 = std::exp(l2 - l);
      for (int d = 0; d < D; ++d) orow[d] = orow[d] * w1 + brow[d] * w2;
      l1 = l;
    }
  }
}

void addInto(float* dst, const float* src, size_t n, bool copy) {
  if (copy) {
    memcpy(dst, src, n * sizeof(float));
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] += src[i];
  }
}

size_t floatsOf(size_t bytes) { return (bytes + sizeof(float) - 1) / sizeof(float); }

// Segments a send reads from.
SlotSegments sendSegments(Frame& f, const PlannedTransfer& t) {
  if (!t.ref.local) return f.slot(t.ref);
  const ItemLayout& l = t.ref.layout;  // a local reference stores the item itself
  StagingPool& staging = f.keep->staging;
  SlotSegments seg;
  // The caller's rows go out in place when they are dense; a strided view (a slice of a packed
  // QKV buffer) is packed first: the message is dense rows. That copy is of the rows sent, once per
  // send of the rank's own item (received items are forwarded from the arena, already dense).
  auto rowsOf = [&](const char* base, RowStrides st, int H, int64_t row0, int64_t n, size_t bytes) -> Segment {
    if (isDense(st, H, f.D)) return {const_cast<char*>(base) + row0 * H * f.D * f.es, bytes};
    return packRows(f, base + row0 * tokenStride(st, H, f.D) * f.es, st, n, H,
                    reinterpret_cast<char*>(staging.take(floatsOf(bytes))));
  };
  if (t.item.kind == ItemKind::kKV) {
    if (isDense(f.ks, f.Hkv, f.D) && isDense(f.vs, f.Hkv, f.D)) {
      seg.push_back(rowsOf(f.k, f.ks, f.Hkv, 0, f.T, l.segBytes[0]));
      seg.push_back(rowsOf(f.v, f.vs, f.Hkv, 0, f.T, l.segBytes[1]));
      return seg;
    }
    std::vector<float>& pk = f.keep->packedK;
    std::vector<float>& pv = f.keep->packedV;
    if (!f.kvPacked) {
      const size_t n = floatsOf(static_cast<size_t>(f.T) * f.Hkv * f.D * f.es);
      pk.resize(n);
      pv.resize(n);
      packRows(f, f.k, f.ks, f.T, f.Hkv, reinterpret_cast<char*>(pk.data()));
      packRows(f, f.v, f.vs, f.T, f.Hkv, reinterpret_cast<char*>(pv.data()));
      f.kvPacked = true;
    }
    seg.push_back({reinterpret_cast<char*>(pk.data()), l.segBytes[0]});
    seg.push_back({reinterpret_cast<char*>(pv.data()), l.segBytes[1]});
    return seg;
  }
  // Local queries: rows of the caller's tensors; backward packs LSE and Delta rows [Hq][rows].
  seg.push_back(rowsOf(f.q, f.qs, f.Hq, l.rowBegin, l.rows, l.segBytes[0]));
  if (f.backward) {
    seg.push_back(rowsOf(f.dout, f.dos, f.Hq, l.rowBegin, l.rows, l.segBytes[1]));
    for (int which = 0; which < 2; ++which) {
      const float* src = which == 0 ? f.lse : f.delta.data();
      const int64_t ld = which == 0 ? f.ldlse : f.T;
      float* dst = staging.take(static_cast<size_t>(f.Hq) * l.rows);
      for (int h = 0; h < f.Hq; ++h) memcpy(dst + h * l.rows, src + h * ld + l.rowBegin, l.rows * sizeof(float));
      seg.push_back({reinterpret_cast<char*>(dst), static_cast<size_t>(f.Hq) * l.rows * sizeof(float)});
    }
  }
  return seg;
}

void runTask(Frame& f, const PlannedTask& task, const std::function<void()>& between) {
  QView qv = queryView(f, task.q);
  if (qv.e <= qv.b) return;
  const KvView kv = kvView(f, task.kv);
  const int kvOrigin = task.kv.item.origin;
  const int64_t rows = qv.e - qv.b;
  Tokens qTok = tokensOf(f.p, task.q.item.origin, qv.b, qv.e);
  Tokens kTok = tokensOf(f.p, kvOrigin, 0, f.p.tokens[kvOrigin].size());
  if (!f.backward) {
    FwdTileArgs a;
    fillCommon(f, &a);
    a.q = qv.q;
    a.ldq = qv.ldq;
    a.hsq = qv.hsq;
    a.qTok = qTok;
    setKv(f, kv, &a.k, &a.v, &a.ldkv, &a.ldv, &a.hsk, &a.hsv);
    a.kTok = kTok;
    a.ldo = f.ldq;
    if (task.out.local) {
      a.o = f.oAcc.data() + qv.b * f.ldq;
      a.lse = f.lAcc.data() + qv.b;
      a.ldlse = f.T;
    } else {
      const SlotSegments seg = f.slot(task.out);
      a.o = reinterpret_cast<float*>(seg[0].ptr);
      a.lse = reinterpret_cast<float*>(seg[1].ptr);
      a.ldlse = rows;
      if (task.out.init) clearAccumulator(a.o, rows, f.Hq, f.D, f.ldq, a.lse, rows);
    }
    fwdTile(a, *f.ctx.pool, between);
    return;
  }
  BwdTileArgs a;
  fillCommon(f, &a);
  a.q = qv.q;
  a.dout = qv.dout;
  a.ldq = qv.ldq;
  a.hsq = qv.hsq;
  a.lddout = qv.lddout;
  a.hsdout = qv.hsdout;
  a.qTok = qTok;
  setKv(f, kv, &a.k, &a.v, &a.ldkv, &a.ldv, &a.hsk, &a.hsv);
  a.kTok = kTok;
  a.lse = qv.lse;
  a.delta = qv.delta;
  a.ldlse = qv.ldlse;
  a.lddq = f.ldq;
  a.lddkv = f.ldkv;
  if (task.out.local) {
    a.dq = f.dqAcc.data() + qv.b * f.ldq;
  } else {
    a.dq = reinterpret_cast<float*>(f.slot(task.out)[0].ptr);
    if (task.out.init) memset(a.dq, 0, rows * f.ldq * sizeof(float));
  }
  if (task.dkv.local) {
    a.dk = f.dkAcc.data();
    a.dv = f.dvAcc.data();
  } else {
    const SlotSegments seg = f.slot(task.dkv);
    a.dk = reinterpret_cast<float*>(seg[0].ptr);
    a.dv = reinterpret_cast<float*>(seg[1].ptr);
    if (task.dkv.init) {
      memset(a.dk, 0, seg[0].bytes);
      memset(a.dv, 0, seg[1].bytes);
    }
  }
  bwdTile(a, *f.ctx.pool, between);
}

void runMerge(Frame& f, const PlannedMerge& m) {
  const SlotSegments from = f.slot(m.from);
  const ItemLayout& l = m.from.layout;  // a received slot stores the item itself
  const int64_t rows = l.rows;
  if (m.from.item.kind == ItemKind::kOut) {
    const float* oB = reinterpret_cast<const float*>(from[0].ptr);
    const float* lB = reinterpret_cast<const float*>(from[1].ptr);
    if (m.into.local) {
      mergeOut(f.oAcc.data() + l.rowBegin * f.ldq, f.lAcc.data() + l.rowBegin, f.T, oB, lB, rows, rows, f.Hq, f.D);
    } else {
      const SlotSegments into = f.slot(m.into);
      float* o = reinterpret_cast<float*>(into[0].ptr);
      float* lse = reinterpret_cast<float*>(into[1].ptr);
      if (m.into.init) clearAccumulator(o, rows, f.Hq, f.D, f.ldq, lse, rows);
      mergeOut(o, lse, rows, oB, lB, rows, rows, f.Hq, f.D);
    }
    return;
  }
  if (m.from.item.kind == ItemKind::kDQ) {
    const float* src = reinterpret_cast<const float*>(from[0].ptr);
    float* dst = m.into.local ? f.dqAcc.data() + l.rowBegin * f.ldq : reinterpret_cast<float*>(f.slot(m.into)[0].ptr);
    addInto(dst, src, static_cast<size_t>(rows * f.ldq), m.into.init);
    return;
  }
  // DKV
  float *dk, *dv;
  if (m.into.local) {
    dk = f.dkAcc.data();
    dv = f.dvAcc.data();
  } else {
    const SlotSegments into = f.slot(m.into);
    dk = reinterpret_cast<float*>(into[0].ptr);
    dv = reinterpret_cast<float*>(into[1].ptr);
  }
  size_t n = static_cast<size_t>(rows * f.ldkv);
  addInto(dk, reinterpret_cast<const float*>(from[0].ptr), n, m.into.init);
  addInto(dv, reinterpret_cast<const float*>(from[1].ptr), n, m.into.init);
}

attncclResult_t runRounds(Frame& f, const Plan& plan) {
  Engine& e = *f.ctx.engine;
  ATTN_CHECK(f.ctx.arena->ensure(plan.arenaBytes, &f.arena));
  std::function<void()> between = [&e] { (void)e.progress(); };
  const bool trace = logEnabled(kLogTrace, kSubAttn);  // the round clocks only when traced
  std::vector<RoundPost>& posts = f.keep->posts;
  for (size_t k = 0; k < plan.rounds.size(); ++k) {
    const PlannedRound& round = plan.rounds[k];
    f.keep->staging.reset();  // the previous round's sends completed in its wait
    posts.clear();
    size_t nOps = 0;
    for (const PlannedTransfer& t : round.transfers) {
      posts.push_back({&t, t.send ? sendSegments(f, t) : f.slot(t.ref)});
      nOps += posts.back().seg.size();
    }
    OpArray ops(e, nOps);
    size_t op = 0;
    for (bool sends : {false, true}) {  // receives first, so eager messages land in place
      for (const RoundPost& pt : posts) {
        if (pt.t->send != sends) continue;
        uint32_t tag = itemTag(pt.t->item);
        for (const Segment& sg : pt.seg) {
          if (sends) {
            ATTN_CHECK(e.isend(pt.t->peer, tag, sg.ptr, sg.bytes, &ops[op++]));
          } else {
            ATTN_CHECK(e.irecv(pt.t->peer, tag, sg.ptr, sg.bytes, &ops[op++]));
          }
        }
      }
    }
    std::chrono::steady_clock::time_point t0, t1, t2;
    if (trace) t0 = std::chrono::steady_clock::now();
    for (const PlannedTask& task : round.tasks) runTask(f, task, between);
    if (trace) t1 = std::chrono::steady_clock::now();
    ATTN_CHECK(e.waitAll(ops));
    if (trace) t2 = std::chrono::steady_clock::now();
    for (const PlannedMerge& m : round.merges) runMerge(f, m);
    ATTN_TRACE(kSubAttn, "%s %s round %zu: %zu tiles %.3f ms, wait %.3f ms, %zu transfers, %zu merges", f.s.algorithm,
               f.backward ? "bwd" : "fwd", k, round.tasks.size(), std::chrono::duration<double, std::milli>(t1 - t0).count(),
               std::chrono::duration<double, std::milli>(t2 - t1).count(), round.transfers.size(), round.merges.size());
  }
  return attncclSuccess;
}

// fp32 accumulator rows -> the caller's (possibly strided) [T][H][D] tensor.
void storeOut(const Frame& f, const float* acc, int64_t ldacc, void* dst, RowStrides st, int H) {
  if (isDense(st, H, f.D)) {
    storeRows(f.p.shape.dtype, acc, ldacc, dst, ldacc, f.T, ldacc, *f.ctx.pool);
  } else {
    storeHeads(f.p.shape.dtype, acc, ldacc, dst, tokenStride(st, H, f.D), headStride(st, f.D), f.T, H, f.D,
               *f.ctx.pool);
  }
}

// Lends kept storage to a frame's accumulators for one call and takes it back on every path
// (the frame's vectors start empty; assign() then fills them as it would fresh ones).
class Lent {
 public:
  using Pair = std::pair<std::vector<float>*, std::vector<float>*>;  // (frame's, kept)
  Lent(std::initializer_list<Pair> pairs) {
    for (const Pair& pr : pairs) pairs_[n_++] = pr;  // at most 4
    for (int i = 0; i < n_; ++i) pairs_[i].first->swap(*pairs_[i].second);
  }
  ~Lent() {
    for (int i = 0; i < n_; ++i) pairs_[i].first->swap(*pairs_[i].second);
  }
  Lent(const Lent&) = delete;
  Lent& operator=(const Lent&) = delete;

 private:
  Pair pairs_[4];
  int n_ = 0;
};

}  // namespace

float* StagingPool::take(size_t floats) {
  if (used_ == bufs_.size()) bufs_.emplace_back();
  std::vector<float>& b = bufs_[used_++];
  b.resize(floats);
  return b.data();
}

size_t StagingPool::bytes() const {
  size_t n = 0;
  for (const std::vector<float>& b : bufs_) n += b.capacity() * sizeof(float) + sizeof(b);
  return n;
}

size_t ExecScratch::bytes() const {
  return (o.capacity() + lse.capacity() + dq.capacity() + dk.capacity() + dv.capacity() + delta.capacity() +
          packedK.capacity() + packedV.capacity() + lseDense.capacity()) *
             sizeof(float) +
         staging.bytes() + posts.capacity() * sizeof(RoundPost);
}

attncclResult_t executeForward(const ExecContext& ctx, const Problem& p, const Schedule& s, const FwdTensors& t) {
  ExecScratch scratch;
  return executeForward(ctx, p, s, compilePlan(p, s, ctx.rank), t, &scratch);
}

attncclResult_t executeBackward(const ExecContext& ctx, const Problem& p, const Schedule& s, const BwdTensors& t) {
  ExecScratch scratch;
  return executeBackward(ctx, p, s, compilePlan(p, s, ctx.rank), t, &scratch);
}

attncclResult_t executeForward(const ExecContext& ctx, const Problem& p, const Schedule& s, const Plan& plan,
                               const FwdTensors& t, ExecScratch* keep) {
  Frame f(ctx, p, s, keep);
  Lent lent{{&f.oAcc, &keep->o}, {&f.lAcc, &keep->lse}};
  f.q = static_cast<const char*>(t.q);
  f.k = static_cast<const char*>(t.k);
  f.v = static_cast<const char*>(t.v);
  f.qs = t.qs;
  f.ks = t.ks;
  f.vs = t.vs;
  f.oAcc.assign(static_cast<size_t>(f.T * f.ldq), 0.f);
  f.lAcc.assign(static_cast<size_t>(f.T) * f.Hq, kNegInf);
  attncclResult_t r = runRounds(f, plan);
  releaseTileScratch();  // the tiles keep staged inputs between calls of one collective
  ATTN_CHECK(r);
  // Sinks join in fp32 before the one rounding to the storage dtype (global head qFirst + h).
  if (t.sinks) mergeSinks(f.oAcc.data(), f.lAcc.data(), f.T, f.Hq, f.D, f.ldq, f.T, t.sinks + p.heads.qFirst);
  storeOut(f, f.oAcc.data(), f.ldq, t.out, t.os, f.Hq);
  if (t.lse) {
    const int64_t ld = t.ldlse ? t.ldlse : f.T;
    for (int h = 0; h < f.Hq; ++h) memcpy(t.lse + h * ld, f.lAcc.data() + h * f.T, f.T * sizeof(float));
  }
  return attncclSuccess;
}

attncclResult_t executeBackward(const ExecContext& ctx, const Problem& p, const Schedule& s, const Plan& plan,
                                const BwdTensors& t, ExecScratch* keep) {
  Frame f(ctx, p, s, keep);
  Lent lent{{&f.delta, &keep->delta}, {&f.dqAcc, &keep->dq}, {&f.dkAcc, &keep->dk}, {&f.dvAcc, &keep->dv}};
  f.q = static_cast<const char*>(t.q);
  f.k = static_cast<const char*>(t.k);
  f.v = static_cast<const char*>(t.v);
  f.dout = static_cast<const char*>(t.dout);
  f.qs = t.qs;
  f.ks = t.ks;
  f.vs = t.vs;
  f.dos = t.dos;
  // The tiles read LSE and Delta with one row stride: an LSE with padded rows ([Hq][ld], ld > T)
  // is copied dense first (T x Hq floats, 1/D of Q).
  std::vector<float>& lseDense = keep->lseDense;
  f.lse = t.lse;
  if (t.ldlse != 0 && t.ldlse != f.T) {
    lseDense.resize(static_cast<size_t>(f.T) * f.Hq);
    for (int h = 0; h < f.Hq; ++h) memcpy(lseDense.data() + h * f.T, t.lse + h * t.ldlse, f.T * sizeof(float));
    f.lse = lseDense.data();
  }
  f.ldlse = f.T;
  f.delta.assign(static_cast<size_t>(f.T) * f.Hq, 0.f);
  if (t.delta) {
    std::copy(t.delta, t.delta + f.delta.size(), f.delta.begin());
  } else {
    computeDelta(p.shape.dtype, t.out, tokenStride(t.os, f.Hq, f.D), headStride(t.os, f.D), t.dout,
                 tokenStride(t.dos, f.Hq, f.D), headStride(t.dos, f.D), f.T, f.Hq, f.D, f.delta.data(), f.T,
                 *ctx.pool);
  }
  f.dqAcc.assign(static_cast<size_t>(f.T * f.ldq), 0.f);
  f.dkAcc.assign(static_cast<size_t>(f.T * f.ldkv), 0.f);
  f.dvAcc.assign(static_cast<size_t>(f.T * f.ldkv), 0.f);
  attncclResult_t r = runRounds(f, plan);
  releaseTileScratch();
  ATTN_CHECK(r);
  storeOut(f, f.dqAcc.data(), f.ldq, t.dq, t.dqs, f.Hq);
  storeOut(f, f.dkAcc.data(), f.ldkv, t.dk, t.dks, f.Hkv);
  storeOut(f, f.dvAcc.data(), f.ldkv, t.dv, t.dvs, f.Hkv);
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
