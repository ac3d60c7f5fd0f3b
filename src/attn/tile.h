// Flash-attention tiles on the CPU: the compute the attention collectives interleave with
// their transfers. A tile takes a block of queries and a block of keys/values, each with the
// global position and document of every token, and works only on visible pairs (the rule of
// attn/visibility.h): blocks no visible pair touches are skipped, fully visible blocks run
// unmasked, partly visible ones are masked element by element.
//
// Forward tiles merge into an fp32 accumulator (O normalised, LSE) with the online softmax, so
// partials from successive K/V blocks (ring steps, pass-Q results) merge exactly and never round
// to the storage dtype in between. Backward tiles (FlashAttention-2 style) recompute P from the
// given LSE and accumulate dQ, dK, dV contributions in fp32.
//
// Tensors are [tokens][heads][headDim] in the storage dtype (fp32, bf16, fp16) with a row
// (token) stride `ld` in elements and, for the caller's inputs, a head stride (`hs*`, 0 = headDim:
// views of a packed QKV buffer or a [H][T][D] tensor are read in place); the head dimension itself
// is always contiguous. fp32 accumulators are [tokens][heads][headDim] with a row stride. LSE and Delta are fp32 [heads][ld].
// Work is spread over the given pool by (head, query block) items; `between` (may be empty) runs
// on the calling thread between its items, for transport progress.
#pragma once

#include <cstdint>
#include <functional>

#include "attnccl.h"
#include "core/thread_pool.h"

