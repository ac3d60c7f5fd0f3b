#include "attn/program/dev_program.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <type_traits>

#include "attn/items.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace gpu {
namespace {

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

size_t segOffset(const ItemLayout& l, size_t i) {
  size_t off = 0;
  for (size_t j = 0; j < i; ++j) off += (l.segBytes[j] + 63) / 64 * 64;
  return off;
}

// Where one segment of an item is read from: a 2-D region (height rows of `width` bytes).
struct Source {
  Ref ref;
  size_t width = 0, height = 1, pitch = 0;
};

class Builder {
 public:
  Builder(const Problem& p, const Schedule& s, const std::vector<Plan>& plans, int me)
      : p_(p), s_(s), plans_(plans), me_(me), bwd_(s.backward) {
    T_ = p.tokens[me].size();
    Hq_ = p.heads.numQ;
    Hkv_ = p.heads.numKV;
    const size_t D = static_cast<size_t>(p.shape.headDim);
    const size_t es = dtypeSize(p.shape.dtype);
    qRow_ = static_cast<size_t>(Hq_) * D * es;
    kvRow_ = static_cast<size_t>(Hkv_) * D * es;
    qRowF_ = static_cast<size_t>(Hq_) * D * 4;
    kvRowF_ = static_cast<size_t>(Hkv_) * D * 4;
    size_t arena = 0, ownMax = 0;
    for (size_t r = 0; r < plans.size(); ++r) {
      arena = std::max(arena, plans[r].arenaBytes);
    }
    prog_.arenaBytes = align256(arena);
    for (int r = 0; r < p.nranks; ++r) {
      ownMax = std::max(ownMax, ownLayout(p, bwd_, r, prog_.arenaBytes).end - prog_.arenaBytes);
    }
    prog_.windowBytes = prog_.arenaBytes + ownMax;
    own_ = ownLayout(p, bwd_, me, prog_.arenaBytes);
    prog_.backward = bwd_;
  }

  DevProgram build();

 private:
  void add(uint8_t stream, OpBody b) { prog_.ops.push_back(DevOp{stream, std::move(b)}); }
  static Ref at(Space s, size_t off) { return Ref{s, -1, off}; }
  Ref own(size_t off) const { return at(Space::kOwn, off); }
  Ref slot(const ItemRef& r, size_t seg) const {
    return own(r.offset + segOffset(itemLayout(p_, r.stored, bwd_), seg));
  }
  std::vector<Source> sources(const PlannedTransfer& t) const;
  void task(const PlannedTask& t);
  void merge(const PlannedMerge& m);

