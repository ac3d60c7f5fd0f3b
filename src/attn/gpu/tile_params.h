// Parameters of the GPU attention tiles (the CUDA counterpart of attn/tile.h), shared by the
// host code that fills them and the kernels that read them: plain structs passed by value. The
// visibility rule and the block classification are attn/visibility.h's, under the kernels' names
// (unit-tested on the CPU against the CPU tiles' classification and a brute-force check).
//
// Same contract as the CPU tiles: a block of queries against a block of keys/values, each token
// with a global position and a document; fp32 (O, LSE) accumulators merged with the online
// softmax; backward adds dQ, dK, dV contributions into fp32 accumulators. Tensors are row-major
// [tokens][heads][headDim] with row strides in elements; LSE and Delta are fp32 [heads][ld].
#pragma once

#include <cstdint>

#include "attn/gpu/portable.h"
#include "attn/visibility.h"

namespace attnccl {
namespace attn {
namespace gpu {

// Positions and documents of a block of n tokens. Positions increase and documents never
// decrease. A contiguous run needs no arrays: pos == nullptr means position base + i, and
// doc == nullptr means document docConst for every token.
struct DevTokens {
  const int64_t* pos = nullptr;
  const int64_t* doc = nullptr;
  int64_t base = 0;
  int64_t docConst = 0;
  int64_t n = 0;
};

ATTN_HD int64_t tokPos(const DevTokens& t, int64_t i) { return t.pos != nullptr ? t.pos[i] : t.base + i; }
ATTN_HD int64_t tokDoc(const DevTokens& t, int64_t i) { return t.doc != nullptr ? t.doc[i] : t.docConst; }

struct DevMask {
  int causal = 0;
  int64_t windowLeft = -1;   // -1 = unbounded
  int64_t windowRight = -1;  // -1 = unbounded
};

ATTN_HD bool visiblePair(const DevMask& m, int64_t qp, int64_t qd, int64_t kp, int64_t kd) {
  return pairVisible(m, qp, qd, kp, kd);
}

using attn::BlockSpan;

ATTN_HD BlockSpan spanOf(const DevTokens& t, int64_t b, int64_t e) {
  BlockSpan s;
  s.pos0 = tokPos(t, b);
  s.pos1 = tokPos(t, e - 1);
  s.doc0 = tokDoc(t, b);
  s.doc1 = tokDoc(t, e - 1);
  return s;
}

enum TileClass : int { kTileNone = kBlockNone, kTileFull = kBlockFull, kTilePartial = kBlockPartial };

ATTN_HD int classifyTile(const DevMask& m, const BlockSpan& q, const BlockSpan& k) { return classifySpans(m, q, k); }

// Heads a tile sees (attn::HeadMap): local query head h uses local key/value head
// (qFirst + h) / group - kvFirst.
struct DevHeads {
  int numQ = 0, numKV = 0, qFirst = 0, kvFirst = 0, group = 1;
};

ATTN_HD int kvHeadOf(const DevHeads& h, int q) { return (q + h.qFirst) / h.group - h.kvFirst; }

// Forward epilogues: write the final output in the storage dtype (+ LSE when lse != nullptr;
// a query with no visible key gets O = 0, LSE = -inf), or merge into fp32 accumulators
// (o fp32, lse required; -inf rows hold nothing yet).
enum FwdMode : int { kFwdFinal = 0, kFwdMerge = 1 };

struct FwdParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ldq = 0, ldkv = 0;
  DevTokens qt, kt;
  DevMask mask;
  DevHeads heads;
  int headDim = 0;
  float scale = 0.f;      // softmax scale
  float scaleLog2 = 0.f;  // scale * log2(e)
  int mode = kFwdFinal;
  void* o = nullptr;  // [qt.n][numQ][headDim], ldo: storage dtype (final) or fp32 (merge)
  int64_t ldo = 0;
  float* lse = nullptr;  // [numQ][ldlse]
  int64_t ldlse = 0;
};

struct BwdParams {
  const void* q = nullptr;
  const void* dout = nullptr;  // same rows and stride as q
  int64_t ldq = 0;
  DevTokens qt;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ldkv = 0;
  DevTokens kt;
  const float* lse = nullptr;    // [numQ][ldlse], final LSE of each query
  const float* delta = nullptr;  // [numQ][ldlse], rowsum(dO * O)
  int64_t ldlse = 0;
  DevMask mask;
  DevHeads heads;
  int headDim = 0;
  float scale = 0.f;
  float scaleLog2 = 0.f;
  float* dq = nullptr;  // fp32 [qt.n][numQ][headDim] (+=)
  int64_t lddq = 0;
  float* dk = nullptr;  // fp32 [kt.n][numKV][headDim] (+=)
  float* dv = nullptr;
  int64_t lddkv = 0;
};

// (o, lse) <- merge((o, lse), (ob / 1, lb)) for one row, in fp32: the weights of both sides.
// lb = -inf adds nothing; la = -inf takes b. Returns the merged LSE.
ATTN_HD float mergeWeights(float la, float lb, float* wa, float* wb) {
  if (!(lb > -INFINITY)) {
    *wa = 1.f;
    *wb = 0.f;
    return la;
  }
  if (!(la > -INFINITY)) {
    *wa = 0.f;
    *wb = 1.f;
    return lb;
  }
  const float m = la > lb ? la : lb;
  const float l = m + logf(expf(la - m) + expf(lb - m));
  *wa = expf(la - l);
  *wb = expf(lb - l);
  return l;
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
