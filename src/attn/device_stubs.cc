// Stubs of the attention calls of a CUDA communicator (attn/device_entry.h) for builds without
// CUDA: no communicator can be on a device there, so they are never reached; with CUDA the calls
// live in src/attn/cuda/entry.cc.
#include "attn/device_entry.h"
#include "core/result.h"

#if !ATTNCCL_HAVE_CUDA
namespace attnccl {

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
