// The attention calls of a CUDA communicator (attn/device_entry.h): each takes the
// communicator's device, forks the communicator's stream off the caller's, enqueues, and joins
// back (attn/cuda/device_comm.h) — also when enqueueing fails half-way, so that a stream being
// captured is never left forked.
#include <cuda_runtime.h>

#include "attn/cuda/check.h"
#include "attn/cuda/dev_executor.h"
#include "attn/cuda/device_comm.h"
#include "attn/cuda/kernels.h"
#include "attn/cuda/local.h"
#include "attn/device_entry.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace {

template <typename F>
attncclResult_t onStream(attncclComm* comm, cudaStream_t stream, F work) {
  DeviceComm* d = comm->dev.get();
  if (d == nullptr) return fail(attncclInternalError, "communicator on device %d has no CUDA state", comm->config.device);
  cuda::DeviceGuard guard(d->device);
  ATTN_CHECK(guard.status());
  ATTN_CHECK(cuda::streamBegin(d, stream));
  const attncclResult_t r = work(d);
  const attncclResult_t joined = cuda::streamEnd(d, stream);
  return r != attncclSuccess ? r : joined;
}

attncclResult_t notYet(attncclComm* comm, const char* what) {
  return fail(attncclNotSupported, "%s on a CUDA communicator of %d ranks is not implemented yet (one rank is)", what,
              comm->nranks);
}

}  // namespace

attncclResult_t deviceForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t, attncclAlgo_t algo,
                              cudaStream_t stream) {
  return onStream(comm, stream, [&](DeviceComm* d) {
    return comm->nranks == 1 ? cuda::localForward(d, s, t) : cuda::distributedForward(comm, s, t, algo);
  });
}

attncclResult_t deviceBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t, attncclAlgo_t algo,
                               cudaStream_t stream) {
  return onStream(comm, stream, [&](DeviceComm* d) {
    return comm->nranks == 1 ? cuda::localBackward(d, s, t) : cuda::distributedBackward(comm, s, t, algo);
  });
}

attncclResult_t deviceMergeStates(attncclComm* comm, void* out, float* lse, const void* outB, const float* lseB,
                                  int64_t tokens, int numHeads, int headDim, attncclDataType_t dtype,
                                  cudaStream_t stream) {
  return onStream(comm, stream, [&](DeviceComm* d) {
    return cuda::mergeStates(dtype, out, lse, outB, lseB, tokens, numHeads, headDim, d->stream);
  });
}

attncclResult_t deviceHeadAllToAll(attncclComm* comm, const AttnShape& s, const void* in, void* out, int numHeads,
                                   int direction, cudaStream_t stream) {
  if (comm->nranks > 1) return notYet(comm, "attncclHeadAllToAll");
  return onStream(comm, stream, [&](DeviceComm* d) -> attncclResult_t {
    const size_t bytes = static_cast<size_t>(s.seqLen) * numHeads * s.headDim * dtypeSize(s.dtype);
    if (in != out && bytes > 0) ATTN_CUDA(cudaMemcpyAsync(out, in, bytes, cudaMemcpyDeviceToDevice, d->stream));
    return attncclSuccess;
  });
}

}  // namespace attn
}  // namespace attnccl