  const Problem& p_;
  const Schedule& s_;
  const std::vector<Plan>& plans_;
  int me_;
  bool bwd_;
  int64_t T_ = 0;
  int Hq_ = 0, Hkv_ = 0;
  size_t qRow_ = 0, kvRow_ = 0, qRowF_ = 0, kvRowF_ = 0;
  OwnLayout own_;
  DevProgram prog_;
};

// Segment sources of a sent item: the caller's tensors for this rank's own Q/KV, else the slot
// holding it (possibly a whole item of which a part is sent).
std::vector<Source> Builder::sources(const PlannedTransfer& t) const {
  const ItemLayout l = itemLayout(p_, t.item, bwd_);
  const size_t rows = static_cast<size_t>(l.rows);
  std::vector<Source> src;
  if (t.item.kind == ItemKind::kKV) {
    if (t.ref.local) {
      src.push_back({at(Space::kUserK, 0), l.segBytes[0]});
      src.push_back({at(Space::kUserV, 0), l.segBytes[1]});
    } else {
      src.push_back({slot(t.ref, 0), l.segBytes[0]});
      src.push_back({slot(t.ref, 1), l.segBytes[1]});
    }
    return src;
  }
  if (t.item.kind == ItemKind::kQ) {
    size_t skip, ldlse;
    Ref q, dout, lse, delta;
    if (t.ref.local) {
      skip = static_cast<size_t>(l.rowBegin);
      ldlse = static_cast<size_t>(T_);
      q = at(Space::kUserQ, 0);
      dout = at(Space::kUserDout, 0);
      lse = at(Space::kUserLse, 0);
      delta = own(own_.delta);
    } else {
      const ItemLayout st = itemLayout(p_, t.ref.stored, bwd_);
      skip = static_cast<size_t>(l.rowBegin - st.rowBegin);
      ldlse = static_cast<size_t>(st.rows);
      q = slot(t.ref, 0);
      if (bwd_) {
        dout = slot(t.ref, 1);
        lse = slot(t.ref, 2);
        delta = slot(t.ref, 3);
      }
    }
    q.offset += skip * qRow_;
    src.push_back({q, rows * qRow_});
    if (bwd_) {
      dout.offset += skip * qRow_;
      lse.offset += skip * 4;
      delta.offset += skip * 4;
      src.push_back({dout, rows * qRow_});
      // LSE and Delta rows [Hq][rows] out of [Hq][ldlse].
      src.push_back({lse, rows * 4, static_cast<size_t>(Hq_), ldlse * 4});
      src.push_back({delta, rows * 4, static_cast<size_t>(Hq_), ldlse * 4});
    }
    return src;
  }
  // Accumulators travel whole from their slot.
  for (size_t i = 0; i < l.segBytes.size(); ++i) src.push_back({slot(t.ref, i), l.segBytes[i]});
  return src;
}

void Builder::task(const PlannedTask& t) {
  const ItemId& qi = t.q.item;
  int64_t b, e;
  partRows(p_.tokens[qi.origin].size(), qi.part, qi.parts, &b, &e);
  if (e <= b) return;
  const int64_t rows = e - b;
  // Query-side views.
  Ref q, dout, lse, delta;
  int64_t ldlse;
  if (t.q.local) {
    q = at(Space::kUserQ, b * qRow_);
    dout = at(Space::kUserDout, b * qRow_);
    lse = at(Space::kUserLse, b * 4);
    delta = own(own_.delta + b * 4);
    ldlse = T_;
  } else {
    const ItemLayout st = itemLayout(p_, t.q.stored, bwd_);
    const size_t skip = static_cast<size_t>(b - st.rowBegin);
    q = slot(t.q, 0);
    q.offset += skip * qRow_;
    if (bwd_) {
      dout = slot(t.q, 1);
      dout.offset += skip * qRow_;
      lse = slot(t.q, 2);
      lse.offset += skip * 4;
      delta = slot(t.q, 3);
      delta.offset += skip * 4;
    }
    ldlse = st.rows;
  }
  Ref k, v;
  if (t.kv.local) {
    k = at(Space::kUserK, 0);
    v = at(Space::kUserV, 0);
  } else {
    k = slot(t.kv, 0);
    v = slot(t.kv, 1);
  }
  const Rows qRows{qi.origin, b, e};
  const int kvOrigin = t.kv.item.origin;
  const Rows kRows{kvOrigin, 0, p_.tokens[kvOrigin].size()};
  if (!bwd_) {
    FwdTileOp f{q, qRows, k, v, kRows, Ref(), Ref(), 0, p_.heads, false};
    if (t.out.local) {
      f.o = own(own_.o + b * qRowF_);
      f.lse = own(own_.lse + b * 4);
      f.ldlse = T_;
    } else {
      f.o = slot(t.out, 0);
      f.lse = slot(t.out, 1);
      f.ldlse = rows;
      if (t.out.init) add(kComputeStream, ClearOutOp{f.o, f.lse, rows, rows, Hq_});
    }
    add(kComputeStream, f);
    return;
  }
  BwdTileOp g{q, dout, lse, delta, ldlse, qRows, k, v, kRows, Ref(), Ref(), Ref(), p_.heads};
  if (t.out.local) {
    g.dq = own(own_.dq + b * qRowF_);
  } else {
    g.dq = slot(t.out, 0);
    if (t.out.init) add(kComputeStream, ZeroOp{g.dq, static_cast<size_t>(rows) * qRowF_});
  }
  if (t.dkv.local) {
    g.dk = own(own_.dk);
    g.dv = own(own_.dv);
  } else {
    g.dk = slot(t.dkv, 0);
    g.dv = slot(t.dkv, 1);
    if (t.dkv.init) {
      const ItemLayout kl = itemLayout(p_, t.dkv.stored, bwd_);
      add(kComputeStream, ZeroOp{g.dk, kl.segBytes[0]});
      add(kComputeStream, ZeroOp{g.dv, kl.segBytes[1]});
    }
  }
  add(kComputeStream, g);
}

void Builder::merge(const PlannedMerge& m) {
  const ItemLayout l = itemLayout(p_, m.from.item, bwd_);
  const int64_t rows = l.rows;
  if (m.from.item.kind == ItemKind::kOut) {
    MergeOutOp op{Ref(), Ref(), 0, slot(m.from, 0), slot(m.from, 1), rows, rows, Hq_};
    if (m.into.local) {
      op.o = own(own_.o + l.rowBegin * qRowF_);
      op.lse = own(own_.lse + l.rowBegin * 4);
      op.ldlse = T_;
    } else {
      op.o = slot(m.into, 0);
      op.lse = slot(m.into, 1);
      op.ldlse = rows;
      if (m.into.init) add(kComputeStream, ClearOutOp{op.o, op.lse, rows, rows, Hq_});
    }
    add(kComputeStream, op);
    return;
  }
  if (m.from.item.kind == ItemKind::kDQ) {
    const Ref dst = m.into.local ? own(own_.dq + l.rowBegin * qRowF_) : slot(m.into, 0);
    const int64_t n = rows * static_cast<int64_t>(qRowF_ / 4);
    add(kComputeStream, AddOp{dst, slot(m.from, 0), n, 1, n, n, m.into.init});
    return;
  }
  const Ref dk = m.into.local ? own(own_.dk) : slot(m.into, 0);
  const Ref dv = m.into.local ? own(own_.dv) : slot(m.into, 1);
  const int64_t n = rows * static_cast<int64_t>(kvRowF_ / 4);
  add(kComputeStream, AddOp{dk, slot(m.from, 0), n, 1, n, n, m.into.init});
  add(kComputeStream, AddOp{dv, slot(m.from, 1), n, 1, n, n, m.into.init});
}

DevProgram Builder::build() {
  const Plan& plan = plans_[me_];
  const int R = static_cast<int>(plan.rounds.size());
  prog_.numEvents = 2 * R;
  prog_.numSequences = static_cast<uint64_t>(s_.numRounds());  // the same on every rank
  // Own accumulators (and Delta) before round 0.
  if (!bwd_) {
    add(kComputeStream, ClearOutOp{own(own_.o), own(own_.lse), T_, T_, Hq_});
  } else {
    add(kComputeStream, DeltaOp{at(Space::kUserOut, 0), at(Space::kUserDout, 0), own(own_.delta), T_, Hq_});
    add(kComputeStream, ZeroOp{own(own_.dq), static_cast<size_t>(T_) * qRowF_});
    add(kComputeStream, ZeroOp{own(own_.dk), static_cast<size_t>(T_) * kvRowF_});
    add(kComputeStream, ZeroOp{own(own_.dv), static_cast<size_t>(T_) * kvRowF_});
  }
  for (int k = 0; k < R; ++k) {
    const PlannedRound& round = plan.rounds[k];
    const uint64_t seq = static_cast<uint64_t>(k) + 1;
    std::set<int> senders, receivers;
    for (const PlannedTransfer& t : round.transfers) (t.send ? receivers : senders).insert(t.peer);

    if (k > 0) add(kComputeStream, WaitEventOp{2 * (k - 1) + 1});
    for (int from : senders) add(kComputeStream, SignalOp{from, 1, seq});
    add(kComputeStream, RecordOp{2 * k});

    add(kCopyStream, WaitEventOp{2 * k});
    for (int to : receivers) {
      add(kCopyStream, WaitFlagOp{to, 1, seq});
      for (const PlannedTransfer& t : round.transfers) {
        if (!t.send || t.peer != to) continue;
        // The receiver's slot for this item in this round.
        const PlannedTransfer* rx = nullptr;
        for (const PlannedTransfer& u : plans_[to].rounds[k].transfers) {
          if (!u.send && u.peer == me_ && u.item == t.item) rx = &u;
        }
        const ItemLayout l = itemLayout(p_, t.item, bwd_);
        const std::vector<Source> src = sources(t);
        for (size_t i = 0; i < src.size(); ++i) {
          CopyOp c;
          c.dst = Ref{Space::kPeer, to, (rx != nullptr ? rx->ref.offset : 0) + segOffset(l, i)};
          c.src = src[i].ref;
          c.width = src[i].width;
          c.height = src[i].height;
          c.dpitch = src[i].width;
          c.spitch = src[i].height > 1 ? src[i].pitch : src[i].width;
          add(kCopyStream, c);
          prog_.bytesSent += c.width * c.height;
          prog_.messagesSent += 1;
        }
      }
      add(kCopyStream, SignalOp{to, 0, seq});
    }
    add(kCopyStream, RecordOp{2 * k + 1});

    for (const PlannedTask& t : round.tasks) task(t);
    for (int from : senders) add(kComputeStream, WaitFlagOp{from, 0, seq});
    for (const PlannedTransfer& t : round.transfers) {
      if (t.send) continue;
      const ItemLayout l = itemLayout(p_, t.item, bwd_);
      prog_.bytesRecv += l.bytes();
      prog_.messagesRecv += l.segBytes.size();
    }
    for (const PlannedMerge& m : round.merges) merge(m);
  }
  if (R > 0) add(kComputeStream, WaitEventOp{2 * (R - 1) + 1});
  // Final rounding into the caller's tensors.
  if (!bwd_) {
    add(kComputeStream, StoreOp{own(own_.o), at(Space::kUserOut, 0), T_, static_cast<int64_t>(qRowF_ / 4)});
    CopyOp c;
    c.dst = at(Space::kUserLse, 0);
    c.src = own(own_.lse);
    c.width = c.dpitch = c.spitch = static_cast<size_t>(T_) * Hq_ * 4;
    add(kComputeStream, c);
  } else {
    add(kComputeStream, StoreOp{own(own_.dq), at(Space::kUserDq, 0), T_, static_cast<int64_t>(qRowF_ / 4)});
    add(kComputeStream, StoreOp{own(own_.dk), at(Space::kUserDk, 0), T_, static_cast<int64_t>(kvRowF_ / 4)});
    add(kComputeStream, StoreOp{own(own_.dv), at(Space::kUserDv, 0), T_, static_cast<int64_t>(kvRowF_ / 4)});
  }
  return std::move(prog_);
}

}  // namespace

