// Ulysses: head all-to-all attention (DeepSpeed-Ulysses), any layout, mask, head counts.
//
// Attention is independent per head, so a member holding every token for a subset of heads
// computes exactly the single-device result for those heads. With P members, member m holds the
// Q heads of attncclHeadRange(Hq, P, m) and the K/V heads they use (attn/algos/head_split.h):
//
//   forward                        P = 2, Hq = Hkv = 2, tokens t0..t3 zigzag
//   m0: Q,K,V[t0 t3][h0 h1]  --seq->head-->  m0: Q,K,V[t0 t1 t2 t3][h0]  --attention-->  O[..][h0]
//   m1: Q,K,V[t1 t2][h0 h1]                  m1: Q,K,V[t0 t1 t2 t3][h1]                  O[..][h1]
//   then head->seq of O and LSE:  m0: O[t0 t3][h0 h1], LSE[h0 h1][t0 t3]
//
// The head side holds the tokens in global position order with their true positions and
// documents, so causal, windows and documents are the local rule (any layout). Backward:
// seq->head of Q, dO, LSE, Delta = rowsum(dO * O) (computed on the sequence side: one float per
// row instead of O's D elements), K and V; local backward; head->seq of dQ, and of dK/dV with
// summation where a K/V head is shared by several members (fp32 partials for shared heads).
//
// Pipeline: a member's heads are cut into C = min(4, ceil(Hq/P)) chunks; exchange in(c) moves
// chunk c's inputs, out(c) its results. Later inputs and earlier results travel while chunk c
// computes (the tiles' between-hook progresses the engine):
//
//   post in0 | post in1, wait in0, compute 0, post out0 | post in2, wait in1, compute 1,
//   wait out0, post out1 | ... | wait out(C-1)
//
// Volume per rank r (bytes; T_j tokens of member j, q_j / k_j its Q / K-V heads, es the
// storage element size, D the head dim):
//   forward  sent = sum_{j != r} T_r (q_j + 2 k_j) D es + T_j q_r (D es + 4)
//            recv = sum_{j != r} T_j (q_r + 2 k_r) D es + T_r q_j (D es + 4)
//   backward sent = sum_{j != r} T_r (q_j (2 D es + 8) + 2 k_j D es) + T_j (q_r D es + 2 W_r)
//            recv = sum_{j != r} T_j (q_r (2 D es + 8) + 2 k_r D es) + T_r (q_j D es + 2 W_j)
//   W_m = sum over m's K/V heads of (4 D if the head is shared, else D es).
// With Hq = Hkv = H and even tokens T = S/P a rank sends (P-1)/P * T * H * D * es * 4 in
// forward (+ LSE, which always travels: a rank cannot tell whether another's caller wants it):
// the per-link volume stays constant when S and P grow together.
//
// Extra memory per rank (N = all tokens, Hm / Km its Q / K-V heads, Hc = ceil(Hm / C)):
//   forward  N (Hm + 2 Km) D es + 4 N Hm + 4 N Hc D                       + 2 chunks of staging
//   backward N (2 Hm + 2 Km) D es + 8 N Hm + 4 N Hc D + 8 N Km D + 4 T Hq (+ 8 T Hkv D if shared)
//            + 2 chunks of staging
// i.e. the head-sharded tensors one rank needs for its heads, plus one chunk's fp32 scratch.
#include "attn/algos/ulysses.h"

#include <cstring>
#include <memory>

#include "attn/algos/head_split.h"
#include "attn/comm_state.h"
#include "attn/layout.h"
#include "core/dtype.h"
#include "core/result.h"

namespace attnccl {
namespace attn {
namespace {

constexpr int kMaxChunks = 4;

uint32_t tagIn(int c) { return kTagHeadExchange + 2u * static_cast<uint32_t>(c); }
uint32_t tagOut(int c) { return kTagHeadExchange + 2u * static_cast<uint32_t>(c) + 1u; }

void fillCommon(const AttnShape& s, const HeadMap& heads, TileCommon* c) {
  c->dtype = s.dtype;
  c->headDim = s.headDim;
  c->scale = s.scale;
  c->mask = MaskSpec{s.causal, s.windowLeft, s.windowRight};
  c->heads = heads;
}

using Exchanges = std::vector<std::unique_ptr<HeadExchange>>;

// Runs the pipeline: in(c) posted one chunk ahead, compute(c), out(c) waited one chunk later.
// Staging: two slots per direction, each as large as the largest exchange of that direction.
class Pipeline {
 public:
  Pipeline(const ExecContext& ctx, const Exchanges& in, const Exchanges& out) : ctx_(ctx), in_(in), out_(out) {
    for (size_t c = 0; c < in.size(); ++c) {
      inSend_ = std::max(inSend_, in[c]->sendBytes());
      inRecv_ = std::max(inRecv_, in[c]->recvBytes());
      outSend_ = std::max(outSend_, out[c]->sendBytes());
      outRecv_ = std::max(outRecv_, out[c]->recvBytes());
    }
  }
  size_t stagingBytes() const { return 2 * (inSend_ + inRecv_ + outSend_ + outRecv_) + 8 * 64; }

