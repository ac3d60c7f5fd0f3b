#include "attn/local.h"

#include <algorithm>
#include <new>
#include <numeric>
#include <vector>

#include "attn/layout.h"
#include "attn/tile.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

namespace {

// Token metadata of the whole sequence: positions 0..seqLen-1 and their documents.
struct WholeSequence {
  std::vector<int64_t> pos, doc;
  explicit WholeSequence(const AttnShape& s) : pos(static_cast<size_t>(s.seqLen)) {
    std::iota(pos.begin(), pos.end(), int64_t{0});
    doc = documentIds(s, pos);
  }
  Tokens tokens() const { return {static_cast<int64_t>(pos.size()), pos.data(), doc.data()}; }
};

void fillCommon(const AttnShape& s, TileCommon* c) {
  c->dtype = s.dtype;
  c->headDim = s.headDim;
  c->scale = s.scale;
  c->mask.causal = s.causal;
  c->mask.windowLeft = s.windowLeft;
  c->mask.windowRight = s.windowRight;
  c->heads.numQ = s.numHeadsQ;
  c->heads.numKV = s.numHeadsKV;
  c->heads.group = s.group();
}

// An fp32 accumulator: the caller's tensor when it already is dense fp32, else owned scratch.
float* f32Buffer(attncclDataType_t dtype, bool dense, void* user, std::vector<float>& own, size_t n) {
  if (dtype == attncclFloat32 && dense) return static_cast<float*>(user);
  own.resize(std::max<size_t>(n, 1));
  return own.data();
}

// Tile input strides from a caller's view.
void setIn(RowStrides st, int H, int D, int64_t* ld, int64_t* hs) {
  *ld = tokenStride(st, H, D);
  *hs = headStride(st, D);
}

// Accumulator -> the caller's tensor, unless the accumulator is the caller's tensor.
void storeOut(const AttnShape& s, const float* acc, void* dst, RowStrides st, int H, ThreadPool& pool) {
  const int64_t width = static_cast<int64_t>(H) * s.headDim;
  if (static_cast<const void*>(acc) == dst) return;
  storeHeads(s.dtype, acc, width, dst, tokenStride(st, H, s.headDim), headStride(st, s.headDim), s.seqLen, H,
             s.headDim, pool);
}

}  // namespace

attncclResult_t localForward(const AttnShape& s, const FwdTensors& t, ThreadPool& pool) {
  try {
    const int64_t T = s.seqLen;
    const int64_t qWidth = static_cast<int64_t>(s.numHeadsQ) * s.headDim;
    WholeSequence seq(s);
    std::vector<float> oOwn, lseOwn;
    float* o = f32Buffer(s.dtype, isDense(t.os, s.numHeadsQ, s.headDim), t.out, oOwn, static_cast<size_t>(T * qWidth));
    float* lse = t.lse;
    const int64_t ldlse = t.ldlse ? t.ldlse : T;
    if (lse == nullptr) {
      lseOwn.resize(static_cast<size_t>(T * s.numHeadsQ));
      lse = lseOwn.data();
    }
    const int64_t lseLd = t.lse ? ldlse : T;
    clearAccumulator(o, T, s.numHeadsQ, s.headDim, qWidth, lse, lseLd);
    FwdTileArgs a;
    fillCommon(s, &a);
    a.q = t.q;
    setIn(t.qs, s.numHeadsQ, s.headDim, &a.ldq, &a.hsq);
    a.qTok = seq.tokens();
    a.k = t.k;
    a.v = t.v;
    setIn(t.ks, s.numHeadsKV, s.headDim, &a.ldkv, &a.hsk);
    setIn(t.vs, s.numHeadsKV, s.headDim, &a.ldv, &a.hsv);
    a.kTok = seq.tokens();
    a.o = o;
    a.ldo = qWidth;
    a.lse = lse;
    a.ldlse = lseLd;
    fwdTile(a, pool);
    releaseTileScratch();
    if (t.sinks) mergeSinks(o, lse, T, s.numHeadsQ, s.headDim, qWidth, lseLd, t.sinks);
    storeOut(s, o, t.out, t.os, s.numHeadsQ, pool);
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "local attention forward: out of memory (seqLen %lld)",
                static_cast<long long>(s.seqLen));
  }
  return attncclSuccess;
}

attncclResult_t localBackward(const AttnShape& s, const BwdTensors& t, ThreadPool& pool) {
  try {
    const int64_t T = s.seqLen;
    const int64_t qWidth = static_cast<int64_t>(s.numHeadsQ) * s.headDim;
    const int64_t kvWidth = static_cast<int64_t>(s.numHeadsKV) * s.headDim;
    const int Hq = s.numHeadsQ, Hkv = s.numHeadsKV, D = s.headDim;
    WholeSequence seq(s);
    std::vector<float> delta(static_cast<size_t>(T * s.numHeadsQ));
    computeDelta(s.dtype, t.out, tokenStride(t.os, Hq, D), headStride(t.os, D), t.dout, tokenStride(t.dos, Hq, D),
                 headStride(t.dos, D), T, Hq, D, delta.data(), T, pool);
    // The tile reads LSE and Delta with one row stride: padded LSE rows are copied dense.
    std::vector<float> lseDense;
    const float* lse = t.lse;
    if (t.ldlse != 0 && t.ldlse != T) {
      lseDense.resize(static_cast<size_t>(T) * Hq);
      for (int h = 0; h < Hq; ++h) std::copy(t.lse + h * t.ldlse, t.lse + h * t.ldlse + T, lseDense.data() + h * T);
      lse = lseDense.data();
    }
    std::vector<float> dqOwn, dkOwn, dvOwn;
    float* dq = f32Buffer(s.dtype, isDense(t.dqs, Hq, D), t.dq, dqOwn, static_cast<size_t>(T * qWidth));
    float* dk = f32Buffer(s.dtype, isDense(t.dks, Hkv, D), t.dk, dkOwn, static_cast<size_t>(T * kvWidth));
    float* dv = f32Buffer(s.dtype, isDense(t.dvs, Hkv, D), t.dv, dvOwn, static_cast<size_t>(T * kvWidth));
    std::fill(dq, dq + T * qWidth, 0.f);
    std::fill(dk, dk + T * kvWidth, 0.f);
    std::fill(dv, dv + T * kvWidth, 0.f);
    BwdTileArgs a;
    fillCommon(s, &a);
    a.q = t.q;
    a.dout = t.dout;
    setIn(t.qs, Hq, D, &a.ldq, &a.hsq);
    setIn(t.dos, Hq, D, &a.lddout, &a.hsdout);
    a.qTok = seq.tokens();
    a.k = t.k;
    a.v = t.v;
    setIn(t.ks, Hkv, D, &a.ldkv, &a.hsk);
    setIn(t.vs, Hkv, D, &a.ldv, &a.hsv);
    a.kTok = seq.tokens();
    a.lse = lse;
    a.delta = delta.data();
    a.ldlse = T;
    a.dq = dq;
    a.lddq = qWidth;
    a.dk = dk;
    a.dv = dv;
    a.lddkv = kvWidth;
    bwdTile(a, pool);
    releaseTileScratch();
    storeOut(s, dq, t.dq, t.dqs, Hq, pool);
    storeOut(s, dk, t.dk, t.dks, Hkv, pool);
    storeOut(s, dv, t.dv, t.dvs, Hkv, pool);
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "local attention backward: out of memory (seqLen %lld)",
                static_cast<long long>(s.seqLen));
  }
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