const char* spaceName(Space s) {
  switch (s) {
    case Space::kUserQ: return "q";
    case Space::kUserK: return "k";
    case Space::kUserV: return "v";
    case Space::kUserDout: return "dout";
    case Space::kUserOut: return "out";
    case Space::kUserLse: return "lse";
    case Space::kUserDq: return "dq";
    case Space::kUserDk: return "dk";
    case Space::kUserDv: return "dv";
    case Space::kOwn: return "own";
    case Space::kPeer: return "peer";
  }
  return "?";
}

OwnLayout ownLayout(const Problem& p, bool backward, int rank, size_t arenaBytes) {
  const size_t T = static_cast<size_t>(p.tokens[rank].size());
  const size_t D = static_cast<size_t>(p.shape.headDim);
  const size_t hq = static_cast<size_t>(p.heads.numQ), hkv = static_cast<size_t>(p.heads.numKV);
  OwnLayout l;
  size_t at = arenaBytes;
  auto take = [&at](size_t bytes) {
    const size_t off = at;
    at += align256(bytes);
    return off;
  };
  if (!backward) {
    l.o = take(T * hq * D * 4);
    l.lse = take(hq * T * 4);
  } else {
    l.delta = take(hq * T * 4);
    l.dq = take(T * hq * D * 4);
    l.dk = take(T * hkv * D * 4);
    l.dv = take(T * hkv * D * 4);
  }
  l.end = at;
  return l;
}

