#include "attn/program/dev_ulysses.h"

#include <algorithm>

#include "attn/algos/algos.h"
#include "attn/algos/head_exchange.h"
#include "attn/algos/head_split.h"
#include "attn/layout.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace gpu {
namespace {

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

// Consecutive tokens of a member whose head-side rows advance by a constant stride.
struct Run {
  int64_t row0 = 0, hrow0 = 0, stride = 1, count = 1;
};

std::vector<Run> runsOf(const std::vector<int64_t>& hrows) {
  std::vector<Run> runs;
  const int64_t n = static_cast<int64_t>(hrows.size());
  for (int64_t i = 0; i < n;) {
    Run r{i, hrows[i], 1, 1};
    if (i + 1 < n) r.stride = hrows[i + 1] - hrows[i];
    while (i + r.count < n && hrows[i + r.count] - hrows[i + r.count - 1] == r.stride) ++r.count;
    runs.push_back(r);
    i += r.count;
  }
  return runs;
}

// Head-side buffers of a member holding `qc` Q and `kc` K/V heads of N rows (bytes from the
// window's start). The hybrid keeps dQ/dK/dV in its ring's accumulators instead.
struct HeadSide {
  size_t q = 0, k = 0, v = 0, dout = 0, o = 0, lse = 0, delta = 0, dq = 0, dqs = 0, dk = 0, dv = 0, end = 0;
};

HeadSide headSide(size_t N, size_t qc, size_t kc, size_t D, size_t es, bool bwd, bool hybrid) {
  HeadSide h;
  size_t at = 0;
  auto take = [&at](size_t b) {
    const size_t off = at;
    at += align256(b);
    return off;
  };
  h.q = take(N * qc * D * es);
  h.k = take(N * kc * D * es);
  h.v = take(N * kc * D * es);
  h.lse = take(qc * N * 4);
  if (!bwd || hybrid) h.o = take(N * qc * D * es);  // the hybrid's backward ring derives Delta from O
  if (bwd) {
    h.dout = take(N * qc * D * es);
    h.dqs = take(N * qc * D * es);
    if (!hybrid) {
      h.delta = take(qc * N * 4);
      h.dq = take(N * qc * D * 4);
      h.dk = take(N * kc * D * 4);
      h.dv = take(N * kc * D * 4);
    }
  }
  h.end = at;
  return h;
}

// Sequence-side scratch of a rank with T tokens (backward only): Delta, fp32 dK/dV accumulators
// and the staging rows of pulled fp32 gradients.
struct SeqSide {
  size_t delta = 0, dk = 0, dv = 0, stage = 0, end = 0;
};

SeqSide seqSide(size_t base, size_t T, int Hq, int Hkv, int kcMax, size_t D, bool bwd) {
  SeqSide s;
  size_t at = base;
  auto take = [&at](size_t b) {
    const size_t off = at;
    at += align256(b);
    return off;
  };
  if (bwd) {
    s.delta = take(static_cast<size_t>(Hq) * T * 4);
    s.dk = take(T * Hkv * D * 4);
    s.dv = take(T * Hkv * D * 4);
    s.stage = take(T * static_cast<size_t>(kcMax) * D * 4);
  }
  s.end = at;
  return s;
}

// One rank's part of a head exchange inside its group (members = ranks in member order).
class Exchange {
 public:
  Exchange(const Problem& p, bool bwd, std::vector<int> members, const HeadGroup& g, bool hybrid, DevProgram* prog)
      : bwd_(bwd), members_(std::move(members)), g_(g), hybrid_(hybrid), prog_(prog),
        hs_(p.heads.numQ, p.heads.numKV, static_cast<int>(members_.size()), 1) {
    G_ = static_cast<int>(members_.size());
    self_ = g.self;
    D_ = static_cast<size_t>(p.shape.headDim);
    es_ = dtypeSize(p.shape.dtype);
    Hq_ = p.heads.numQ;
    Hkv_ = p.heads.numKV;
    runs_ = runsOf(g.rows[self_]);
  }
  const HeadSplit& split() const { return hs_; }
  HeadSide side(int m) const {
    return headSide(static_cast<size_t>(g_.total), hs_.q(m).count, hs_.kv(m).count, D_, es_, bwd_, hybrid_);
  }
  int kcMax() const {
    int k = 0;
    for (int m = 0; m < G_; ++m) k = std::max(k, hs_.kv(m).count);
    return k;
  }
  int nextEvent() const { return nextEvent_; }
  void skipEvents(int n) { nextEvent_ += n; }

