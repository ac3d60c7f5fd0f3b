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

// This rank's view of the two levels.
struct Levels {
  GroupView* group = nullptr;
  GroupView* ring = nullptr;
  int g = 0, i = 0;
  HeadGroup members;  // the group's members and their tokens
  Problem across;     // groups as ranks, this member's heads
  HeadRange q, kv;
};

attncclResult_t setUp(attncclComm* comm, const HybridLayout& L, const AttnShape& s, Levels* lv) {
  ATTN_CHECK(views(comm, L, &lv->group, &lv->ring));
  const int P = comm->nranks, G = L.G, groups = static_cast<int>(L.groups.size());
  lv->g = L.groupOf[comm->rank];
  lv->i = L.indexOf[comm->rank];
  if (lv->group->rank() != lv->i || lv->ring->rank() != lv->g) {
    return fail(attncclInternalError, "hybrid: rank %d is %d of its group view and %d of its ring view (want %d, %d)",
                comm->rank, lv->group->rank(), lv->ring->rank(), lv->i, lv->g);
  }
  std::vector<std::vector<int64_t>> pos(P);
  for (int r = 0; r < P; ++r) pos[r] = localPositions(s, P, r);
  Problem& p = lv->across;
  p.shape = s;
  p.nranks = groups;
  p.tokens.resize(groups);
  for (int k = 0; k < groups; ++k) {
    std::vector<std::vector<int64_t>> in;
    for (int member : L.groups[k]) in.push_back(pos[member]);
    HeadGroup u = unionGroup(s, in, 0);
    p.tokens[k].pos = std::move(u.pos);
    p.tokens[k].doc = std::move(u.doc);
    if (k == lv->g) lv->members = unionGroup(s, in, lv->i);
  }
  HeadSplit split(s.numHeadsQ, s.numHeadsKV, G, 1);
  p.heads = split.map(lv->i);
  lv->q = split.q(lv->i);
  lv->kv = split.kv(lv->i);
  return attncclSuccess;
}

// The group exchange runs on the group view (member m = view rank m); its staging lies in this
// communicator's arena, the ring's scratch in the ring view's own.
attncclResult_t exchange(const Levels& lv, HeadExchange& x, char* buf) {
  Engine& e = lv.group->engine();
  ThreadPool& pool = lv.group->pool();
  ATTN_CHECK(x.post(e, kTagHeadExchange, buf, buf + x.sendBytes(), pool, [&e] { (void)e.progress(); }));
  return x.finish(pool);
}

}  // namespace

