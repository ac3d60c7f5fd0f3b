// The attention calls of a CUDA communicator (attncclComm::dev set): what api.cc hands over once
// the arguments are checked. Each enqueues the call's work on `stream` and returns at once
// (src/attn/cuda/entry.cc); builds without CUDA have stubs that are never reached (no
// communicator can be on a device there).
#pragma once

#include "attn/desc.h"
#include "attn/tensors.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

attncclResult_t deviceForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t, attncclAlgo_t algo,
                              cudaStream_t stream);
attncclResult_t deviceBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t, attncclAlgo_t algo,
                               cudaStream_t stream);
attncclResult_t deviceMergeStates(attncclComm* comm, void* out, float* lse, const void* outB, const float* lseB,
                                  int64_t tokens, int numHeads, int headDim, attncclDataType_t dtype,
                                  cudaStream_t stream);
attncclResult_t deviceHeadAllToAll(attncclComm* comm, const AttnShape& s, const void* in, void* out, int numHeads,
                                   int direction, cudaStream_t stream);

}  // namespace attn
}  // namespace attnccl
