// The tensors of one attention call as the public entry points receive them (0.2: batch, strided
// views, attention sinks), validated and resolved into one FwdTensors / BwdTensors per sequence of
// the batch. The backends see one sequence at a time (attn/tensors.h); the entry points loop over
// the batch inside one call (api_ex.cc).
//
// A view is (pointer, batch, token, head strides in elements); the head dimension is contiguous.
// Contiguous tensors resolve to batch = T*H*D, token = H*D, head = D; LSE (fp32) to batch = Hq*T,
// head = T, token = 1.
#pragma once

#include <cstdint>

#include "attn/desc.h"
#include "attn/tensors.h"
#include "attnccl.h"

namespace attnccl {
namespace attn {

struct TensorView {
  const char* ptr = nullptr;
  int64_t batch = 0, token = 0, head = 0;  // resolved, elements
  const char* at(int64_t b, size_t elemSize) const {
    return ptr == nullptr ? nullptr : ptr + b * batch * static_cast<int64_t>(elemSize);
  }
  RowStrides rows() const { return {token, head}; }
};

struct CallTensors {
  bool backward = false;
  int64_t batch = 1;
  int64_t tokens = 0;  // this rank's tokens of each sequence
  size_t elemSize = 0;
  TensorView q, k, v, out, dout, dq, dk, dv;
  TensorView lse;  // fp32; token stride 1
  const float* sinks = nullptr;
  float* dsinks = nullptr;

  // The tensors of sequence b of the batch.
  FwdTensors forward(int64_t b) const;
  BwdTensors backwardOf(int64_t b) const;
  // Every tensor dense and LSE [Hq][T]: what the CUDA backend takes (it has no strided views yet).
  bool allDense(const AttnShape& s) const;
};

// Validates an attncclAttnTensors_t for forward (reads q, k, v, sinks; writes out, lse) or
// backward (reads q, k, v, out, lse, dout, sinks; writes dq, dk, dv, dsinks) of the shape, this
// rank holding `tokens` tokens of each of `batch` sequences: the struct's magic and size, every
// pointer this rank needs, every stride (negative, a zero stride over more than one element, an
// output view that overlaps itself, an LSE token stride other than 0 or 1), and outputs that
// overlap an input or another output. Each failure names the field and its value.
attncclResult_t resolveCallTensors(const char* fn, const attncclAttnTensors_t* t, const AttnShape& s, int64_t batch,
                                   int64_t tokens, bool backward, CallTensors* out);

// The 0.1 calls' tensors: contiguous [batch][T][H][D], LSE [batch][Hq][T], no sinks.
CallTensors contiguousCallTensors(const AttnShape& s, int64_t batch, int64_t tokens, bool backward, const void* q,
                                  const void* k, const void* v, const void* out, const float* lse, const void* dout,
                                  void* dq, void* dk, void* dv);

}  // namespace attn
}  // namespace attnccl