DevProgram buildProgram(const Problem& p, const Schedule& s, const std::vector<Plan>& plans, int rank) {
  return Builder(p, s, plans, rank).build();
}

namespace {

// Calls f on every Ref / Rows of an operation.
template <typename F>
void forEachRef(OpBody& b, F f) {
  std::visit(
      [&](auto& op) {
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, FwdTileOp>) {
          for (Ref* r : {&op.q, &op.k, &op.v, &op.o, &op.lse}) f(*r);
        } else if constexpr (std::is_same_v<T, BwdTileOp>) {
          for (Ref* r : {&op.q, &op.dout, &op.lse, &op.delta, &op.k, &op.v, &op.dq, &op.dk, &op.dv}) f(*r);
        } else if constexpr (std::is_same_v<T, ClearOutOp>) {
          f(op.o), f(op.lse);
        } else if constexpr (std::is_same_v<T, ZeroOp>) {
          f(op.dst);
        } else if constexpr (std::is_same_v<T, MergeOutOp>) {
          for (Ref* r : {&op.o, &op.lse, &op.oB, &op.lseB}) f(*r);
        } else if constexpr (std::is_same_v<T, AddOp> || std::is_same_v<T, StoreOp> || std::is_same_v<T, CopyOp>) {
          f(op.dst), f(op.src);
        } else if constexpr (std::is_same_v<T, DeltaOp>) {
          f(op.out), f(op.dout), f(op.delta);
        }
      },
      b);
}

}  // namespace

