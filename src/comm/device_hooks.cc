// Stubs of the communicator's GPU hooks (device_hooks.h) for builds without CUDA; with CUDA they
// live in src/attn/cuda/device_comm.cc. The attention calls' stubs are src/attn/device_stubs.cc.
#include "comm/device_hooks.h"

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
}  // namespace attnccl
#endif
