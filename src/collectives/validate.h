// Argument checks shared by the building-block calls. Each names the call, the argument and its
// value, and leaves the communicator usable.
#pragma once

#include "comm/comm.h"
#include "core/dtype.h"
#include "core/result.h"

namespace attnccl {

inline attncclResult_t checkDtype(const char* fn, attncclDataType_t t) {
  ATTN_ARG(dtypeValid(t), "%s: datatype is %d (not an attncclDataType_t)", fn, static_cast<int>(t));
  return attncclSuccess;
}

inline attncclResult_t checkOp(const char* fn, attncclRedOp_t op) {
  ATTN_ARG(static_cast<int>(op) >= 0 && op < attncclNumOps, "%s: op is %d (not an attncclRedOp_t, 0..%d)", fn,
           static_cast<int>(op), static_cast<int>(attncclNumOps) - 1);
  return attncclSuccess;
}

// A root rank of a rooted call (Broadcast, Reduce).
inline attncclResult_t checkRoot(const char* fn, attncclComm* comm, int root) {
  ATTN_ARG(root >= 0 && root < comm->nranks, "%s: root is %d (the communicator has ranks 0..%d)", fn, root,
           comm->nranks - 1);
  return attncclSuccess;
}

inline attncclResult_t checkStream(const char* fn, attncclComm* comm, cudaStream_t stream) {
  if (comm->config.device == ATTNCCL_DEVICE_CPU) {
    ATTN_ARG(stream == nullptr, "%s: stream is %p but the communicator is on the CPU (pass NULL)", fn,
             static_cast<void*>(stream));
    return attncclSuccess;
  }
  // Device buffers must not reach the host engine.
  return fail(attncclNotSupported, "%s on a CUDA communicator (device %d) is not implemented yet; the attention calls are",
              fn, comm->config.device);
}

// bytes = count * size(t), refusing overflow.
inline attncclResult_t checkBytes(const char* fn, const char* what, size_t count, attncclDataType_t t, size_t factor,
                                  size_t* bytes) {
  size_t sz = dtypeSize(t);
  if (count != 0 && (sz * factor == 0 || count > SIZE_MAX / (sz * factor))) {
    return fail(attncclInvalidArgument, "%s: %s %zu is too large", fn, what, count);
  }
  *bytes = count * sz;
  return attncclSuccess;
}

inline attncclResult_t checkBuffer(const char* fn, const char* what, const void* p, size_t bytes) {
  ATTN_ARG(p != nullptr || bytes == 0, "%s: %s is NULL with %zu bytes to move", fn, what, bytes);
  return attncclSuccess;
}

}  // namespace attnccl
