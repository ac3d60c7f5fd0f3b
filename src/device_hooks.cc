// Stubs of the GPU hooks (device_hooks.h) for builds without CUDA; with CUDA they live in
// src/attn/cuda/device_comm.cc.
#include "device_hooks.h"

#include "attn/device_entry.h"
#include "core/result.h"

#if !ATTNCCL_HAVE_CUDA
namespace attnccl {

void DeviceCommDeleter::operator()(DeviceComm*) const {}

attncclResult_t deviceCheckOrdinal(int device) {
  return fail(attncclNotSupported, "config->device is %d but this attnccl was built without CUDA", device);
}

attncclResult_t deviceCommInit(attncclComm*) {
  return fail(attncclNotSupported, "this attnccl was built without CUDA");
}

namespace attn {
namespace {
attncclResult_t noCuda() { return fail(attncclNotSupported, "this attnccl was built without CUDA"); }
}  // namespace

attncclResult_t deviceForward(attncclComm*, const AttnShape&, const FwdTensors&, attncclAlgo_t, cudaStream_t) {
  return noCuda();
}
attncclResult_t deviceBackward(attncclComm*, const AttnShape&, const BwdTensors&, attncclAlgo_t, cudaStream_t) {
  return noCuda();
}
attncclResult_t deviceMergeStates(attncclComm*, void*, float*, const void*, const float*, int64_t, int, int,
                                  attncclDataType_t, cudaStream_t) {
  return noCuda();
}
attncclResult_t deviceHeadAllToAll(attncclComm*, const AttnShape&, const void*, void*, int, int, cudaStream_t) {
  return noCuda();
}
}  // namespace attn

}  // namespace attnccl
#endif
