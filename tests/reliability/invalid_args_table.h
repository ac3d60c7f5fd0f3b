// The invalid-argument table's harness (tests/reliability/test_invalid_args.cc): what a row may
// use (a live two-rank communicator, large enough buffers, a valid descriptor), a row, and the
// helpers rows share (one field changed in a config, a descriptor, an Ex call's tensors, a KV
// cache descriptor).
#pragma once

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attnccl.h"

namespace attnccl {
namespace invalid_args {
// What a row's call may use: a live communicator and buffers that are large enough.
struct Ctx {
  attncclComm_t comm = nullptr;
  int nranks = 0;
  attncclAttnDesc_t desc = ATTNCCL_ATTN_DESC_INITIALIZER;  // valid: 16 tokens, 4/2 heads, dim 8
  std::vector<float> buf = std::vector<float>(1 << 14, 1.f);
  float* a() { return buf.data(); }
  float* b() { return buf.data() + (1 << 13); }
};

struct Row {
  const char* name;
  std::function<attncclResult_t(Ctx&)> call;
  attncclResult_t expect;
  const char* needle;  // must appear in attncclGetLastError
};

// Not a communicator: zeroed memory large enough for any field the library reads first.
alignas(64) inline char gFakeComm[4096];
inline attncclComm_t fakeComm() { return reinterpret_cast<attncclComm_t>(gFakeComm); }

inline const cudaStream_t kStream = reinterpret_cast<cudaStream_t>(0x10);

inline attncclResult_t initWith(const std::function<void(attncclConfig_t&)>& edit) {
  attncclUniqueId id;
  attncclResult_t r = attncclGetUniqueId(&id);
  if (r != attncclSuccess) return r;
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  edit(cfg);
  attncclComm_t c = nullptr;
  r = attncclCommInitRank(&c, 1, id, 0, &cfg);
  if (c) attncclCommDestroy(c);
  return r;
}

// Runs attncclAttnLocalTokens on a copy of the valid descriptor with one field changed.
inline attncclResult_t withDesc(Ctx& c, const std::function<void(attncclAttnDesc_t&)>& edit) {
  attncclAttnDesc_t d = c.desc;
  edit(d);
  int64_t n = 0;
  return attncclAttnLocalTokens(&d, 2, 0, &n, nullptr);
}

// The same descriptor change through attncclAttnForward on the communicator.
inline attncclResult_t forwardWithDesc(Ctx& c, const std::function<void(attncclAttnDesc_t&)>& edit) {
  attncclAttnDesc_t d = c.desc;
  edit(d);
  return attncclAttnForward(c.a(), c.a(), c.a(), c.b(), nullptr, &d, attncclAlgoRing, c.comm, nullptr);
}

// attncclAttnForwardEx with contiguous tensors in the buffers, after one change.
inline attncclResult_t forwardEx(Ctx& c, const std::function<void(attncclAttnTensors_t&)>& edit) {
  attncclAttnTensors_t t = ATTNCCL_ATTN_TENSORS_INITIALIZER;
  t.q = t.k = t.v = c.a();
  t.out = c.b();
  edit(t);
  return attncclAttnForwardEx(&t, &c.desc, attncclAlgoRing, c.comm, nullptr);
}

inline attncclResult_t backwardEx(Ctx& c, const std::function<void(attncclAttnTensors_t&)>& edit) {
  attncclAttnTensors_t t = ATTNCCL_ATTN_TENSORS_INITIALIZER;
  t.q = t.k = t.v = t.dout = c.a();
  t.out = c.a();
  t.lse = c.a() + 4096;
  t.dq = c.b();
  t.dk = c.b() + 2048;
  t.dv = c.b() + 4096;
  edit(t);
  return attncclAttnBackwardEx(&t, &c.desc, attncclAlgoRing, c.comm, nullptr);
}

template <typename E>
E badEnum(int v) {
  E e;
  static_assert(sizeof(E) == sizeof(int), "enum is int-sized");
  memcpy(&e, &v, sizeof v);
  return e;
}

inline const int64_t kBadCu[] = {0, 8, 8, 16};     // not increasing
inline const int64_t kBadCu0[] = {1, 8, 16};       // does not start at 0
inline const int64_t kBadCuEnd[] = {0, 8, 15};     // does not end at seqLen

// A valid KV cache descriptor: fp32, 4/2 heads, dim 8, 64 positions.
inline attncclKvCacheDesc_t kvDesc() {
  attncclKvCacheDesc_t d = ATTNCCL_KV_CACHE_DESC_INITIALIZER;
  d.numHeadsQ = 4;
  d.numHeadsKV = 2;
  d.headDim = 8;
  d.capacity = 64;
  return d;
}

// attncclKvCacheCreate with one descriptor field changed (a bad field fails before any
// communication; a cache made anyway is destroyed). k NULL: the cache argument is NULL.
inline attncclResult_t kvCreateWith(Ctx& c, attncclKvCache_t* k, const std::function<void(attncclKvCacheDesc_t&)>& edit) {
  attncclKvCacheDesc_t d = kvDesc();
  if (edit) edit(d);
  attncclResult_t r = attncclKvCacheCreate(k, &d, c.comm);
  if (r == attncclSuccess) attncclKvCacheDestroy(*k);
  return r;
}
inline attncclResult_t kvCreateWith(Ctx& c, const std::function<void(attncclKvCacheDesc_t&)>& edit) {
  attncclKvCache_t k = nullptr;
  return kvCreateWith(c, &k, edit);
}

// Runs call on a fresh valid cache (created collectively), then destroys it; returns the call's
// result, its message the last error.
inline attncclResult_t withKvCache(Ctx& c, const std::function<attncclResult_t(attncclKvCache_t)>& call) {
  attncclKvCacheDesc_t d = kvDesc();
  attncclKvCache_t k = nullptr;
  attncclResult_t r = attncclKvCacheCreate(&k, &d, c.comm);
  if (r != attncclSuccess) return r;
  r = call(k);
  attncclKvCacheDestroy(k);  // a success: the call's message stays the last error
  return r;
}

}  // namespace invalid_args
}  // namespace attnccl