namespace attnccl {
namespace attn {

// Metadata of a block of tokens: global positions (strictly increasing) and document indices.
struct Tokens {
  int64_t n = 0;
  const int64_t* pos = nullptr;
  const int64_t* doc = nullptr;
};

struct MaskSpec {
  bool causal = false;
  int64_t windowLeft = -1;   // -1 = unbounded
  int64_t windowRight = -1;  // -1 = unbounded
};

// Which heads a tile sees. The tensors hold `numQ` query heads (global heads qFirst..) and
// `numKV` key/value heads (global heads kvFirst..); query head g uses key/value head g / group.
// With everything local: numQ = Hq, numKV = Hkv, qFirst = kvFirst = 0, group = Hq / Hkv.
struct HeadMap {
  int numQ = 0;
  int numKV = 0;
  int qFirst = 0;
  int kvFirst = 0;
  int group = 1;
  int kvOf(int localQ) const { return (qFirst + localQ) / group - kvFirst; }
};

struct TileCommon {
  attncclDataType_t dtype = attncclFloat32;  // storage dtype of q, k, v, dout
  int headDim = 0;
  float scale = 0.f;
  MaskSpec mask;
  HeadMap heads;
};

struct FwdTileArgs : TileCommon {
  const void* q = nullptr;
  int64_t ldq = 0;
  int64_t hsq = 0;  // head stride of q; 0 = headDim
  Tokens qTok;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ldkv = 0;      // row stride of k (and of v when ldv is 0)
  int64_t ldv = 0;       // 0 = ldkv
  int64_t hsk = 0, hsv = 0;  // head strides; 0 = headDim
  Tokens kTok;
  float* o = nullptr;  // fp32 accumulator, normalised output so far; [qTok.n][numQ][headDim]
  int64_t ldo = 0;
  float* lse = nullptr;  // fp32 [numQ][ldlse]; -inf where nothing is accumulated yet
  int64_t ldlse = 0;
};

// (o, lse) <- merge((o, lse), attention of q against this k/v block over visible pairs).
void fwdTile(const FwdTileArgs& a, ThreadPool& pool, const std::function<void()>& between = nullptr);

struct BwdTileArgs : TileCommon {
  const void* q = nullptr;
  const void* dout = nullptr;  // same rows as q
  int64_t ldq = 0;             // row stride of q (and of dout when lddout is 0)
  int64_t lddout = 0;          // 0 = ldq
  int64_t hsq = 0, hsdout = 0;  // head strides; 0 = headDim
  Tokens qTok;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ldkv = 0;  // row stride of k (and of v when ldv is 0)
  int64_t ldv = 0;   // 0 = ldkv
  int64_t hsk = 0, hsv = 0;
  Tokens kTok;
  const float* lse = nullptr;    // [numQ][ldlse], final LSE of each query row
  const float* delta = nullptr;  // [numQ][ldlse], rowsum(dO * O)
  int64_t ldlse = 0;
  float* dq = nullptr;  // fp32 [qTok.n][numQ][headDim] (+=)
  int64_t lddq = 0;
  float* dk = nullptr;  // fp32 [kTok.n][numKV][headDim] (+=)
  float* dv = nullptr;
  int64_t lddkv = 0;
  // dQ summed in a fixed order (key-block order), bit-identical from run to run for the same
  // pool size; also on with ATTNCCL_DETERMINISTIC=1. Off: the fastest order (lock arrival).
  bool deterministic = false;
};

// dq += dL/dq, dk += dL/dk, dv += dL/dv for this block pair.
void bwdTile(const BwdTileArgs& a, ThreadPool& pool, const std::function<void()>& between = nullptr);

// delta[h][i] = sum_d dout[i][h][d] * out[i][h][d] in fp32 (both in the storage dtype).
void computeDelta(attncclDataType_t dtype, const void* out, const void* dout, int64_t n, int numHeads,
                  int headDim, int64_t ld, float* delta, int64_t lddelta, ThreadPool& pool);
// The same with each tensor's own token and head strides (elements).
void computeDelta(attncclDataType_t dtype, const void* out, int64_t ldOut, int64_t hsOut, const void* dout,
                  int64_t ldDout, int64_t hsDout, int64_t n, int numHeads, int headDim, float* delta,
                  int64_t lddelta, ThreadPool& pool);

// Resets an fp32 accumulator: o = 0, lse = -inf.
void clearAccumulator(float* o, int64_t n, int numHeads, int headDim, int64_t ldo, float* lse, int64_t ldlse);

// (o, lse) <- merge((o, lse), (oB, lseB)) in fp32; rows with lse = -inf hold nothing.
void mergeAccumulators(float* o, float* lse, const float* oB, const float* lseB, int64_t n, int numHeads,
                       int headDim, int64_t ldo, int64_t ldlse, ThreadPool& pool);

// (o, lse) <- merge with attention sinks: each row of head h gets one more logit sinks[h] whose
// value vector is zero, so o *= exp(lse - lse') with lse' = log(exp(lse) + exp(sinks[h])). A row
// that holds nothing (lse = -inf) ends with o = 0 and lse = sinks[h].
void mergeSinks(float* o, float* lse, int64_t n, int numHeads, int headDim, int64_t ldo, int64_t ldlse,
                const float* sinks);

// Frees the scratch memory the tiles keep on the calling thread between calls (the fp32 copies
// of a call's inputs, as large as its K/V). Executors call it when a collective ends;
// localForward/localBackward call it themselves.
void releaseTileScratch();

// Converts between fp32 and the storage dtype, n rows of `width` elements with row strides.
void storeRows(attncclDataType_t dtype, const float* src, int64_t ldsrc, void* dst, int64_t lddst, int64_t n,
               int64_t width, ThreadPool& pool);
void loadRows(attncclDataType_t dtype, const void* src, int64_t ldsrc, float* dst, int64_t lddst, int64_t n,
              int64_t width, ThreadPool& pool);
// The same for [n][numHeads][headDim] tensors whose storage side has a head stride (elements):
// fp32 side dense rows of numHeads*headDim with row stride ldsrc / lddst.
void storeHeads(attncclDataType_t dtype, const float* src, int64_t ldsrc, void* dst, int64_t lddst, int64_t hsdst,
                int64_t n, int numHeads, int headDim, ThreadPool& pool);
// Copies n rows of [numHeads][headDim] storage-dtype elements between two strided views (no
// conversion): the packing of a strided view into dense rows for a transport, and back.
void copyHeads(size_t elemSize, const void* src, int64_t ldsrc, int64_t hssrc, void* dst, int64_t lddst,
               int64_t hsdst, int64_t n, int numHeads, int headDim, ThreadPool& pool);

}  // namespace attn
}  // namespace attnccl
