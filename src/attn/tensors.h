// The caller's tensors of one attention call, as the entry points hand them on to every backend
// (local, distributed CPU, CUDA): pointers only, shapes are in the AttnShape beside them. Kept
// apart from attn/dispatch.h so that the tiles' callers, the algorithms and the device backend
// can name them without the distributed entry points.
//
// One sequence per call: the entry points loop over a batch (api_ex.cc). Each tensor may be a
// strided view: row t, head h of a [T][H][D] tensor starts t*token + h*head elements after its
// pointer (the head dimension itself is contiguous). A stride of 0 means dense: token = H*D,
// head = D. LSE is fp32 [Hq][ldlse] (0 = T).
#pragma once

#include <cstdint>

namespace attnccl {
namespace attn {

struct RowStrides {
  int64_t token = 0;
  int64_t head = 0;
};
inline int64_t tokenStride(RowStrides s, int heads, int headDim) {
  return s.token != 0 ? s.token : static_cast<int64_t>(heads) * headDim;
}
inline int64_t headStride(RowStrides s, int headDim) { return s.head != 0 ? s.head : headDim; }
inline bool isDense(RowStrides s, int heads, int headDim) {
  return tokenStride(s, heads, headDim) == static_cast<int64_t>(heads) * headDim && headStride(s, headDim) == headDim;
}

struct FwdTensors {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;  // may be null
  RowStrides qs{}, ks{}, vs{}, os{};
  int64_t ldlse = 0;  // 0 = T
  // Attention sinks, fp32 [Hq] over the communicator's global heads, or null.
  const float* sinks = nullptr;
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
  RowStrides qs{}, ks{}, vs{}, os{}, dos{}, dqs{}, dks{}, dvs{};
  int64_t ldlse = 0;  // 0 = T
  // (The backward of sinks needs no change here: LSE already includes them; dsinks are summed by
  // the entry point from O, dO and LSE.)
};

}  // namespace attn
}  // namespace attnccl