attncclResult_t hybridForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t) {
  const HybridLayout layout = hybridLayout(comm);
  const int G = layout.G;
  if (G == comm->nranks) return ulyssesForward(comm, s, t);
  if (G == 1) {
    Problem p = Problem::fromLayout(s, comm->nranks);
    ExecContext x{&comm->engine, comm->rank, comm->pool.get(), &attnState(comm).arena};
    return executeForward(x, p, ringSchedule(p, false), t);
  }
  Levels lv;
  ATTN_CHECK(setUp(comm, layout, s, &lv));
  TrafficFold fold(comm->engine.stats(), {lv.group, lv.ring});
  const int D = s.headDim;
  const size_t es = dtypeSize(s.dtype);
  const HeadSplit split(s.numHeadsQ, s.numHeadsKV, G, 1);
  const int64_t N = lv.members.total, T = lv.members.tokens(lv.i);
  ScratchLayout L;
  const size_t oQ = L.take(N * lv.q.count * D * es), oK = L.take(N * lv.kv.count * D * es),
               oV = L.take(N * lv.kv.count * D * es), oO = L.take(N * lv.q.count * D * es),
               oLse = L.take(N * lv.q.count * sizeof(float)),
               oSeqLse = L.take(t.lse ? 0 : T * s.numHeadsQ * sizeof(float));
  char* base = nullptr;
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  auto fields = [&](bool in) {
    if (in) {
      return std::vector<HeadField>{rowsField(t.q, t.qs, s.numHeadsQ, at(oQ), lv.q, D, es, split.allQ()),
                                    rowsField(t.k, t.ks, s.numHeadsKV, at(oK), lv.kv, D, es, split.allKV()),
                                    rowsField(t.v, t.vs, s.numHeadsKV, at(oV), lv.kv, D, es, split.allKV())};
    }
    // LSE always travels (as in ulysses.cc); without a caller's buffer it lands in scratch.
    float* seqLse = t.lse ? t.lse : reinterpret_cast<float*>(at(oSeqLse));
    const int64_t seqLd = t.lse && t.ldlse ? t.ldlse : T;
    return std::vector<HeadField>{rowsField(t.out, t.os, s.numHeadsQ, at(oO), lv.q, D, es, split.allQ()),
                                  lseField(seqLse, seqLd, reinterpret_cast<float*>(at(oLse)), N, lv.q, split.allQ())};
  };
  size_t staging;
  {
    HeadExchange in(lv.members, HeadDir::kSeqToHead, fields(true)), out(lv.members, HeadDir::kHeadToSeq, fields(false));
    staging = L.take(std::max(in.sendBytes() + in.recvBytes(), out.sendBytes() + out.recvBytes()));
  }
  ATTN_CHECK(attnState(comm).arena.ensure(L.total(), &base));
  HeadExchange in(lv.members, HeadDir::kSeqToHead, fields(true)), out(lv.members, HeadDir::kHeadToSeq, fields(false));
  ATTN_CHECK(exchange(lv, in, at(staging)));
  if (lv.q.count > 0) {
    Schedule sched = ringSchedule(lv.across, false);
    // A group without tokens still relays K/V on its ring; it has no LSE rows to fill.
    FwdTensors h{at(oQ), at(oK), at(oV), at(oO), N > 0 ? reinterpret_cast<float*>(at(oLse)) : nullptr};
    h.sinks = t.sinks;  // the ring's executor merges them for its heads (global qFirst..)
    ATTN_CHECK(executeForward(lv.ring->context(), lv.across, sched, h));
  }
  return exchange(lv, out, at(staging));
}

attncclResult_t hybridBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t) {
  const HybridLayout layout = hybridLayout(comm);
  const int G = layout.G;
  if (G == comm->nranks) return ulyssesBackward(comm, s, t);
  if (G == 1) {
    Problem p = Problem::fromLayout(s, comm->nranks);
    ExecContext x{&comm->engine, comm->rank, comm->pool.get(), &attnState(comm).arena};
    return executeBackward(x, p, ringSchedule(p, true), t);
  }
  Levels lv;
  ATTN_CHECK(setUp(comm, layout, s, &lv));
  TrafficFold fold(comm->engine.stats(), {lv.group, lv.ring});
  const int D = s.headDim, Hq = s.numHeadsQ, Hkv = s.numHeadsKV;
  const size_t es = dtypeSize(s.dtype), f4 = sizeof(float);
  const HeadSplit split(Hq, Hkv, G, 1);
  const bool shared = split.anyShared();
  const HeadRange q = lv.q, kv = lv.kv;
  const int64_t N = lv.members.total, T = lv.members.tokens(lv.i);
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
  size_t staging;
  {
    HeadExchange in(lv.members, HeadDir::kSeqToHead, fields(true)), out(lv.members, HeadDir::kHeadToSeq, fields(false));
    staging = L.take(std::max(in.sendBytes() + in.recvBytes(), out.sendBytes() + out.recvBytes()));
  }
  ATTN_CHECK(attnState(comm).arena.ensure(L.total(), &base));
  HeadExchange in(lv.members, HeadDir::kSeqToHead, fields(true)), out(lv.members, HeadDir::kHeadToSeq, fields(false));
  ThreadPool& pool = *comm->pool;
  computeDelta(s.dtype, t.out, tokenStride(t.os, Hq, D), headStride(t.os, D), t.dout, tokenStride(t.dos, Hq, D),
               headStride(t.dos, D), T, Hq, D, f32(oSeqDelta), T, pool);
  ATTN_CHECK(exchange(lv, in, at(staging)));
  if (q.count > 0) {
    Schedule sched = ringSchedule(lv.across, true);
    BwdTensors h{at(oQ), at(oK), at(oV), nullptr, f32(oLse), at(oDO), at(oDQ), at(oDK), at(oDV), f32(oDelta)};
    ATTN_CHECK(executeBackward(lv.ring->context(), lv.across, sched, h));
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
  ATTN_CHECK(exchange(lv, out, at(staging)));
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