  void begin(const SeqSide& seq);
  void push(const SeqSide& seq);
  void attendLocal();
  // fp32 dK/dV of member t sit at win(t, dk(t)) / dv(t), rows [N][kc_t][D].
  template <typename DkAt>
  void pull(uint64_t value, const SeqSide& seq, DkAt dkAt);
  void finish(const SeqSide& seq);

 private:
  void add(uint8_t stream, OpBody b) { prog_->ops.push_back(DevOp{stream, std::move(b)}); }
  Ref win(int m, size_t off) const {
    return m == self_ ? Ref{Space::kOwn, -1, off} : Ref{Space::kPeer, members_[m], off};
  }
  static Ref at(Space s, size_t off) { return Ref{s, -1, off}; }
  void rows(Ref seq, int H, Ref head, HeadRange heads, size_t e, bool toHead, uint8_t stream);
  void lseRows(Ref seq, HeadRange heads, Ref head, bool toHead, uint8_t stream);
  uint64_t pushBytes(int from, int to) const;
  uint64_t pullBytes(int owner, int holder) const;

  bool bwd_;
  std::vector<int> members_;
  const HeadGroup& g_;
  bool hybrid_;
  DevProgram* prog_;
  HeadSplit hs_;
  int G_ = 1, self_ = 0;
  size_t D_ = 0, es_ = 0;
  int Hq_ = 0, Hkv_ = 0;
  int nextEvent_ = 0;
  std::vector<Run> runs_;
};

// Rows of my [T][H][D] tensor (heads `heads`, element size e) <-> a member's [N][hc][D] head
// side at my tokens' rows. toHead: the push direction.
void Exchange::rows(Ref seq, int H, Ref head, HeadRange heads, size_t e, bool toHead, uint8_t stream) {
  if (heads.count == 0) return;
  const size_t seqRow = static_cast<size_t>(H) * D_ * e, headRow = static_cast<size_t>(heads.count) * D_ * e;
  for (const Run& r : runs_) {
    Ref s = seq, h = head;
    s.offset += static_cast<size_t>(r.row0) * seqRow + static_cast<size_t>(heads.first) * D_ * e;
    h.offset += static_cast<size_t>(r.hrow0) * headRow;
    CopyOp c;
    c.width = headRow;
    c.height = static_cast<size_t>(r.count);
    c.dst = toHead ? h : s;
    c.src = toHead ? s : h;
    c.dpitch = toHead ? static_cast<size_t>(r.stride) * headRow : seqRow;
    c.spitch = toHead ? seqRow : static_cast<size_t>(r.stride) * headRow;
    add(stream, c);
  }
}

// My [H][T] fp32 rows (heads `heads`) <-> a member's [hc][N] at my tokens' rows.
void Exchange::lseRows(Ref seq, HeadRange heads, Ref head, bool toHead, uint8_t stream) {
  const size_t T = g_.rows[self_].size(), n = static_cast<size_t>(g_.total);
  for (int hh = 0; hh < heads.count; ++hh) {
    for (const Run& r : runs_) {
      Ref s = seq, h = head;
      s.offset += (static_cast<size_t>(heads.first + hh) * T + static_cast<size_t>(r.row0)) * 4;
      h.offset += (static_cast<size_t>(hh) * n + static_cast<size_t>(r.hrow0)) * 4;
      CopyOp c;
      c.dst = toHead ? h : s;
      c.src = toHead ? s : h;
      if (r.stride == 1 || r.count == 1) {
        c.width = c.dpitch = c.spitch = static_cast<size_t>(r.count) * 4;
      } else {
        c.width = 4;
        c.height = static_cast<size_t>(r.count);
        c.dpitch = toHead ? static_cast<size_t>(r.stride) * 4 : 4;
        c.spitch = toHead ? 4 : static_cast<size_t>(r.stride) * 4;
      }
      add(stream, c);
    }
  }
}

uint64_t Exchange::pushBytes(int from, int to) const {
  const uint64_t T = g_.rows[from].size();
  const uint64_t qc = static_cast<uint64_t>(hs_.q(to).count), kc = static_cast<uint64_t>(hs_.kv(to).count);
  if (!bwd_) return T * (qc + 2 * kc) * D_ * es_;
  // Q, dO, K, V, LSE, and Delta (Ulysses) or O (hybrid).
  return T * (2 * qc * D_ * es_ + 4 * qc + 2 * kc * D_ * es_ + (hybrid_ ? qc * D_ * es_ : 4 * qc));
}

uint64_t Exchange::pullBytes(int owner, int holder) const {
  const uint64_t T = g_.rows[owner].size();
  const uint64_t qc = static_cast<uint64_t>(hs_.q(holder).count), kc = static_cast<uint64_t>(hs_.kv(holder).count);
  return bwd_ ? T * (qc * D_ * es_ + 2 * kc * D_ * 4) : T * qc * (D_ * es_ + 4);
}

void Exchange::begin(const SeqSide& seq) {
  if (!bwd_) return;
  const int64_t T = static_cast<int64_t>(g_.rows[self_].size());
  if (!hybrid_) add(kComputeStream, DeltaOp{at(Space::kUserOut, 0), at(Space::kUserDout, 0), at(Space::kOwn, seq.delta), T, Hq_});
  add(kComputeStream, ZeroOp{at(Space::kOwn, seq.dk), static_cast<size_t>(T) * Hkv_ * D_ * 4});
  add(kComputeStream, ZeroOp{at(Space::kOwn, seq.dv), static_cast<size_t>(T) * Hkv_ * D_ * 4});
}

void Exchange::push(const SeqSide& seq) {
  for (int t = 0; t < G_; ++t)
    if (t != self_) add(kComputeStream, SignalOp{members_[t], 1, 1});
  const int e0 = nextEvent_++, e1 = nextEvent_++;
  add(kComputeStream, RecordOp{e0});
  add(kCopyStream, WaitEventOp{e0});
  for (int t = 0; t < G_; ++t) {
    if (t != self_) add(kCopyStream, WaitFlagOp{members_[t], 1, 1});
    const HeadSide h = side(t);
    const HeadRange qh = hs_.q(t), kh = hs_.kv(t);
    rows(at(Space::kUserQ, 0), Hq_, win(t, h.q), qh, es_, true, kCopyStream);
    rows(at(Space::kUserK, 0), Hkv_, win(t, h.k), kh, es_, true, kCopyStream);
    rows(at(Space::kUserV, 0), Hkv_, win(t, h.v), kh, es_, true, kCopyStream);
    if (bwd_) {
      rows(at(Space::kUserDout, 0), Hq_, win(t, h.dout), qh, es_, true, kCopyStream);
      lseRows(at(Space::kUserLse, 0), qh, win(t, h.lse), true, kCopyStream);
      if (hybrid_) {
        rows(at(Space::kUserOut, 0), Hq_, win(t, h.o), qh, es_, true, kCopyStream);
      } else {
        lseRows(at(Space::kOwn, seq.delta), qh, win(t, h.delta), true, kCopyStream);
      }
    }
    if (t != self_) {
      add(kCopyStream, SignalOp{members_[t], 0, 1});
      prog_->bytesSent += pushBytes(self_, t);
      prog_->bytesRecv += pushBytes(t, self_);
      prog_->messagesSent += 1;
      prog_->messagesRecv += 1;
    }
  }
  add(kCopyStream, RecordOp{e1});
  add(kComputeStream, WaitEventOp{e1});
  for (int t = 0; t < G_; ++t)
    if (t != self_) add(kComputeStream, WaitFlagOp{members_[t], 0, 1});
}

// Ulysses: one tile over the group's tokens (table 0) on my heads.
void Exchange::attendLocal() {
  const HeadMap hm = hs_.map(self_);
  const int64_t N = g_.total;
  if (hm.numQ == 0 || N == 0) return;
  const HeadSide h = side(self_);
  const Rows all{0, 0, N, 0};
  const size_t n = static_cast<size_t>(N), qc = static_cast<size_t>(hm.numQ), kc = static_cast<size_t>(hm.numKV);
  if (!bwd_) {
    add(kComputeStream, FwdTileOp{at(Space::kOwn, h.q), all, at(Space::kOwn, h.k), at(Space::kOwn, h.v), all,
                                  at(Space::kOwn, h.o), at(Space::kOwn, h.lse), N, hm, true});
    return;
  }
  add(kComputeStream, ZeroOp{at(Space::kOwn, h.dq), n * qc * D_ * 4});
  add(kComputeStream, ZeroOp{at(Space::kOwn, h.dk), n * kc * D_ * 4});
  add(kComputeStream, ZeroOp{at(Space::kOwn, h.dv), n * kc * D_ * 4});
  add(kComputeStream, BwdTileOp{at(Space::kOwn, h.q), at(Space::kOwn, h.dout), at(Space::kOwn, h.lse),
                                at(Space::kOwn, h.delta), N, all, at(Space::kOwn, h.k), at(Space::kOwn, h.v), all,
                                at(Space::kOwn, h.dq), at(Space::kOwn, h.dk), at(Space::kOwn, h.dv), hm});
  add(kComputeStream, StoreOp{at(Space::kOwn, h.dq), at(Space::kOwn, h.dqs), N, static_cast<int64_t>(qc * D_)});
}

template <typename DkAt>
void Exchange::pull(uint64_t value, const SeqSide& seq, DkAt dkAt) {
  for (int t = 0; t < G_; ++t)
    if (t != self_) add(kComputeStream, SignalOp{members_[t], 0, value});
  const int e2 = nextEvent_++, e3 = nextEvent_++;
  add(kComputeStream, RecordOp{e2});
  add(kCopyStream, WaitEventOp{e2});
  const int64_t T = static_cast<int64_t>(g_.rows[self_].size());
  for (int t = 0; t < G_; ++t) {
    if (t != self_) add(kCopyStream, WaitFlagOp{members_[t], 0, value});
    const HeadSide h = side(t);
    const HeadRange qh = hs_.q(t), kh = hs_.kv(t);
    if (!bwd_) {
      rows(at(Space::kUserOut, 0), Hq_, win(t, h.o), qh, es_, false, kCopyStream);
      lseRows(at(Space::kUserLse, 0), qh, win(t, h.lse), false, kCopyStream);
    } else {
      rows(at(Space::kUserDq, 0), Hq_, win(t, h.dqs), qh, es_, false, kCopyStream);
      // fp32 dK/dV of t's K/V heads into the staging rows, then added into my accumulators (a
      // K/V head shared by several members gets each one's part).
      if (kh.count > 0 && T > 0) {
        const int64_t w = static_cast<int64_t>(kh.count) * static_cast<int64_t>(D_);
        for (int which = 0; which < 2; ++which) {
          rows(at(Space::kOwn, seq.stage), kh.count, win(t, dkAt(t, which)), HeadRange{0, kh.count}, 4, false,
               kCopyStream);
          Ref dst = at(Space::kOwn, which == 0 ? seq.dk : seq.dv);
          dst.offset += static_cast<size_t>(kh.first) * D_ * 4;
          add(kCopyStream, AddOp{dst, at(Space::kOwn, seq.stage), w, T, static_cast<int64_t>(Hkv_ * D_), w, false});
        }
      }
    }
    if (t != self_) {
      add(kCopyStream, SignalOp{members_[t], 1, value});
      prog_->bytesRecv += pullBytes(self_, t);
      prog_->bytesSent += pullBytes(t, self_);
      prog_->messagesRecv += 1;
      prog_->messagesSent += 1;
    }
  }
  add(kCopyStream, RecordOp{e3});
  add(kComputeStream, WaitEventOp{e3});
  for (int t = 0; t < G_; ++t)
    if (t != self_) add(kComputeStream, WaitFlagOp{members_[t], 1, value});
}

void Exchange::finish(const SeqSide& seq) {
  if (!bwd_) return;
  const int64_t T = static_cast<int64_t>(g_.rows[self_].size());
  const int64_t kw = static_cast<int64_t>(Hkv_) * static_cast<int64_t>(D_);
  add(kComputeStream, StoreOp{at(Space::kOwn, seq.dk), at(Space::kUserDk, 0), T, kw});
  add(kComputeStream, StoreOp{at(Space::kOwn, seq.dv), at(Space::kUserDv, 0), T, kw});
}

size_t seqMax(const Problem& p, bool bwd, size_t base, int kcMax) {
  size_t m = 0;
  for (int r = 0; r < p.nranks; ++r) {
    m = std::max(m, seqSide(base, static_cast<size_t>(p.tokens[r].size()), p.heads.numQ, p.heads.numKV, kcMax,
                            static_cast<size_t>(p.shape.headDim), bwd)
                            .end -
                        base);
  }
  return m;
}

}  // namespace

