// The attention rows of the invalid-argument table (tests/reliability/test_invalid_args.cc):
// descriptor fields, the attention collectives (0.1 and Ex calls), head all-to-all, merge, and the
// KV cache.
#pragma once

#include <cstdint>
#include <vector>

#include "attnccl.h"
#include "reliability/invalid_args_table.h"

namespace attnccl {
namespace invalid_args {
// The KV cache's rows (inference). Rows that need a cache create one: a collective, run by both
// ranks in table order like every row.
inline std::vector<Row> kvCacheRows() {
  const attncclResult_t IA = attncclInvalidArgument;
  return {
      {"KvCacheCreate cache NULL", [](Ctx& c) { return kvCreateWith(c, nullptr, nullptr); }, IA, "cache is NULL"},
      {"KvCacheCreate desc NULL",
       [](Ctx& c) {
         attncclKvCache_t k;
         return attncclKvCacheCreate(&k, nullptr, c.comm);
       },
       IA, "desc is NULL"},
      {"KvCacheCreate comm NULL",
       [](Ctx&) {
         attncclKvCache_t k;
         attncclKvCacheDesc_t d = kvDesc();
         return attncclKvCacheCreate(&k, &d, nullptr);
       },
       IA, "comm is NULL"},
      {"KvCacheCreate numHeadsKV 3",
       [](Ctx& c) { return kvCreateWith(c, [](attncclKvCacheDesc_t& d) { d.numHeadsKV = 3; }); }, IA,
       "numHeadsQ 4 is not divisible by desc->numHeadsKV 3"},
      {"KvCacheCreate capacity 0",
       [](Ctx& c) { return kvCreateWith(c, [](attncclKvCacheDesc_t& d) { d.capacity = 0; }); }, IA, "desc->capacity 0"},
      {"KvCacheCreate placement 9",
       [](Ctx& c) {
         return kvCreateWith(c, [](attncclKvCacheDesc_t& d) { d.placement = badEnum<attncclKvPlacement_t>(9); });
       },
       IA, "desc->placement 9"},
      {"KvCacheCreate headDim 300",
       [](Ctx& c) { return kvCreateWith(c, [](attncclKvCacheDesc_t& d) { d.headDim = 300; }); }, IA,
       "desc->headDim 300"},
      {"KvCacheCreate dtype int32",
       [](Ctx& c) { return kvCreateWith(c, [](attncclKvCacheDesc_t& d) { d.dtype = attncclInt32; }); }, IA,
       "desc->dtype 2"},
      {"KvCacheCreate blockTokens past capacity",
       [](Ctx& c) { return kvCreateWith(c, [](attncclKvCacheDesc_t& d) { d.blockTokens = 65; }); }, IA,
       "desc->blockTokens 65"},
      {"KvCacheLength not a cache",
       [](Ctx&) {
         int64_t n;
         return attncclKvCacheLength(reinterpret_cast<attncclKvCache_t>(gFakeComm), &n);
       },
       IA, "is not a KV cache"},
      {"KvCacheAppend cache NULL", [](Ctx& c) { return attncclKvCacheAppend(nullptr, c.a(), c.b(), 1, nullptr); }, IA,
       "cache is NULL"},
      {"KvCacheAppend n past capacity",
       [](Ctx& c) {
         return withKvCache(c, [&](attncclKvCache_t k) { return attncclKvCacheAppend(k, c.a(), c.b(), 65, nullptr); });
       },
       IA, "n 65 more tokens do not fit"},
      {"KvCacheAppend stream",
       [](Ctx& c) {
         return withKvCache(c, [&](attncclKvCache_t k) { return attncclKvCacheAppend(k, c.a(), c.b(), 1, kStream); });
       },
       IA, "stream is 0x10"},
      {"KvCacheAttend n 0",
       [](Ctx& c) {
         return withKvCache(
             c, [&](attncclKvCache_t k) { return attncclKvCacheAttend(k, c.a(), 0, c.b(), nullptr, nullptr); });
       },
       IA, "n 0 must be >= 1"},
      {"KvCacheAttend n past length",
       [](Ctx& c) {
         return withKvCache(
             c, [&](attncclKvCache_t k) { return attncclKvCacheAttend(k, c.a(), 1, c.b(), nullptr, nullptr); });
       },
       IA, "n 1 is more than the cache's length 0"},
      {"KvCacheAttend out NULL",
       [](Ctx& c) {
         return withKvCache(c, [&](attncclKvCache_t k) {
           attncclResult_t r = attncclKvCacheAppend(k, c.a(), c.b(), 2, nullptr);
           return r != attncclSuccess ? r : attncclKvCacheAttend(k, c.a(), 1, nullptr, nullptr, nullptr);
         });
       },
       IA, "out is NULL"},
  };
}

inline std::vector<Row> attentionRows() {
  const attncclResult_t IA = attncclInvalidArgument;
  std::vector<Row> t = {
      // ---- descriptor fields (attncclAttnLocalTokens: the pure path)
      {"LocalTokens desc NULL", [](Ctx&) { int64_t n; return attncclAttnLocalTokens(nullptr, 2, 0, &n, nullptr); },
       IA, "descriptor is NULL"},
      {"LocalTokens nranks 0", [](Ctx& c) { int64_t n; return attncclAttnLocalTokens(&c.desc, 0, 0, &n, nullptr); },
       IA, "nranks 0"},
      {"LocalTokens rank 2 of 2",
       [](Ctx& c) { int64_t n; return attncclAttnLocalTokens(&c.desc, 2, 2, &n, nullptr); }, IA, "rank 2"},
      {"LocalTokens numTokens NULL", [](Ctx& c) { return attncclAttnLocalTokens(&c.desc, 2, 0, nullptr, nullptr); },
       IA, "numTokens is NULL"},
      {"desc magic", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.magic = 1; }); }, IA,
       "magic 0x1"},
      {"desc size", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.size = 16; }); }, IA, "size 16"},
      {"desc dtype int8",
       [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.dtype = attncclInt8; }); }, IA,
       "desc->dtype 0"},
      {"desc dtype 99",
       [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.dtype = badEnum<attncclDataType_t>(99); }); },
       IA, "desc->dtype 99"},
      {"desc seqLen 0", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.seqLen = 0; }); }, IA,
       "desc->seqLen 0"},
      {"desc seqLen huge",
       [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.seqLen = INT64_MAX; }); }, IA,
       "desc->seqLen 9223372036854775807"},
      {"desc numHeadsQ 0", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.numHeadsQ = 0; }); }, IA,
       "desc->numHeadsQ 0"},
      {"desc numHeadsKV -2", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.numHeadsKV = -2; }); },
       IA, "desc->numHeadsKV -2"},
      {"desc heads not divisible",
       [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.numHeadsKV = 3; }); }, IA,
       "not divisible by desc->numHeadsKV 3"},
      {"desc headDim 0", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.headDim = 0; }); }, IA,
       "desc->headDim 0"},
      {"desc headDim 257", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.headDim = 257; }); }, IA,
       "desc->headDim 257"},
      {"desc layout 7",
       [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.layout = badEnum<attncclLayout_t>(7); }); },
       IA, "desc->layout 7"},
      {"desc causal 2", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.causal = 2; }); }, IA,
       "desc->causal 2"},
      {"desc windowLeft -2", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.windowLeft = -2; }); },
       IA, "desc->windowLeft -2"},
      {"desc windowRight -9", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.windowRight = -9; }); },
       IA, "desc->windowRight -9"},
      {"desc softmaxScale NaN",
       [](Ctx& c) {
         return withDesc(c, [](attncclAttnDesc_t& d) { d.softmaxScale = std::numeric_limits<float>::quiet_NaN(); });
       },
       IA, "softmaxScale nan"},
      {"desc softmaxScale inf",
       [](Ctx& c) {
         return withDesc(c, [](attncclAttnDesc_t& d) { d.softmaxScale = std::numeric_limits<float>::infinity(); });
       },
       IA, "softmaxScale inf"},
      {"desc numSeqs -1", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.numSeqs = -1; }); }, IA,
       "desc->numSeqs -1"},
      {"desc numSeqs > seqLen", [](Ctx& c) { return withDesc(c, [](attncclAttnDesc_t& d) { d.numSeqs = 17; }); },
       IA, "desc->numSeqs 17 exceeds"},
      {"desc cuSeqlens not increasing",
       [](Ctx& c) {
         return withDesc(c, [](attncclAttnDesc_t& d) {
           d.numSeqs = 3;
           d.cuSeqlens = kBadCu;
         });
       },
       IA, "cuSeqlens[2] = 8"},
      {"desc cuSeqlens[0]",
       [](Ctx& c) {
         return withDesc(c, [](attncclAttnDesc_t& d) {
           d.numSeqs = 2;
           d.cuSeqlens = kBadCu0;
         });
       },
       IA, "cuSeqlens[0] is 1"},
      {"desc cuSeqlens end",
       [](Ctx& c) {
         return withDesc(c, [](attncclAttnDesc_t& d) {
           d.numSeqs = 2;
           d.cuSeqlens = kBadCuEnd;
         });
       },
       IA, "cuSeqlens[2] = 15"},
      // ---- attention collectives
      {"Forward comm NULL",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), c.a(), c.b(), nullptr, &c.desc, attncclAlgoRing, nullptr, nullptr);
       },
       IA, "comm is NULL"},
      {"Forward desc NULL",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), c.a(), c.b(), nullptr, nullptr, attncclAlgoRing, c.comm, nullptr);
       },
       IA, "descriptor is NULL"},
      {"Forward desc headDim", [](Ctx& c) { return forwardWithDesc(c, [](attncclAttnDesc_t& d) { d.headDim = -1; }); },
       IA, "desc->headDim -1"},
      {"Forward algo 99",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), c.a(), c.b(), nullptr, &c.desc, badEnum<attncclAlgo_t>(99), c.comm,
                                   nullptr);
       },
       IA, "algo 99"},
      {"Forward algo -1",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), c.a(), c.b(), nullptr, &c.desc, badEnum<attncclAlgo_t>(-1), c.comm,
                                   nullptr);
       },
       IA, "algo -1"},
      {"Forward q NULL",
       [](Ctx& c) {
         return attncclAttnForward(nullptr, c.a(), c.a(), c.b(), nullptr, &c.desc, attncclAlgoRing, c.comm, nullptr);
       },
       IA, "q is NULL"},
      {"Forward v NULL",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), nullptr, c.b(), nullptr, &c.desc, attncclAlgoRing, c.comm, nullptr);
       },
       IA, "v is NULL"},
      {"Forward out NULL",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), c.a(), nullptr, nullptr, &c.desc, attncclAlgoRing, c.comm, nullptr);
       },
       IA, "out is NULL"},
      {"Forward stream",
       [](Ctx& c) {
         return attncclAttnForward(c.a(), c.a(), c.a(), c.b(), nullptr, &c.desc, attncclAlgoRing, c.comm, kStream);
       },
       IA, "stream is 0x10"},
      {"ForwardEx tensors NULL", [](Ctx& c) { return attncclAttnForwardEx(nullptr, &c.desc, attncclAlgoRing, c.comm, nullptr); },
       IA, "tensors is NULL"},
      {"ForwardEx magic", [](Ctx& c) { return forwardEx(c, [](attncclAttnTensors_t& t) { t.magic = 7; }); }, IA,
       "tensors->magic 0x7"},
      {"ForwardEx size", [](Ctx& c) { return forwardEx(c, [](attncclAttnTensors_t& t) { t.size = 8; }); }, IA,
       "tensors->size 8"},
      {"ForwardEx q NULL", [](Ctx& c) { return forwardEx(c, [](attncclAttnTensors_t& t) { t.q = nullptr; }); }, IA,
       "tensors->q is NULL"},
      {"ForwardEx token stride -1",
       [](Ctx& c) { return forwardEx(c, [](attncclAttnTensors_t& t) { t.vStrides = {0, -1, 8}; }); }, IA,
       "tensors->vStrides.token is -1"},
      {"ForwardEx head stride 0 (broadcast)",
       [](Ctx& c) { return forwardEx(c, [](attncclAttnTensors_t& t) { t.qStrides = {0, 32, 0}; }); }, IA,
       "tensors->qStrides.head is 0"},
      {"ForwardEx out overlaps itself",
       [](Ctx& c) { return forwardEx(c, [](attncclAttnTensors_t& t) { t.outStrides = {0, 8, 8}; }); }, IA,
       "overlap itself"},
      {"ForwardEx out aliases q",
       [](Ctx& c) { return forwardEx(c, [&c](attncclAttnTensors_t& t) { t.out = c.a(); }); }, IA,
       "output tensors->out"},
      {"ForwardEx lse token stride 3",
       [](Ctx& c) {
         return forwardEx(c, [&c](attncclAttnTensors_t& t) {
           t.lse = c.b() + 4096;
           t.lseStrides = {0, 3, 16};
         });
       },
       IA, "tensors->lseStrides.token is 3"},
      {"ForwardEx batch -1",
       [](Ctx& c) {
         attncclAttnDesc_t d = c.desc;
         d.batch = -1;
         attncclAttnTensors_t t = ATTNCCL_ATTN_TENSORS_INITIALIZER;
         t.q = t.k = t.v = c.a();
         t.out = c.b();
         return attncclAttnForwardEx(&t, &d, attncclAlgoRing, c.comm, nullptr);
       },
       IA, "desc->batch -1"},
      {"BackwardEx dsinks without sinks",
       [](Ctx& c) { return backwardEx(c, [&c](attncclAttnTensors_t& t) { t.dsinks = c.b() + 6144; }); }, IA,
       "tensors->sinks is NULL"},
      {"BackwardEx dq overlaps dk",
       [](Ctx& c) { return backwardEx(c, [&c](attncclAttnTensors_t& t) { t.dk = c.b() + 8; }); }, IA,
       "output tensors->dq"},
      {"Backward lse NULL",
       [](Ctx& c) {
         float* a = c.a();
         return attncclAttnBackward(a, a, a, a, nullptr, a, c.b(), c.b(), c.b(), &c.desc, attncclAlgoRing, c.comm,
                                    nullptr);
       },
       IA, "lse is NULL"},
      {"Backward dout NULL",
       [](Ctx& c) {
         float* a = c.a();
         return attncclAttnBackward(a, a, a, a, a, nullptr, c.b(), c.b(), c.b(), &c.desc, attncclAlgoRing, c.comm,
                                    nullptr);
       },
       IA, "dout is NULL"},
      {"Backward dk NULL",
       [](Ctx& c) {
         float* a = c.a();
         return attncclAttnBackward(a, a, a, a, a, a, c.b(), nullptr, c.b(), &c.desc, attncclAlgoRing, c.comm,
                                    nullptr);
       },
       IA, "dk is NULL"},
      {"Backward algo 6",
       [](Ctx& c) {
         float* a = c.a();
         return attncclAttnBackward(a, a, a, a, a, a, c.b(), c.b(), c.b(), &c.desc, badEnum<attncclAlgo_t>(6),
                                    c.comm, nullptr);
       },
       IA, "algo 6"},
      {"Backward not a comm",
       [](Ctx& c) {
         float* a = c.a();
         return attncclAttnBackward(a, a, a, a, a, a, c.b(), c.b(), c.b(), &c.desc, attncclAlgoRing, fakeComm(),
                                    nullptr);
       },
       IA, "is not a communicator"},
      // ---- head all-to-all
      {"HeadRange numHeads 0", [](Ctx&) { int f, n; return attncclHeadRange(0, 2, 0, &f, &n); }, IA,
       "numHeads 0"},
      {"HeadRange nranks 0", [](Ctx&) { int f, n; return attncclHeadRange(4, 0, 0, &f, &n); }, IA, "nranks 0"},
      {"HeadRange rank 5", [](Ctx&) { int f, n; return attncclHeadRange(4, 2, 5, &f, &n); }, IA, "rank 5"},
      {"HeadRange first NULL", [](Ctx&) { int n; return attncclHeadRange(4, 2, 0, nullptr, &n); }, IA,
       "first is NULL"},
      {"HeadAllToAll numHeads 0",
       [](Ctx& c) { return attncclHeadAllToAll(c.a(), c.b(), 0, attncclSeqToHead, &c.desc, c.comm, nullptr); }, IA,
       "numHeads 0"},
      {"HeadAllToAll direction 5",
       [](Ctx& c) { return attncclHeadAllToAll(c.a(), c.b(), 4, 5, &c.desc, c.comm, nullptr); }, IA,
       "direction 5"},
      {"HeadAllToAll desc NULL",
       [](Ctx& c) { return attncclHeadAllToAll(c.a(), c.b(), 4, attncclSeqToHead, nullptr, c.comm, nullptr); }, IA,
       "desc is NULL"},
      {"HeadAllToAll in NULL",
       [](Ctx& c) { return attncclHeadAllToAll(nullptr, c.b(), 4, attncclSeqToHead, &c.desc, c.comm, nullptr); },
       IA, "in is NULL"},
      {"HeadAllToAll overlap",
       [](Ctx& c) { return attncclHeadAllToAll(c.a(), c.a(), 4, attncclSeqToHead, &c.desc, c.comm, nullptr); }, IA,
       "overlap"},
      {"HeadAllToAll stream",
       [](Ctx& c) { return attncclHeadAllToAll(c.a(), c.b(), 4, attncclHeadToSeq, &c.desc, c.comm, kStream); }, IA,
       "stream is 0x10"},
      // ---- merge
      {"MergeStates tokens -1",
       [](Ctx& c) {
         return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), -1, 2, 8, attncclFloat32, c.comm, nullptr);
       },
       IA, "tokens -1"},
      {"MergeStates numHeads 0",
       [](Ctx& c) { return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), 4, 0, 8, attncclFloat32, c.comm, nullptr); },
       IA, "numHeads 0"},
      {"MergeStates headDim 0",
       [](Ctx& c) { return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), 4, 2, 0, attncclFloat32, c.comm, nullptr); },
       IA, "headDim 0"},
      {"MergeStates int32",
       [](Ctx& c) { return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), 4, 2, 8, attncclInt32, c.comm, nullptr); },
       IA, "datatype 2"},
      {"MergeStates lseB NULL",
       [](Ctx& c) {
         return attncclMergeStates(c.a(), c.a(), c.b(), nullptr, 4, 2, 8, attncclFloat32, c.comm, nullptr);
       },
       IA, "lseB is NULL"},
      {"MergeStates too large",
       [](Ctx& c) {
         return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), INT64_MAX / 2, 2, 8, attncclFloat32, nullptr, nullptr);
       },
       IA, "more than 2^40"},
      {"MergeStates stream without comm",
       [](Ctx& c) { return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), 4, 2, 8, attncclFloat32, nullptr, kStream); },
       IA, "stream is 0x10"},
      {"MergeStates not a comm",
       [](Ctx& c) {
         return attncclMergeStates(c.a(), c.a(), c.b(), c.b(), 4, 2, 8, attncclFloat32, fakeComm(), nullptr);
       },
       IA, "is not a communicator"},
  };
  for (Row& r : kvCacheRows()) t.push_back(r);
  return t;
}

}  // namespace invalid_args
}  // namespace attnccl
