// Hybrid attention: head all-to-all inside groups of ranks, ring (pass-KV) across groups. The
// formula and the volume are in hybrid.cc.
#pragma once

#include "attn/desc.h"
#include "attn/tensors.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

attncclResult_t hybridForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t);
attncclResult_t hybridBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t);

// The group size G is attn/tune/tuner.h's hybridGroupSize(comm).

}  // namespace attn
}  // namespace attnccl
