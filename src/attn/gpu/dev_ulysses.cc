#include "attn/gpu/dev_ulysses.h"

#include <algorithm>

#include "attn/algos/head_split.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace gpu {
namespace {

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

// Consecutive tokens of a rank whose positions advance by a constant stride.
struct Run {
  int64_t row0 = 0, pos0 = 0, stride = 1, count = 1;
};

std::vector<Run> runsOf(const std::vector<int64_t>& pos) {
  std::vector<Run> runs;
  const int64_t n = static_cast<int64_t>(pos.size());
  for (int64_t i = 0; i < n;) {
    Run r{i, pos[i], 1, 1};
    if (i + 1 < n) r.stride = pos[i + 1] - pos[i];
    while (i + r.count < n && pos[i + r.count] - pos[i + r.count - 1] == r.stride) ++r.count;
    runs.push_back(r);
    i += r.count;
  }
  return runs;
}

// Head-side buffers of member m (bytes from the window's start).
struct HeadSide {
  size_t q = 0, k = 0, v = 0, dout = 0, o = 0, lse = 0, delta = 0, dq = 0, dqs = 0, dk = 0, dv = 0, end = 0;
};
// Sequence-side buffers of a rank (after every member's head side).
struct SeqSide {
  size_t delta = 0, dk = 0, dv = 0, stage = 0, end = 0;
};

class UlyssesBuilder {
 public:
  UlyssesBuilder(const Problem& p, bool bwd, int me)
      : p_(p), bwd_(bwd), me_(me), P_(p.nranks), hs_(p.heads.numQ, p.heads.numKV, p.nranks, 1) {
    N_ = p.shape.seqLen;
    D_ = static_cast<size_t>(p.shape.headDim);
    es_ = dtypeSize(p.shape.dtype);
    Hq_ = p.heads.numQ;
    Hkv_ = p.heads.numKV;
    for (int r = 0; r < P_; ++r) runs_.push_back(runsOf(p.tokens[r].pos));
    size_t headMax = 0;
    for (int m = 0; m < P_; ++m) headMax = std::max(headMax, headSide(m).end);
    seqBase_ = align256(headMax);
    size_t seqMax = 0;
    for (int r = 0; r < P_; ++r) seqMax = std::max(seqMax, seqSide(r).end - seqBase_);
    prog_.backward = bwd;
    prog_.arenaBytes = seqBase_;
    prog_.windowBytes = seqBase_ + seqMax;
    prog_.numEvents = 4;
    prog_.numSequences = 2;
  }
  DevProgram build();

 private:
  HeadSide headSide(int m) const {
    const size_t qc = static_cast<size_t>(hs_.q(m).count), kc = static_cast<size_t>(hs_.kv(m).count);
    const size_t n = static_cast<size_t>(N_);
    HeadSide h;
    size_t at = 0;
    auto take = [&at](size_t b) {
      const size_t off = at;
      at += align256(b);
      return off;
    };
    h.q = take(n * qc * D_ * es_);
    h.k = take(n * kc * D_ * es_);
    h.v = take(n * kc * D_ * es_);
    if (!bwd_) {
      h.o = take(n * qc * D_ * es_);
      h.lse = take(qc * n * 4);
    } else {
      h.dout = take(n * qc * D_ * es_);
      h.lse = take(qc * n * 4);
      h.delta = take(qc * n * 4);
      h.dq = take(n * qc * D_ * 4);
      h.dqs = take(n * qc * D_ * es_);
      h.dk = take(n * kc * D_ * 4);
      h.dv = take(n * kc * D_ * 4);
    }
    h.end = at;
    return h;
  }
  SeqSide seqSide(int r) const {
    SeqSide s;
    size_t at = seqBase_;
    auto take = [&at](size_t b) {
      const size_t off = at;
      at += align256(b);
      return off;
    };
    if (bwd_) {
      const size_t T = static_cast<size_t>(p_.tokens[r].size());
      int kcMax = 0;
      for (int m = 0; m < P_; ++m) kcMax = std::max(kcMax, hs_.kv(m).count);
      s.delta = take(static_cast<size_t>(Hq_) * T * 4);
      s.dk = take(T * Hkv_ * D_ * 4);
      s.dv = take(T * Hkv_ * D_ * 4);
      s.stage = take(T * static_cast<size_t>(kcMax) * D_ * 4);
    }
    s.end = at;
    return s;
  }
  void add(uint8_t stream, OpBody b) { prog_.ops.push_back(DevOp{stream, std::move(b)}); }
  Ref win(int m, size_t off) const { return m == me_ ? Ref{Space::kOwn, -1, off} : Ref{Space::kPeer, m, off}; }

