// The distributed attention entry points behind attncclAttnForward/Backward and
// attncclHeadAllToAll for communicators of more than one rank (the algorithms are in src/attn/algos).
// Arguments are already validated; shape is resolved.
#pragma once

#include "attn/desc.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

struct FwdTensors {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;  // may be null
};

struct BwdTensors {
  const void* q;
  const void* k;
  const void* v;
  const void* out;
  const float* lse;
  const void* dout;
  void* dq;
  void* dk;
  void* dv;
  // Optional: Delta = rowsum(dO * O) already computed, fp32 [Hq][rows] (a head-side exchange
  // moves it instead of O: one float per row instead of D elements); `out` is then not read.
  const float* delta = nullptr;
};

attncclResult_t distributedForward(attncclComm* comm, const AttnShape& shape, const FwdTensors& t, attncclAlgo_t algo);
attncclResult_t distributedBackward(attncclComm* comm, const AttnShape& shape, const BwdTensors& t, attncclAlgo_t algo);
attncclResult_t headAllToAll(attncclComm* comm, const AttnShape& shape, const void* in, void* out, int numHeads,
                             int direction);

}  // namespace attn
}  // namespace attnccl
