// Hybrid attention (two levels, as USP's 2D sequence parallelism): head all-to-all inside groups
// of G ranks, ring pass-KV across the P/G groups.
//
//   P = 4, G = 2          group 0 = ranks {0, 1}, group 1 = {2, 3}   (group g, member i = r - gG)
//                         ring i = ranks with member index i: {0, 2} and {1, 3}
//   Groups lie inside nodes (attn/tune/tuner.h hybridLayout): with ranks numbered across two
//   nodes alternately, node A = {0, 2}, node B = {1, 3}, the groups are {0, 2} and {1, 3} and
//   the rings {0, 1} and {2, 3}; member i of a group is its i-th smallest rank.
//   1. seq->head in the group: member i gets its group's tokens (the union of its members'
//      tokens, in position order) for the Q heads HeadRange(Hq, G, i) and the K/V heads they use
//      (attn/algos/head_split.h);
//   2. ring across groups over ring i: a Problem whose "ranks" are the groups (tokens = group
//      unions) and whose heads are member i's, run by the schedule executor (ringSchedule);
//      every rank of ring i holds the same heads, so the ring moves K/V of exactly those heads;
//   3. head->seq in the group (O, LSE; backward dQ, and dK/dV summed where a K/V head is shared
//      by several members of a group).
// A member with no heads (Hq < G) takes part in the exchanges with empty ranges and skips the
// ring, as does every rank of its ring. G = P is Ulysses, G = 1 the ring; both are run directly.
//
// The two levels run on group views (attn/group_view.h): engines over this communicator's
// ranks of the group, or of the ring, that move their messages through its transports; they
// are made on the first call for a group size, without any message, and kept in AttnCommState;
// their traffic is added to this communicator's counters after each call (TrafficFold). The
// group and ring peers of a rank are disjoint (only the rank itself is in both), so the two
// levels never share a (peer, tag) stream.
//
// Volume per rank: the group level is Ulysses' exchange (ulysses.cc) over the group's members
// (backward moves Delta = rowsum(dO * O), computed on the sequence side, not O; a shared K/V
// head's dK/dV comes home in fp32); the ring level is the ring's (ring.cc)
// for the group problem with this member's K/V heads (2 k_i D es per token of a block per hop;
// backward adds the fp32 dK/dV blocks going home).
#include "attn/algos/hybrid.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "attn/algos/algos.h"
#include "attn/algos/head_split.h"
#include "attn/algos/ulysses.h"
#include "attn/comm_state.h"
#include "attn/dispatch.h"
#include "attn/plan_cache.h"
#include "attn/group_view.h"
#include "attn/layout.h"
#include "attn/tile.h"
#include "attn/tune/tuner.h"
#include "core/dtype.h"
#include "core/log.h"
#include "core/result.h"