  // Rows of rank j's [T][H][D] tensor (heads [h0, h0+hc), element size e) <-> member's
  // [N][hc][D] tensor at j's positions. toHead: push direction.
  void rows(int j, Ref seq, int H, Ref head, HeadRange heads, size_t e, bool toHead, uint8_t stream) {
    if (heads.count == 0) return;
    const size_t seqRow = static_cast<size_t>(H) * D_ * e, headRow = static_cast<size_t>(heads.count) * D_ * e;
    for (const Run& r : runs_[j]) {
      Ref s = seq, h = head;
      s.offset += static_cast<size_t>(r.row0) * seqRow + static_cast<size_t>(heads.first) * D_ * e;
      h.offset += static_cast<size_t>(r.pos0) * headRow;
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
  // Rank j's [H][T] fp32 rows (heads [h0, h0+hc)) <-> member's [hc][N] at j's positions.
  void lseRows(int j, Ref seq, HeadRange heads, Ref head, bool toHead, uint8_t stream) {
    const size_t T = static_cast<size_t>(p_.tokens[j].size()), n = static_cast<size_t>(N_);
    for (int hh = 0; hh < heads.count; ++hh) {
      for (const Run& r : runs_[j]) {
        Ref s = seq, h = head;
        s.offset += ((static_cast<size_t>(heads.first + hh)) * T + static_cast<size_t>(r.row0)) * 4;
        h.offset += (static_cast<size_t>(hh) * n + static_cast<size_t>(r.pos0)) * 4;
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
  // Bytes of one push (inputs of member t from rank j) and one pull (results of t for j).
  uint64_t pushBytes(int j, int t) const {
    const uint64_t T = static_cast<uint64_t>(p_.tokens[j].size());
    const uint64_t qc = static_cast<uint64_t>(hs_.q(t).count), kc = static_cast<uint64_t>(hs_.kv(t).count);
    return bwd_ ? T * (2 * qc * D_ * es_ + 8 * qc + 2 * kc * D_ * es_) : T * (qc + 2 * kc) * D_ * es_;
  }
  uint64_t pullBytes(int j, int t) const {
    const uint64_t T = static_cast<uint64_t>(p_.tokens[j].size());
    const uint64_t qc = static_cast<uint64_t>(hs_.q(t).count), kc = static_cast<uint64_t>(hs_.kv(t).count);
    return bwd_ ? T * (qc * D_ * es_ + 2 * kc * D_ * 4) : T * qc * (D_ * es_ + 4);
  }

  const Problem& p_;
  bool bwd_;
  int me_, P_;
  HeadSplit hs_;
  int64_t N_ = 0;
  size_t D_ = 0, es_ = 0;
  int Hq_ = 0, Hkv_ = 0;
  size_t seqBase_ = 0;
  std::vector<std::vector<Run>> runs_;
  DevProgram prog_;
};

DevProgram UlyssesBuilder::build() {
  const HeadSide mine = headSide(me_);
  const SeqSide seq = seqSide(me_);
  const int64_t T = p_.tokens[me_].size();
  const size_t n = static_cast<size_t>(N_);
  const Ref own{Space::kOwn, -1, 0};
  auto at = [](Space s, size_t off) { return Ref{s, -1, off}; };
  if (bwd_) {
    add(kComputeStream, DeltaOp{at(Space::kOwn, seq.delta), T});
    add(kComputeStream, ZeroOp{at(Space::kOwn, seq.dk), static_cast<size_t>(T) * Hkv_ * D_ * 4});
    add(kComputeStream, ZeroOp{at(Space::kOwn, seq.dv), static_cast<size_t>(T) * Hkv_ * D_ * 4});
  }
  for (int t = 0; t < P_; ++t)
    if (t != me_) add(kComputeStream, SignalOp{t, 1, 1});
  add(kComputeStream, RecordOp{0});

  // Inputs: push my rows of every member's heads into its window.
  add(kCopyStream, WaitEventOp{0});
  for (int t = 0; t < P_; ++t) {
    if (t != me_) add(kCopyStream, WaitFlagOp{t, 1, 1});
    const HeadSide h = headSide(t);
    const HeadRange qh = hs_.q(t), kh = hs_.kv(t);
    rows(me_, at(Space::kUserQ, 0), Hq_, win(t, h.q), qh, es_, true, kCopyStream);
    rows(me_, at(Space::kUserK, 0), Hkv_, win(t, h.k), kh, es_, true, kCopyStream);
    rows(me_, at(Space::kUserV, 0), Hkv_, win(t, h.v), kh, es_, true, kCopyStream);
    if (bwd_) {
      rows(me_, at(Space::kUserDout, 0), Hq_, win(t, h.dout), qh, es_, true, kCopyStream);
      lseRows(me_, at(Space::kUserLse, 0), qh, win(t, h.lse), true, kCopyStream);
      lseRows(me_, at(Space::kOwn, seq.delta), qh, win(t, h.delta), true, kCopyStream);
    }
    if (t != me_) {
      add(kCopyStream, SignalOp{t, 0, 1});
      prog_.bytesSent += pushBytes(me_, t);
      prog_.messagesSent += 1;
      prog_.bytesRecv += pushBytes(t, me_);
      prog_.messagesRecv += 1;
    }
  }
  add(kCopyStream, RecordOp{1});

  // Attention on my heads over the whole sequence.
  add(kComputeStream, WaitEventOp{1});
  for (int t = 0; t < P_; ++t)
    if (t != me_) add(kComputeStream, WaitFlagOp{t, 0, 1});
  const HeadMap hm = hs_.map(me_);
  const Rows all{kWholeSequence, 0, N_};
  if (hm.numQ > 0 && N_ > 0) {
    if (!bwd_) {
      Ref o = own, lse = own, q = own, k = own, v = own;
      o.offset = mine.o, lse.offset = mine.lse, q.offset = mine.q, k.offset = mine.k, v.offset = mine.v;
      add(kComputeStream, FwdTileOp{q, all, k, v, all, o, lse, N_, hm, true});
    } else {
      const size_t qc = static_cast<size_t>(hm.numQ), kc = static_cast<size_t>(hm.numKV);
      add(kComputeStream, ZeroOp{at(Space::kOwn, mine.dq), n * qc * D_ * 4});
      add(kComputeStream, ZeroOp{at(Space::kOwn, mine.dk), n * kc * D_ * 4});
      add(kComputeStream, ZeroOp{at(Space::kOwn, mine.dv), n * kc * D_ * 4});
      BwdTileOp b{at(Space::kOwn, mine.q), at(Space::kOwn, mine.dout), at(Space::kOwn, mine.lse),
                  at(Space::kOwn, mine.delta), N_, all, at(Space::kOwn, mine.k), at(Space::kOwn, mine.v), all,
                  at(Space::kOwn, mine.dq), at(Space::kOwn, mine.dk), at(Space::kOwn, mine.dv), hm};
      add(kComputeStream, b);
      add(kComputeStream, StoreOp{at(Space::kOwn, mine.dq), at(Space::kOwn, mine.dqs), N_,
                                  static_cast<int64_t>(qc * D_)});
    }
  }
  for (int t = 0; t < P_; ++t)
    if (t != me_) add(kComputeStream, SignalOp{t, 0, 2});
  add(kComputeStream, RecordOp{2});

  // Results: pull my rows of every member's results.
  add(kCopyStream, WaitEventOp{2});
  for (int t = 0; t < P_; ++t) {
    if (t != me_) add(kCopyStream, WaitFlagOp{t, 0, 2});
    const HeadSide h = headSide(t);
    const HeadRange qh = hs_.q(t), kh = hs_.kv(t);
    if (!bwd_) {
      rows(me_, at(Space::kUserOut, 0), Hq_, win(t, h.o), qh, es_, false, kCopyStream);
      lseRows(me_, at(Space::kUserLse, 0), qh, win(t, h.lse), false, kCopyStream);
    } else {
      rows(me_, at(Space::kUserDq, 0), Hq_, win(t, h.dqs), qh, es_, false, kCopyStream);
      // fp32 dK/dV of t's K/V heads into the staging rows, then added into my accumulators
      // (a K/V head shared by several members gets each one's part).
      if (kh.count > 0 && T > 0) {
        const int64_t w = static_cast<int64_t>(kh.count) * static_cast<int64_t>(D_);
        for (size_t which : {h.dk, h.dv}) {
          rows(me_, at(Space::kOwn, seq.stage), kh.count, win(t, which), HeadRange{0, kh.count}, 4, false,
               kCopyStream);
          Ref dst = at(Space::kOwn, which == h.dk ? seq.dk : seq.dv);
          dst.offset += static_cast<size_t>(kh.first) * D_ * 4;
          add(kCopyStream, AddOp{dst, at(Space::kOwn, seq.stage), w, T, static_cast<int64_t>(Hkv_ * D_), w, false});
        }
      }
    }
    if (t != me_) add(kCopyStream, SignalOp{t, 1, 2});
    if (t != me_) {
      prog_.bytesRecv += pullBytes(me_, t);
      prog_.messagesRecv += 1;
      prog_.bytesSent += pullBytes(t, me_);
      prog_.messagesSent += 1;
    }
  }
  add(kCopyStream, RecordOp{3});
  add(kComputeStream, WaitEventOp{3});
  for (int t = 0; t < P_; ++t)
    if (t != me_) add(kComputeStream, WaitFlagOp{t, 1, 2});
  if (bwd_) {
    const int64_t kw = static_cast<int64_t>(Hkv_) * static_cast<int64_t>(D_);
    add(kComputeStream, StoreOp{at(Space::kOwn, seq.dk), at(Space::kUserDk, 0), T, kw});
    add(kComputeStream, StoreOp{at(Space::kOwn, seq.dv), at(Space::kUserDv, 0), T, kw});
  }
  return std::move(prog_);
}

}  // namespace

DevProgram buildUlyssesProgram(const Problem& p, bool backward, int rank) {
  return UlyssesBuilder(p, backward, rank).build();
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