void embed(const Embedding& e, DevProgram* p) {
  for (DevOp& op : p->ops) {
    forEachRef(op.body, [&e](Ref& r) {
      const int s = static_cast<int>(r.space);
      if (s < static_cast<int>(Space::kOwn)) {
        r = Ref{Space::kOwn, -1, e.userRegion[s] + r.offset};
      } else if (r.space == Space::kOwn) {
        r.offset += e.base;
      } else {
        r.peer = e.peers[r.peer];
        r.offset += e.base;
      }
    });
    auto rows = [&e](Rows& r) {
      if (r.table < 0) r.table = e.tableBase + r.origin;
    };
    if (auto* f = std::get_if<FwdTileOp>(&op.body)) rows(f->qRows), rows(f->kRows);
    if (auto* b = std::get_if<BwdTileOp>(&op.body)) rows(b->qRows), rows(b->kRows);
    if (auto* g = std::get_if<SignalOp>(&op.body)) g->peer = e.peers[g->peer], g->value += e.valueShift;
    if (auto* w = std::get_if<WaitFlagOp>(&op.body)) w->from = e.peers[w->from], w->value += e.valueShift;
    if (auto* r = std::get_if<RecordOp>(&op.body)) r->event += e.eventShift;
    if (auto* w = std::get_if<WaitEventOp>(&op.body)) w->event += e.eventShift;
  }
}

std::string describe(const DevOp& op) {
  char buf[256];
  auto ref = [](const Ref& r) {
    return std::string(spaceName(r.space)) + (r.space == Space::kPeer ? std::to_string(r.peer) : "") + "+" +
           std::to_string(r.offset);
  };
  const char* st = op.stream == kComputeStream ? "compute" : "copy";
  if (auto* f = std::get_if<FwdTileOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s fwd-tile%s q=%s rows(%d:%lld..%lld) kv=%d o=%s", st, f->final ? "(final)" : "",
             ref(f->q).c_str(), f->qRows.origin, static_cast<long long>(f->qRows.begin),
             static_cast<long long>(f->qRows.end), f->kRows.origin, ref(f->o).c_str());
  } else if (auto* b = std::get_if<BwdTileOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s bwd-tile q=%s rows(%d:%lld..%lld) kv=%d dq=%s dk=%s", st, ref(b->q).c_str(),
             b->qRows.origin, static_cast<long long>(b->qRows.begin), static_cast<long long>(b->qRows.end), b->kRows.origin,
             ref(b->dq).c_str(), ref(b->dk).c_str());
  } else if (auto* c = std::get_if<CopyOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s copy %s <- %s %zux%zu", st, ref(c->dst).c_str(), ref(c->src).c_str(), c->width,
             c->height);
  } else if (auto* g = std::get_if<SignalOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s signal %s -> %d value +%llu", st, g->kind ? "ready" : "data", g->peer,
             static_cast<unsigned long long>(g->value));
  } else if (auto* w = std::get_if<WaitFlagOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s wait %s from %d value +%llu", st, w->kind ? "ready" : "data", w->from,
             static_cast<unsigned long long>(w->value));
  } else if (auto* r = std::get_if<RecordOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s record event %d", st, r->event);
  } else if (auto* e = std::get_if<WaitEventOp>(&op.body)) {
    snprintf(buf, sizeof buf, "%s wait event %d", st, e->event);
  } else {
    const char* names[] = {"fwd", "bwd", "clear-out", "zero", "merge-out", "add", "delta", "store"};
    snprintf(buf, sizeof buf, "%s %s", st, names[op.body.index()]);
  }
  return buf;
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
