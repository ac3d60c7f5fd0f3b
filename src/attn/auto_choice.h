// Internal query for tools (not public API): which algorithm attncclAlgoAuto runs for a
// descriptor on a communicator. It calls the same choice as the collectives (attn/tune/tuner.h's
// chooseAlgorithm, ATTNCCL_ALGO included), so it is collective the first time a communicator
// needs its calibration: every rank must call it in the same order. Only attnccl.h is needed to
// use it (perf tools compile with -Wall -Wextra without the library's internal headers).
#pragma once

#include "attnccl.h"

namespace attnccl {
namespace attn {

attncclResult_t autoAlgorithm(attncclComm_t comm, const attncclAttnDesc_t* desc, bool backward, attncclAlgo_t* algo);

}  // namespace attn
}  // namespace attnccl