  template <typename Compute>
  attncclResult_t run(char* staging, Compute compute) {
    Engine& e = *ctx_.engine;
    ThreadPool& pool = *ctx_.pool;
    std::function<void()> between = [&e] { (void)e.progress(); };
    auto slot = [&](size_t send, size_t recv, char** s, char** r) {
      *s = staging;
      *r = staging + (send + 63) / 64 * 64;
      staging = *r + (recv + 63) / 64 * 64;
    };
    char *inS[2], *inR[2], *outS[2], *outR[2];
    for (int k = 0; k < 2; ++k) slot(inSend_, inRecv_, &inS[k], &inR[k]);
    for (int k = 0; k < 2; ++k) slot(outSend_, outRecv_, &outS[k], &outR[k]);
    const int C = static_cast<int>(in_.size());
    ATTN_CHECK(in_[0]->post(e, tagIn(0), inS[0], inR[0], pool, between));
    for (int c = 0; c < C; ++c) {
      if (c + 1 < C) ATTN_CHECK(in_[c + 1]->post(e, tagIn(c + 1), inS[(c + 1) % 2], inR[(c + 1) % 2], pool, between));
      ATTN_CHECK(in_[c]->finish(pool));
      compute(c, between);
      if (c > 0) ATTN_CHECK(out_[c - 1]->finish(pool));
      ATTN_CHECK(out_[c]->post(e, tagOut(c), outS[c % 2], outR[c % 2], pool, between));
    }
    return out_[C - 1]->finish(pool);
  }

