// The caller's tensors of one attention call, as the entry points hand them on to every backend
// (local, distributed CPU, CUDA): pointers only, shapes are in the AttnShape beside them. Kept
// apart from attn/dispatch.h so that the tiles' callers, the algorithms and the device backend
// can name them without the distributed entry points.
#pragma once

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

}  // namespace attn
}  // namespace attnccl
