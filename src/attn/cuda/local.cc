#include "attn/cuda/local.h"

#include <numeric>
#include <string>
#include <vector>

#include "attn/cuda/check.h"
#include "attn/cuda/kernels.h"
#include "attn/layout.h"

namespace attnccl {
namespace cuda {

using attn::gpu::kLog2e;

void fillTileCommon(const attn::AttnShape& s, attn::gpu::DevMask* mask, attn::gpu::DevHeads* heads) {
  mask->causal = s.causal ? 1 : 0;
  mask->windowLeft = s.windowLeft;
  mask->windowRight = s.windowRight;
  heads->numQ = s.numHeadsQ;
  heads->numKV = s.numHeadsKV;
  heads->qFirst = 0;
  heads->kvFirst = 0;
  heads->group = s.group();
}

attncclResult_t wholeSequence(DeviceComm* d, const attn::AttnShape& s, attn::gpu::DevTokens* out) {
  *out = attn::gpu::DevTokens();
  out->n = s.seqLen;
  if (s.numDocs() <= 1) return attncclSuccess;
  std::string key = "docs:";
  key.append(reinterpret_cast<const char*>(s.cuSeqlens.data()), s.cuSeqlens.size() * sizeof(int64_t));
  const int64_t* doc = d->consts.find(key);
  if (doc == nullptr) {
    std::vector<int64_t> pos(static_cast<size_t>(s.seqLen));
    std::iota(pos.begin(), pos.end(), int64_t{0});
    ATTN_CHECK(d->consts.add(key, attn::documentIds(s, pos), d->stream, &doc));
  }
  out->doc = doc;
  return attncclSuccess;
}

attncclResult_t localForward(DeviceComm* d, const attn::AttnShape& s, const attn::FwdTensors& t) {
  attn::gpu::FwdParams p;
  ATTN_CHECK(wholeSequence(d, s, &p.qt));
  p.kt = p.qt;
  p.q = t.q;
  p.k = t.k;
  p.v = t.v;
  p.ldq = static_cast<int64_t>(s.numHeadsQ) * s.headDim;
  p.ldkv = static_cast<int64_t>(s.numHeadsKV) * s.headDim;
  fillTileCommon(s, &p.mask, &p.heads);
  p.headDim = s.headDim;
  p.scale = s.scale;
  p.scaleLog2 = s.scale * kLog2e;
  p.mode = attn::gpu::kFwdFinal;
  p.o = t.out;
  p.ldo = p.ldq;
  p.lse = t.lse;
  p.ldlse = s.seqLen;
  return forwardTile(s.dtype, p, d->stream);
}

attncclResult_t localBackward(DeviceComm* d, const attn::AttnShape& s, const attn::BwdTensors& t) {
  const int64_t S = s.seqLen;
  const int64_t qw = static_cast<int64_t>(s.numHeadsQ) * s.headDim;
  const int64_t kw = static_cast<int64_t>(s.numHeadsKV) * s.headDim;
  const bool f32 = s.dtype == attncclFloat32;
  // Scratch: Delta, then (16-bit storage) fp32 dQ, dK, dV; 256-byte aligned pieces.
  auto round = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t deltaBytes = round(static_cast<size_t>(S * s.numHeadsQ) * 4);
  const size_t dqBytes = f32 ? 0 : round(static_cast<size_t>(S * qw) * 4);
  const size_t dkBytes = f32 ? 0 : round(static_cast<size_t>(S * kw) * 4);
  char* base = nullptr;
  ATTN_CHECK(d->scratch.ensure(deltaBytes + dqBytes + 2 * dkBytes, &base));
  float* delta = reinterpret_cast<float*>(base);
  float* dq = f32 ? static_cast<float*>(t.dq) : reinterpret_cast<float*>(base + deltaBytes);
  float* dk = f32 ? static_cast<float*>(t.dk) : reinterpret_cast<float*>(base + deltaBytes + dqBytes);
  float* dv = f32 ? static_cast<float*>(t.dv) : reinterpret_cast<float*>(base + deltaBytes + dqBytes + dkBytes);

  ATTN_CHECK(computeDelta(s.dtype, t.out, t.dout, S, s.numHeadsQ, s.headDim, qw, delta, S, d->stream));
  ATTN_CUDA(cudaMemsetAsync(dq, 0, static_cast<size_t>(S * qw) * 4, d->stream));
  ATTN_CUDA(cudaMemsetAsync(dk, 0, static_cast<size_t>(S * kw) * 4, d->stream));
  ATTN_CUDA(cudaMemsetAsync(dv, 0, static_cast<size_t>(S * kw) * 4, d->stream));
  attn::gpu::BwdParams p;
  ATTN_CHECK(wholeSequence(d, s, &p.qt));
  p.kt = p.qt;
  p.q = t.q;
  p.dout = t.dout;
  p.ldq = qw;
  p.k = t.k;
  p.v = t.v;
  p.ldkv = kw;
  p.lse = t.lse;
  p.delta = delta;
  p.ldlse = S;
  fillTileCommon(s, &p.mask, &p.heads);
  p.headDim = s.headDim;
  p.scale = s.scale;
  p.scaleLog2 = s.scale * kLog2e;
  p.dq = dq;
  p.lddq = qw;
  p.dk = dk;
  p.dv = dv;
  p.lddkv = kw;
  ATTN_CHECK(backwardTile(s.dtype, p, d->stream));
  if (!f32) {
    ATTN_CHECK(storeRows(s.dtype, dq, qw, t.dq, qw, S, qw, d->stream));
    ATTN_CHECK(storeRows(s.dtype, dk, kw, t.dk, kw, S, kw, d->stream));
    ATTN_CHECK(storeRows(s.dtype, dv, kw, t.dv, kw, S, kw, d->stream));
  }
  return attncclSuccess;
}

}  // namespace cuda
}  // namespace attnccl
