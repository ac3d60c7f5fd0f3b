// The distributed attention entry points behind attncclAttnForward/Backward and
// attncclHeadAllToAll for communicators of more than one rank (the algorithms are in
// src/attn/algos, their table in algos/registry.h). Arguments are already validated; shape is
// resolved.
#pragma once

#include "attn/desc.h"
#include "attn/tensors.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

attncclResult_t distributedForward(attncclComm* comm, const AttnShape& shape, const FwdTensors& t, attncclAlgo_t algo);
attncclResult_t distributedBackward(attncclComm* comm, const AttnShape& shape, const BwdTensors& t, attncclAlgo_t algo);
attncclResult_t headAllToAll(attncclComm* comm, const AttnShape& shape, const void* in, void* out, int numHeads,
                             int direction);

}  // namespace attn
}  // namespace attnccl