namespace attnccl {
namespace attn {
namespace {

// The group and ring views for group size G, made on the first call for that size (nothing is
// sent or connected: attn/group_view.h) and kept in the attention state.
attncclResult_t views(attncclComm* comm, const HybridLayout& L, GroupView** group, GroupView** ring) {
  AttnCommState& st = attnState(comm);
  const int G = L.G;  // a communicator has one layout per G (tuner.h: a pure function of its nodes)
  auto it = st.hybridViews.find(G);  // only this call's thread inserts, so finding needs no lock
  if (it == st.hybridViews.end()) {
    const int g = L.groupOf[comm->rank], i = L.indexOf[comm->rank];
    std::vector<int> inGroup = L.groups[g], inRing;
    for (const std::vector<int>& other : L.groups) inRing.push_back(other[i]);
    // Both are checked before either is made: destroying a view cancels what is pending on this
    // communicator's transports (~GroupView), which must not happen in the middle of its call.
    HybridViews v;
    attncclResult_t r = GroupView::check(comm, inGroup);
    if (r == attncclSuccess) r = GroupView::check(comm, inRing);
    if (r == attncclSuccess) r = GroupView::create(comm, inGroup, &v.group);
    if (r == attncclSuccess) r = GroupView::create(comm, inRing, &v.ring);
    if (r != attncclSuccess) {
      prefixLastError("hybrid: creating the group views");
      return r;
    }
    std::lock_guard<std::mutex> lock(st.hybridMutex);
    it = st.hybridViews.emplace(G, std::move(v)).first;
  }
  *group = it->second.group.get();
  *ring = it->second.ring.get();
  return attncclSuccess;
}

// What a hybrid entry of the plan cache keeps besides the ring level's problem (the groups as
// ranks, this member's heads), schedule, plan and scratch (attn/plan_cache.h): this rank's
// place, its group's members and their tokens, its head ranges, and the arena layout of a call
// (the head exchanges' staging sized once).
struct HybridPlan final : CachedExtra {
  int g = 0, i = 0;
  HeadGroup members;
  HeadRange q, kv;
  bool sized = false;  // the call's arena layout below is known (set by the first call)
  size_t arenaTotal = 0, staging = 0;
  size_t bytes() const override {
    size_t b = sizeof(*this) + (members.pos.capacity() + members.doc.capacity()) * sizeof(int64_t);
    for (const auto& r : members.rows) b += sizeof(r) + r.capacity() * sizeof(int64_t);
    return b;
  }
};

// This rank's view of the two levels.
struct Levels {
  GroupView* group = nullptr;
  GroupView* ring = nullptr;
  CachedPlan* entry = nullptr;  // the ring level's problem (entry->problem), schedule and plan
  HybridPlan* h = nullptr;      // entry->extra
  const Problem& across() const { return entry->problem; }
};

// The communicator's layout, computed on its first hybrid call (a pure function of it).
const HybridLayout& layoutOf(attncclComm* comm) {
  std::unique_ptr<HybridLayout>& kept = attnState(comm).hybridLayoutKept;
  if (!kept) kept.reset(new HybridLayout(hybridLayout(comm)));
  return *kept;
}

// Builds the entry of a shape: O(P S) positions and unions, the ring's schedule and plan.
std::unique_ptr<CachedPlan> buildEntry(attncclComm* comm, const HybridLayout& L, const AttnShape& s, bool backward) {
  std::unique_ptr<CachedPlan> e(new CachedPlan());
  std::unique_ptr<HybridPlan> h(new HybridPlan());
  const int P = comm->nranks, G = L.G, groups = static_cast<int>(L.groups.size());
  h->g = L.groupOf[comm->rank];
  h->i = L.indexOf[comm->rank];
  std::vector<std::vector<int64_t>> pos(P);
  for (int r = 0; r < P; ++r) pos[r] = localPositions(s, P, r);
  Problem& p = e->problem;
  p.shape = s;
  p.nranks = groups;
  p.tokens.resize(groups);
  for (int k = 0; k < groups; ++k) {
    std::vector<std::vector<int64_t>> in;
    for (int member : L.groups[k]) in.push_back(pos[member]);
    HeadGroup u = unionGroup(s, in, 0);
    p.tokens[k].pos = std::move(u.pos);
    p.tokens[k].doc = std::move(u.doc);
    if (k == h->g) h->members = unionGroup(s, in, h->i);
  }
  HeadSplit split(s.numHeadsQ, s.numHeadsKV, G, 1);
  p.heads = split.map(h->i);
  h->q = split.q(h->i);
  h->kv = split.kv(h->i);
  // A member without heads skips the ring (as does every rank of its ring): no schedule.
  if (h->q.count > 0) {
    e->schedule = ringSchedule(p, backward);
    e->plan = compilePlan(p, e->schedule, h->g);  // ring view rank = group index
  }
  e->extra = std::move(h);
  return e;
}

attncclResult_t setUp(attncclComm* comm, const HybridLayout& L, const AttnShape& s, bool backward, Levels* lv) {
  ATTN_CHECK(views(comm, L, &lv->group, &lv->ring));
  const int g = L.groupOf[comm->rank], i = L.indexOf[comm->rank];
  if (lv->group->rank() != i || lv->ring->rank() != g) {
    return fail(attncclInternalError, "hybrid: rank %d is %d of its group view and %d of its ring view (want %d, %d)",
                comm->rank, lv->group->rank(), lv->ring->rank(), i, g);
  }
  PlanCache& cache = *attnState(comm).plans;
  const std::string key = PlanCache::keyOf(s, comm->nranks, attncclAlgoHybrid, backward);
  lv->entry = cache.find(key);
  if (lv->entry == nullptr) lv->entry = cache.insert(key, buildEntry(comm, L, s, backward));
  lv->h = static_cast<HybridPlan*>(lv->entry->extra.get());
  return attncclSuccess;
}

// Runs the ring level from the entry; its first call sizes the scratch the cache's bound counts.
attncclResult_t ringLevel(const ExecContext& x, CachedPlan* e, const FwdTensors& t) {
  return executeForward(x, e->problem, e->schedule, e->plan, t, &e->scratch);
}
attncclResult_t ringLevel(const ExecContext& x, CachedPlan* e, const BwdTensors& t) {
  return executeBackward(x, e->problem, e->schedule, e->plan, t, &e->scratch);
}
template <typename Tensors>
attncclResult_t runRing(attncclComm* comm, const Levels& lv, const Tensors& t) {
  CachedPlan* e = lv.entry;
  const size_t before = e->scratch.bytes();
  attncclResult_t r = ringLevel(lv.ring->context(), e, t);
  if (e->scratch.bytes() != before) attnState(comm).plans->resized(e);
  return r;
}

// The group exchange runs on the group view (member m = view rank m); its staging lies in this
// communicator's arena, the ring's scratch in the ring view's own.
attncclResult_t exchange(const Levels& lv, HeadExchange& x, char* buf) {
  Engine& e = lv.group->engine();
  ThreadPool& pool = lv.group->pool();
  ATTN_CHECK(x.post(e, kTagHeadExchange, buf, buf + x.sendBytes(), pool, [&e] { (void)e.progress(); }));
  return x.finish(pool);
}

// The arena layout of a call: the fixed pieces already taken in L, then the head exchanges'
// staging (the larger of the two exchanges, sizes independent of the tensors' addresses), sized
// by the entry's first call and kept in it.
template <typename Fields>
attncclResult_t sizeArena(HybridPlan& hp, ScratchLayout& L, const Fields& fields) {
  // Every piece before the staging is a function of the entry's shape, so a cached layout
  // holds for every call of it; checked, since a piece that depended on a call would misplace.
  if (hp.sized && L.total() != hp.staging) {
    return fail(attncclInternalError, "hybrid: cached arena layout differs (%zu, cached %zu)", L.total(), hp.staging);
  }
  if (!hp.sized) {
    HeadExchange in(hp.members, HeadDir::kSeqToHead, fields(true)), out(hp.members, HeadDir::kHeadToSeq, fields(false));
    hp.staging = L.take(std::max(in.sendBytes() + in.recvBytes(), out.sendBytes() + out.recvBytes()));
    hp.arenaTotal = L.total();
    hp.sized = true;
  }
  return attncclSuccess;
}

}  // namespace

attncclResult_t hybridForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t) {
  const HybridLayout& layout = layoutOf(comm);
  const int G = layout.G;
  if (G == comm->nranks) return ulyssesForward(comm, s, t);
  if (G == 1) return distributedForward(comm, s, t, attncclAlgoRing);  // the ring's cached plan
  Levels lv;
  ATTN_CHECK(setUp(comm, layout, s, false, &lv));
  TrafficFold fold(comm->engine.stats(), {lv.group, lv.ring});
  HybridPlan& hp = *lv.h;
  const int D = s.headDim;
  const size_t es = dtypeSize(s.dtype);
  const HeadSplit split(s.numHeadsQ, s.numHeadsKV, G, 1);
  const int64_t N = hp.members.total, T = hp.members.tokens(hp.i);
  ScratchLayout L;
  const size_t oQ = L.take(N * hp.q.count * D * es), oK = L.take(N * hp.kv.count * D * es),
               oV = L.take(N * hp.kv.count * D * es), oO = L.take(N * hp.q.count * D * es),
               oLse = L.take(N * hp.q.count * sizeof(float)),
               oSeqLse = L.take(T * s.numHeadsQ * sizeof(float));  // used without a caller's LSE
  char* base = nullptr;
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  auto fields = [&](bool in) {
    if (in) {
      return std::vector<HeadField>{rowsField(t.q, t.qs, s.numHeadsQ, at(oQ), hp.q, D, es, split.allQ()),
                                    rowsField(t.k, t.ks, s.numHeadsKV, at(oK), hp.kv, D, es, split.allKV()),
                                    rowsField(t.v, t.vs, s.numHeadsKV, at(oV), hp.kv, D, es, split.allKV())};
    }
    // LSE always travels (as in ulysses.cc); without a caller's buffer it lands in scratch.
    float* seqLse = t.lse ? t.lse : reinterpret_cast<float*>(at(oSeqLse));
    const int64_t seqLd = t.lse && t.ldlse ? t.ldlse : T;
    return std::vector<HeadField>{rowsField(t.out, t.os, s.numHeadsQ, at(oO), hp.q, D, es, split.allQ()),
                                  lseField(seqLse, seqLd, reinterpret_cast<float*>(at(oLse)), N, hp.q, split.allQ())};
  };
  ATTN_CHECK(sizeArena(hp, L, [&](bool in) { return fields(in); }));
  ATTN_CHECK(attnState(comm).arena.ensure(hp.arenaTotal, &base));
  HeadExchange in(hp.members, HeadDir::kSeqToHead, fields(true)), out(hp.members, HeadDir::kHeadToSeq, fields(false));
  ATTN_CHECK(exchange(lv, in, at(hp.staging)));
  if (hp.q.count > 0) {
    // A group without tokens still relays K/V on its ring; it has no LSE rows to fill.
    FwdTensors h{at(oQ), at(oK), at(oV), at(oO), N > 0 ? reinterpret_cast<float*>(at(oLse)) : nullptr};
    h.sinks = t.sinks;  // the ring's executor merges them for its heads (global qFirst..)
    ATTN_CHECK(runRing(comm, lv, h));
  }
  return exchange(lv, out, at(hp.staging));
}

attncclResult_t hybridBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t) {
  const HybridLayout& layout = layoutOf(comm);
  const int G = layout.G;
  if (G == comm->nranks) return ulyssesBackward(comm, s, t);
  if (G == 1) return distributedBackward(comm, s, t, attncclAlgoRing);  // the ring's cached plan
  Levels lv;
  ATTN_CHECK(setUp(comm, layout, s, true, &lv));
  TrafficFold fold(comm->engine.stats(), {lv.group, lv.ring});
  HybridPlan& hp = *lv.h;
  const int D = s.headDim, Hq = s.numHeadsQ, Hkv = s.numHeadsKV;
  const size_t es = dtypeSize(s.dtype), f4 = sizeof(float);
  const HeadSplit split(Hq, Hkv, G, 1);
  const bool shared = split.anyShared();
  const HeadRange q = hp.q, kv = hp.kv;
  const int64_t N = hp.members.total, T = hp.members.tokens(hp.i);
  const int64_t qBytes = N * q.count * D * es, kvBytes = N * kv.count * D * es;
  ScratchLayout L;
  const size_t oQ = L.take(qBytes), oDO = L.take(qBytes), oDQ = L.take(qBytes),
               oK = L.take(kvBytes), oV = L.take(kvBytes), oDK = L.take(kvBytes), oDV = L.take(kvBytes),
               oLse = L.take(N * q.count * f4), oDelta = L.take(N * q.count * f4),
               oSeqDelta = L.take(T * Hq * f4), oDK32 = L.take(shared ? N * kv.count * D * f4 : 0),
               oDV32 = L.take(shared ? N * kv.count * D * f4 : 0), oSeqDK = L.take(shared ? T * Hkv * D * f4 : 0),
               oSeqDV = L.take(shared ? T * Hkv * D * f4 : 0);
  char* base = nullptr;
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  auto f32 = [&](size_t off) { return reinterpret_cast<float*>(at(off)); };
  auto fields = [&](bool in) {
    if (in) {
      return std::vector<HeadField>{rowsField(t.q, t.qs, Hq, at(oQ), q, D, es, split.allQ()),
                                    rowsField(t.dout, t.dos, Hq, at(oDO), q, D, es, split.allQ()),
                                    lseField(t.lse, t.ldlse ? t.ldlse : T, f32(oLse), N, q, split.allQ()),
                                    lseField(f32(oSeqDelta), T, f32(oDelta), N, q, split.allQ()),
                                    rowsField(t.k, t.ks, Hkv, at(oK), kv, D, es, split.allKV()),
                                    rowsField(t.v, t.vs, Hkv, at(oV), kv, D, es, split.allKV())};
    }
    std::vector<HeadRange> ex = split.all(&HeadSplit::kvDoneExclusive, 0);
    std::vector<HeadField> f{rowsField(t.dq, t.dqs, Hq, at(oDQ), q, D, es, split.allQ()),
                             rowsField(t.dk, t.dks, Hkv, at(oDK), kv, D, es, ex), rowsField(t.dv, t.dvs, Hkv, at(oDV), kv, D, es, ex)};
    if (!shared) return f;
    for (auto part : {&HeadSplit::kvDoneSharedLo, &HeadSplit::kvDoneSharedHi}) {
      for (auto bufs : {std::make_pair(oSeqDK, oDK32), std::make_pair(oSeqDV, oDV32)}) {
        f.push_back(rowsField(at(bufs.first), Hkv, at(bufs.second), kv, D, f4, split.all(part, 0)));
        f.back().reduce = true;
      }
    }
    return f;
  };
  ATTN_CHECK(sizeArena(hp, L, [&](bool in) { return fields(in); }));
  ATTN_CHECK(attnState(comm).arena.ensure(hp.arenaTotal, &base));
  HeadExchange in(hp.members, HeadDir::kSeqToHead, fields(true)), out(hp.members, HeadDir::kHeadToSeq, fields(false));
  ThreadPool& pool = *comm->pool;
  computeDelta(s.dtype, t.out, tokenStride(t.os, Hq, D), headStride(t.os, D), t.dout, tokenStride(t.dos, Hq, D),
               headStride(t.dos, D), T, Hq, D, f32(oSeqDelta), T, pool);
  ATTN_CHECK(exchange(lv, in, at(hp.staging)));
  if (q.count > 0) {
    BwdTensors h{at(oQ), at(oK), at(oV), nullptr, f32(oLse), at(oDO), at(oDQ), at(oDK), at(oDV), f32(oDelta)};
    ATTN_CHECK(runRing(comm, lv, h));
  }
  // Shared K/V heads go home in fp32 and are summed there (the executor rounded each partial).
  const int64_t ldkv = static_cast<int64_t>(kv.count) * D, ldSeq = static_cast<int64_t>(Hkv) * D;
  if (shared) {
    memset(at(oSeqDK), 0, T * Hkv * D * f4);
    memset(at(oSeqDV), 0, T * Hkv * D * f4);
    for (int h = kv.first; h < kv.end() && N > 0; ++h) {
      if (!split.kvShared(h)) continue;
      const int64_t off = (h - kv.first) * D;
      loadRows(s.dtype, at(oDK) + off * es, ldkv, f32(oDK32) + off, ldkv, N, D, pool);
      loadRows(s.dtype, at(oDV) + off * es, ldkv, f32(oDV32) + off, ldkv, N, D, pool);
    }
  }
  ATTN_CHECK(exchange(lv, out, at(hp.staging)));
  for (int h = 0; h < Hkv && shared && T > 0; ++h) {
    if (!split.kvShared(h)) continue;
    storeRows(s.dtype, f32(oSeqDK) + h * D, ldSeq, static_cast<char*>(t.dk) + h * headStride(t.dks, D) * es,
              tokenStride(t.dks, Hkv, D), T, D, pool);
    storeRows(s.dtype, f32(oSeqDV) + h * D, ldSeq, static_cast<char*>(t.dv) + h * headStride(t.dvs, D) * es,
              tokenStride(t.dvs, Hkv, D), T, D, pool);
  }
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