 private:
  const ExecContext& ctx_;
  const Exchanges& in_;
  const Exchanges& out_;
  size_t inSend_ = 0, inRecv_ = 0, outSend_ = 0, outRecv_ = 0;
};

// Every chunk's exchange of one direction. Callers build them first without buffers (only the
// sizes matter, to lay out the scratch), then again over the scratch.
template <typename Fields>
void buildExchanges(const HeadGroup& g, int C, HeadDir dir, Fields fields, Exchanges* out) {
  out->clear();
  for (int c = 0; c < C; ++c) out->emplace_back(new HeadExchange(g, dir, fields(c)));
}

ExecContext contextOf(attncclComm* comm) {
  ExecContext ctx;
  ctx.engine = &comm->engine;
  ctx.rank = comm->rank;
  ctx.pool = comm->pool.get();
  ctx.arena = &attnState(comm).arena;
  return ctx;
}

}  // namespace

int ulyssesChunks(const AttnShape& s, int members) {
  int perMember = (s.numHeadsQ + members - 1) / members;
  return std::max(1, std::min(kMaxChunks, perMember));
}

HeadVolume ulyssesVolume(const AttnShape& s, int nranks, int rank, bool backward) {
  const HeadSplit split(s.numHeadsQ, s.numHeadsKV, nranks, 1);
  const uint64_t D = s.headDim, es = dtypeSize(s.dtype);
  auto W = [&](int m) {
    uint64_t w = 0;
    for (int h = split.kv(m).first; h < split.kv(m).end(); ++h) w += split.kvShared(h) ? 4 * D : D * es;
    return w;
  };
  const uint64_t Tr = localTokenCount(s, nranks, rank), qr = split.q(rank).count, kr = split.kv(rank).count;
  HeadVolume v;
  for (int j = 0; j < nranks; ++j) {
    if (j == rank) continue;
    const uint64_t Tj = localTokenCount(s, nranks, j), qj = split.q(j).count, kj = split.kv(j).count;
    if (!backward) {
      v.sent += Tr * (qj + 2 * kj) * D * es + Tj * qr * (D * es + 4);
      v.recv += Tj * (qr + 2 * kr) * D * es + Tr * qj * (D * es + 4);
    } else {
      v.sent += Tr * (qj * (2 * D * es + 8) + 2 * kj * D * es) + Tj * (qr * D * es + 2 * W(rank));
      v.recv += Tj * (qr * (2 * D * es + 8) + 2 * kr * D * es) + Tr * (qj * D * es + 2 * W(j));
    }
  }
  return v;
}

attncclResult_t ulyssesForward(const ExecContext& ctx, const HeadGroup& g, const AttnShape& s, const FwdTensors& t) {
  ThreadPool& pool = *ctx.pool;
  const int me = g.self, D = s.headDim;
  const size_t es = dtypeSize(s.dtype);
  const HeadSplit split(s.numHeadsQ, s.numHeadsKV, g.size(), ulyssesChunks(s, g.size()));
  const int C = split.chunks();
  const HeadRange q = split.q(me), kv = split.kv(me);
  const int64_t N = g.total, T = g.tokens(me);
  const int64_t hc = split.qChunk(me, 0).count;  // the first chunk is the largest

  ScratchLayout L;
  const size_t oQ = L.take(N * q.count * D * es), oK = L.take(N * kv.count * D * es),
               oV = L.take(N * kv.count * D * es), oLse = L.take(N * q.count * sizeof(float)),
               oAcc = L.take(N * hc * D * sizeof(float)),
               oSeqLse = L.take(t.lse ? 0 : T * s.numHeadsQ * sizeof(float));
  char* base = nullptr;
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  auto lseAt = [&] { return reinterpret_cast<float*>(at(oLse)); };
  auto inFields = [&](int c) {
    return std::vector<HeadField>{
        rowsField(t.q, t.qs, s.numHeadsQ, at(oQ), q, D, es, split.all(&HeadSplit::qChunk, c)),
        rowsField(t.k, t.ks, s.numHeadsKV, at(oK), kv, D, es, split.all(&HeadSplit::kvNew, c)),
        rowsField(t.v, t.vs, s.numHeadsKV, at(oV), kv, D, es, split.all(&HeadSplit::kvNew, c))};
  };
  auto outFields = [&](int c) {
    // LSE always travels: a rank cannot tell whether another rank's caller asked for it (a rank
    // without tokens passes NULL); without a caller's buffer it lands in scratch.
    float* seqLse = t.lse ? t.lse : reinterpret_cast<float*>(at(oSeqLse));
    const int64_t seqLd = t.lse && t.ldlse ? t.ldlse : T;
    return std::vector<HeadField>{
        rowsField(t.out, t.os, s.numHeadsQ, at(oQ), q, D, es, split.all(&HeadSplit::qChunk, c)),
        lseField(seqLse, seqLd, lseAt(), N, q, split.all(&HeadSplit::qChunk, c))};
  };
  Exchanges in, out;
  buildExchanges(g, C, HeadDir::kSeqToHead, inFields, &in);
  buildExchanges(g, C, HeadDir::kHeadToSeq, outFields, &out);
  const size_t stagingAt = L.take(Pipeline(ctx, in, out).stagingBytes());
  ATTN_CHECK(ctx.arena->ensure(L.total(), &base));
  buildExchanges(g, C, HeadDir::kSeqToHead, inFields, &in);
  buildExchanges(g, C, HeadDir::kHeadToSeq, outFields, &out);

  char* qh = at(oQ);
  float* acc = reinterpret_cast<float*>(at(oAcc));
  const Tokens all{N, g.pos.data(), g.doc.data()};
  auto compute = [&](int c, const std::function<void()>& between) {
    const HeadRange qc = split.qChunk(me, c), need = split.kvNeed(me, c);
    if (qc.count == 0 || N == 0) return;
    char* qPart = qh + (qc.first - q.first) * D * es;
    FwdTileArgs a;
    fillCommon(s, split.map(me, c), &a);
    a.q = qPart;
    a.ldq = static_cast<int64_t>(q.count) * D;
    a.qTok = all;
    a.k = at(oK) + (need.first - kv.first) * D * es;
    a.v = at(oV) + (need.first - kv.first) * D * es;
    a.ldkv = static_cast<int64_t>(kv.count) * D;
    a.kTok = all;
    a.o = acc;
    a.ldo = static_cast<int64_t>(qc.count) * D;
    a.lse = lseAt() + (qc.first - q.first) * N;
    a.ldlse = N;
    clearAccumulator(a.o, N, qc.count, D, a.ldo, a.lse, a.ldlse);
    fwdTile(a, pool, between);
    // Sinks join in fp32, before the one rounding (heads qc are global heads qc.first..).
    if (t.sinks) mergeSinks(a.o, a.lse, N, qc.count, D, a.ldo, a.ldlse, t.sinks + qc.first);
    // O of the chunk replaces its Q (no longer needed) and travels home from there.
    storeRows(s.dtype, acc, a.ldo, qPart, a.ldq, N, a.ldo, pool);
  };
  return Pipeline(ctx, in, out).run(at(stagingAt), compute);
}

attncclResult_t ulyssesBackward(const ExecContext& ctx, const HeadGroup& g, const AttnShape& s, const BwdTensors& t) {
  ThreadPool& pool = *ctx.pool;
  const int me = g.self, D = s.headDim, Hq = s.numHeadsQ, Hkv = s.numHeadsKV;
  const size_t es = dtypeSize(s.dtype), f4 = sizeof(float);
  const HeadSplit split(Hq, Hkv, g.size(), ulyssesChunks(s, g.size()));
  const int C = split.chunks();
  const bool shared = split.anyShared();
  const HeadRange q = split.q(me), kv = split.kv(me);
  const int64_t N = g.total, T = g.tokens(me);
  const int64_t hc = split.qChunk(me, 0).count;

  ScratchLayout L;
  const size_t oQ = L.take(N * q.count * D * es), oDO = L.take(N * q.count * D * es),
               oK = L.take(N * kv.count * D * es), oV = L.take(N * kv.count * D * es),
               oLse = L.take(N * q.count * f4), oDelta = L.take(N * q.count * f4), oDQ = L.take(N * hc * D * f4),
               oDK = L.take(N * kv.count * D * f4), oDV = L.take(N * kv.count * D * f4),
               oSeqDelta = L.take(T * Hq * f4), oSeqDK = L.take(shared ? T * Hkv * D * f4 : 0),
               oSeqDV = L.take(shared ? T * Hkv * D * f4 : 0);
  char* base = nullptr;
  auto at = [&](size_t off) { return base ? base + off : nullptr; };
  auto f32 = [&](size_t off) { return reinterpret_cast<float*>(at(off)); };
  auto inFields = [&](int c) {
    std::vector<HeadRange> qr = split.all(&HeadSplit::qChunk, c), kr = split.all(&HeadSplit::kvNew, c);
    return std::vector<HeadField>{rowsField(t.q, t.qs, Hq, at(oQ), q, D, es, qr),
                                  rowsField(t.dout, t.dos, Hq, at(oDO), q, D, es, qr),
                                  lseField(t.lse, t.ldlse ? t.ldlse : T, f32(oLse), N, q, qr),
                                  lseField(f32(oSeqDelta), T, f32(oDelta), N, q, qr),
                                  rowsField(t.k, t.ks, Hkv, at(oK), kv, D, es, kr),
                                  rowsField(t.v, t.vs, Hkv, at(oV), kv, D, es, kr)};
  };
  auto outFields = [&](int c) {
    std::vector<HeadRange> ex = split.all(&HeadSplit::kvDoneExclusive, c);
    std::vector<HeadField> f{rowsField(t.dq, t.dqs, Hq, at(oQ), q, D, es, split.all(&HeadSplit::qChunk, c)),
                             rowsField(t.dk, t.dks, Hkv, at(oK), kv, D, es, ex), rowsField(t.dv, t.dvs, Hkv, at(oV), kv, D, es, ex)};
    if (!shared) return f;
    for (auto part : {&HeadSplit::kvDoneSharedLo, &HeadSplit::kvDoneSharedHi}) {
      for (auto bufs : {std::make_pair(oSeqDK, oDK), std::make_pair(oSeqDV, oDV)}) {
        f.push_back(rowsField(at(bufs.first), Hkv, at(bufs.second), kv, D, f4, split.all(part, c)));
        f.back().reduce = true;
      }
    }
    return f;
  };
  Exchanges in, out;
  buildExchanges(g, C, HeadDir::kSeqToHead, inFields, &in);
  buildExchanges(g, C, HeadDir::kHeadToSeq, outFields, &out);
  const size_t stagingAt = L.take(Pipeline(ctx, in, out).stagingBytes());
  ATTN_CHECK(ctx.arena->ensure(L.total(), &base));
  buildExchanges(g, C, HeadDir::kSeqToHead, inFields, &in);
  buildExchanges(g, C, HeadDir::kHeadToSeq, outFields, &out);

  computeDelta(s.dtype, t.out, tokenStride(t.os, Hq, D), headStride(t.os, D), t.dout, tokenStride(t.dos, Hq, D),
               headStride(t.dos, D), T, Hq, D, f32(oSeqDelta), T, pool);
  memset(at(oDK), 0, N * kv.count * D * f4);
  memset(at(oDV), 0, N * kv.count * D * f4);
  if (shared) {
    memset(at(oSeqDK), 0, T * Hkv * D * f4);
    memset(at(oSeqDV), 0, T * Hkv * D * f4);
  }
  const Tokens all{N, g.pos.data(), g.doc.data()};
  const int64_t ldq = static_cast<int64_t>(q.count) * D, ldkv = static_cast<int64_t>(kv.count) * D;
  auto compute = [&](int c, const std::function<void()>& between) {
    const HeadRange qc = split.qChunk(me, c), need = split.kvNeed(me, c);
    if (qc.count > 0 && N > 0) {
      const int64_t qOff = (qc.first - q.first) * D, kOff = (need.first - kv.first) * D;
      BwdTileArgs a;
      fillCommon(s, split.map(me, c), &a);
      a.q = at(oQ) + qOff * es;
      a.dout = at(oDO) + qOff * es;
      a.ldq = ldq;
      a.qTok = all;
      a.k = at(oK) + kOff * es;
      a.v = at(oV) + kOff * es;
      a.ldkv = ldkv;
      a.kTok = all;
      a.lse = f32(oLse) + (qc.first - q.first) * N;
      a.delta = f32(oDelta) + (qc.first - q.first) * N;
      a.ldlse = N;
      a.dq = f32(oDQ);
      a.lddq = static_cast<int64_t>(qc.count) * D;
      a.dk = f32(oDK) + kOff;
      a.dv = f32(oDV) + kOff;
      a.lddkv = ldkv;
      memset(a.dq, 0, N * a.lddq * f4);
      bwdTile(a, pool, between);
      // dQ replaces the chunk's Q, finished exclusive dK/dV their K/V; they travel from there.
      storeRows(s.dtype, a.dq, a.lddq, at(oQ) + qOff * es, ldq, N, a.lddq, pool);
    }
    const HeadRange ex = split.kvDoneExclusive(me, c);
    if (ex.count > 0 && N > 0) {
      const int64_t off = (ex.first - kv.first) * D, width = static_cast<int64_t>(ex.count) * D;
      storeRows(s.dtype, f32(oDK) + off, ldkv, at(oK) + off * es, ldkv, N, width, pool);
      storeRows(s.dtype, f32(oDV) + off, ldkv, at(oV) + off * es, ldkv, N, width, pool);
    }
  };
  ATTN_CHECK(Pipeline(ctx, in, out).run(at(stagingAt), compute));
  // Shared K/V heads arrived as fp32 sums: round them once into the caller's dK/dV.
  const int64_t ldSeq = static_cast<int64_t>(Hkv) * D;
  for (int h = 0; h < Hkv && T > 0; ++h) {
    if (!split.kvShared(h)) continue;
    storeRows(s.dtype, f32(oSeqDK) + h * D, ldSeq, static_cast<char*>(t.dk) + h * headStride(t.dks, D) * es,
              tokenStride(t.dks, Hkv, D), T, D, pool);
    storeRows(s.dtype, f32(oSeqDV) + h * D, ldSeq, static_cast<char*>(t.dv) + h * headStride(t.dvs, D) * es,
              tokenStride(t.dvs, Hkv, D), T, D, pool);
  }
  return attncclSuccess;
}

attncclResult_t ulyssesForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t) {
  HeadGroup g = layoutGroup(s, comm->nranks, comm->rank);
  return ulyssesForward(contextOf(comm), g, s, t);
}

attncclResult_t ulyssesBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t) {
  HeadGroup g = layoutGroup(s, comm->nranks, comm->rank);
  return ulyssesBackward(contextOf(comm), g, s, t);
}

}  // namespace attn
}  // namespace attnccl
