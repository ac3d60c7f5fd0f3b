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

// An fp32 buffer: the caller's tensor when it already is fp32, else owned scratch.
float* f32Buffer(attncclDataType_t dtype, void* user, std::vector<float>& own, size_t n) {
  if (dtype == attncclFloat32) return static_cast<float*>(user);
  own.resize(std::max<size_t>(n, 1));
  return own.data();
}

}  // namespace

attncclResult_t localForward(const AttnShape& s, const FwdTensors& t, ThreadPool& pool) {
  try {
    const int64_t T = s.seqLen;
    const int64_t qWidth = static_cast<int64_t>(s.numHeadsQ) * s.headDim;
    const int64_t kvWidth = static_cast<int64_t>(s.numHeadsKV) * s.headDim;
    WholeSequence seq(s);
    std::vector<float> oOwn, lseOwn;
    float* o = f32Buffer(s.dtype, t.out, oOwn, static_cast<size_t>(T * qWidth));
    float* lse = t.lse;
    if (lse == nullptr) {
      lseOwn.resize(static_cast<size_t>(T * s.numHeadsQ));
      lse = lseOwn.data();
    }
    clearAccumulator(o, T, s.numHeadsQ, s.headDim, qWidth, lse, T);
    FwdTileArgs a;
    fillCommon(s, &a);
    a.q = t.q;
    a.ldq = qWidth;
    a.qTok = seq.tokens();
    a.k = t.k;
    a.v = t.v;
    a.ldkv = kvWidth;
    a.kTok = seq.tokens();
    a.o = o;
    a.ldo = qWidth;
    a.lse = lse;
    a.ldlse = T;
    fwdTile(a, pool);
    releaseTileScratch();
    if (s.dtype != attncclFloat32) storeRows(s.dtype, o, qWidth, t.out, qWidth, T, qWidth, pool);
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
    WholeSequence seq(s);
    std::vector<float> delta(static_cast<size_t>(T * s.numHeadsQ));
    computeDelta(s.dtype, t.out, t.dout, T, s.numHeadsQ, s.headDim, qWidth, delta.data(), T, pool);
    std::vector<float> dqOwn, dkOwn, dvOwn;
    float* dq = f32Buffer(s.dtype, t.dq, dqOwn, static_cast<size_t>(T * qWidth));
    float* dk = f32Buffer(s.dtype, t.dk, dkOwn, static_cast<size_t>(T * kvWidth));
    float* dv = f32Buffer(s.dtype, t.dv, dvOwn, static_cast<size_t>(T * kvWidth));
    std::fill(dq, dq + T * qWidth, 0.f);
    std::fill(dk, dk + T * kvWidth, 0.f);
    std::fill(dv, dv + T * kvWidth, 0.f);
    BwdTileArgs a;
    fillCommon(s, &a);
    a.q = t.q;
    a.dout = t.dout;
    a.ldq = qWidth;
    a.qTok = seq.tokens();
    a.k = t.k;
    a.v = t.v;
    a.ldkv = kvWidth;
    a.kTok = seq.tokens();
    a.lse = t.lse;
    a.delta = delta.data();
    a.ldlse = T;
    a.dq = dq;
    a.lddq = qWidth;
    a.dk = dk;
    a.dv = dv;
    a.lddkv = kvWidth;
    bwdTile(a, pool);
    releaseTileScratch();
    if (s.dtype != attncclFloat32) {
      storeRows(s.dtype, dq, qWidth, t.dq, qWidth, T, qWidth, pool);
      storeRows(s.dtype, dk, kvWidth, t.dk, kvWidth, T, kvWidth, pool);
      storeRows(s.dtype, dv, kvWidth, t.dv, kvWidth, T, kvWidth, pool);
    }
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "local attention backward: out of memory (seqLen %lld)",
                static_cast<long long>(s.seqLen));
  }
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
