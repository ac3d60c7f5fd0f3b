// What every attention call runs once its arguments are checked: the backend (CUDA, one rank,
// distributed CPU) once per sequence of the batch, and for a backward with trained sinks the
// sinks' gradient, summed over the batch and every rank.
#pragma once

#include "attn/call_tensors.h"
#include "attn/desc.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

// Argument-time check of what the communicator's backend serves: the CUDA backend takes dense
// tensors without sinks (attncclNotSupported with a message otherwise).
attncclResult_t checkBackendServes(const char* fn, const attncclComm* comm, const AttnShape& s, const CallTensors& c);

// Run inside commRun.
attncclResult_t runForward(attncclComm* comm, const AttnShape& s, const CallTensors& c, attncclAlgo_t algo,
                           cudaStream_t stream);
attncclResult_t runBackward(attncclComm* comm, const AttnShape& s, const CallTensors& c, attncclAlgo_t algo,
                            cudaStream_t stream);

}  // namespace attn
}  // namespace attnccl