DevProgram buildUlyssesProgram(const Problem& p, bool backward, int rank) {
  DevProgram prog;
  prog.backward = backward;
  std::vector<int> members(p.nranks);
  for (int r = 0; r < p.nranks; ++r) members[r] = r;
  const HeadGroup g = layoutGroup(p.shape, p.nranks, rank);
  Exchange x(p, backward, members, g, false, &prog);
  prog.tables.push_back(RankTokens{g.pos, g.doc});
  size_t head = 0;
  for (int m = 0; m < p.nranks; ++m) head = std::max(head, x.side(m).end);
  const size_t base = align256(head);
  const SeqSide seq = seqSide(base, static_cast<size_t>(p.tokens[rank].size()), p.heads.numQ, p.heads.numKV,
                              x.kcMax(), static_cast<size_t>(p.shape.headDim), backward);
  x.begin(seq);
  x.push(seq);
  x.attendLocal();
  x.pull(2, seq, [&x](int t, int which) { return which == 0 ? x.side(t).dk : x.side(t).dv; });
  x.finish(seq);
  prog.numEvents = x.nextEvent();
  prog.numSequences = 2;
  prog.arenaBytes = base;
  prog.windowBytes = base + seqMax(p, backward, base, x.kcMax());
  return prog;
}

DevProgram buildHybridProgram(const Problem& p, bool backward, int rank, int G) {
  const int P = p.nranks, groups = P / G, g = rank / G, i = rank % G;
  const size_t D = static_cast<size_t>(p.shape.headDim), es = dtypeSize(p.shape.dtype);
  // The group unions (every group's, for the rings) and this rank's group.
  std::vector<HeadGroup> unions(groups);
  for (int k = 0; k < groups; ++k) {
    std::vector<std::vector<int64_t>> pos;
    for (int r = k * G; r < (k + 1) * G; ++r) pos.push_back(p.tokens[r].pos);
    unions[k] = unionGroup(p.shape, pos, k == g ? i : 0);
  }
  const HeadSplit hs(p.heads.numQ, p.heads.numKV, G, 1);
  // Every member index's ring: its window size and rounds decide the common layout and values.
  std::vector<Problem> rp(G);
  std::vector<Schedule> rs(G);
  std::vector<std::vector<Plan>> rplans(G);
  std::vector<size_t> ringBase(G), ringBytes(G, 0);
  uint64_t rounds = 0;
  size_t top = 0;
  for (int j = 0; j < G; ++j) {
    size_t head = 0;
    for (const HeadGroup& u : unions) {
      head = std::max(head, headSide(static_cast<size_t>(u.total), hs.q(j).count, hs.kv(j).count, D, es, backward,
                                     true).end);
    }
    ringBase[j] = align256(head);
    if (hs.q(j).count > 0) {
      rp[j].shape = p.shape;
      rp[j].nranks = groups;
      for (const HeadGroup& u : unions) rp[j].tokens.push_back(RankTokens{u.pos, u.doc});
      rp[j].heads = hs.map(j);
      rs[j] = ringSchedule(rp[j], backward);
      for (int k = 0; k < groups; ++k) rplans[j].push_back(compilePlan(rp[j], rs[j], k));
      ringBytes[j] = buildProgram(rp[j], rs[j], rplans[j], 0).windowBytes;
      rounds = std::max<uint64_t>(rounds, static_cast<uint64_t>(rs[j].numRounds()));
    }
    top = std::max(top, ringBase[j] + ringBytes[j]);
  }
  const size_t base = align256(top);
  const uint64_t pullValue = 2 + rounds;

  DevProgram prog;
  prog.backward = backward;
  std::vector<int> members;
  for (int r = g * G; r < (g + 1) * G; ++r) members.push_back(r);
  Exchange x(p, backward, members, unions[g], true, &prog);
  int kcMax = 0;
  for (int j = 0; j < G; ++j) kcMax = std::max(kcMax, hs.kv(j).count);
  const SeqSide seq = seqSide(base, static_cast<size_t>(p.tokens[rank].size()), p.heads.numQ, p.heads.numKV, kcMax,
                              D, backward);
  x.begin(seq);
  x.push(seq);

  // The ring across groups on the head side: the caller's tensors of the ring program are my
  // head-side buffers, its window follows them, its ranks are the ranks of member index i.
  std::vector<size_t> ringDk(G, 0), ringDv(G, 0);
  for (int j = 0; j < G; ++j) {
    if (ringBytes[j] == 0) continue;
    const size_t arena = buildProgram(rp[j], rs[j], rplans[j], 0).arenaBytes;
    const OwnLayout ol = ownLayout(rp[j], backward, g, arena);
    ringDk[j] = ringBase[j] + ol.dk;
    ringDv[j] = ringBase[j] + ol.dv;
  }
  if (ringBytes[i] > 0) {
    DevProgram ring = buildProgram(rp[i], rs[i], rplans[i], g);
    // dK/dV stay in fp32 in the ring's accumulators (pulled from there, summed over members).
    ring.ops.erase(std::remove_if(ring.ops.begin(), ring.ops.end(),
                                  [](const DevOp& op) {
                                    const auto* s = std::get_if<StoreOp>(&op.body);
                                    return s != nullptr &&
                                           (s->dst.space == Space::kUserDk || s->dst.space == Space::kUserDv);
                                  }),
                   ring.ops.end());
    const HeadSide h = x.side(i);
    Embedding e;
    e.userRegion[static_cast<int>(Space::kUserQ)] = h.q;
    e.userRegion[static_cast<int>(Space::kUserK)] = h.k;
    e.userRegion[static_cast<int>(Space::kUserV)] = h.v;
    e.userRegion[static_cast<int>(Space::kUserDout)] = h.dout;
    e.userRegion[static_cast<int>(Space::kUserOut)] = h.o;
    e.userRegion[static_cast<int>(Space::kUserLse)] = h.lse;
    e.userRegion[static_cast<int>(Space::kUserDq)] = h.dqs;
    e.base = ringBase[i];
    for (int k = 0; k < groups; ++k) e.peers.push_back(k * G + i);
    e.valueShift = 1;
    e.eventShift = x.nextEvent();
    e.tableBase = 0;
    embed(e, &ring);
    prog.ops.insert(prog.ops.end(), ring.ops.begin(), ring.ops.end());
    prog.bytesSent += ring.bytesSent;
    prog.bytesRecv += ring.bytesRecv;
    prog.messagesSent += ring.messagesSent;
    prog.messagesRecv += ring.messagesRecv;
    x.skipEvents(ring.numEvents);
  }
  x.pull(pullValue, seq, [&](int t, int which) { return which == 0 ? ringDk[t] : ringDv[t]; });
  x.finish(seq);
  for (const HeadGroup& u : unions) prog.tables.push_back(RankTokens{u.pos, u.doc});
  prog.numEvents = x.nextEvent();
  prog.numSequences = pullValue;
  prog.arenaBytes = base;
  prog.windowBytes = base + seqMax(p, backward, base, kcMax);
  return prog;
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
