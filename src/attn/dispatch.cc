// Placeholder until the distributed algorithms land (issue 4).
#include "attn/dispatch.h"

#include "core/result.h"

namespace attnccl {
namespace attn {

attncclResult_t distributedForward(attncclComm* comm, const AttnShape&, const FwdTensors&, attncclAlgo_t) {
  return fail(attncclNotSupported, "attncclAttnForward: communicators of %d ranks are not supported yet",
              comm->nranks);
}
attncclResult_t distributedBackward(attncclComm* comm, const AttnShape&, const BwdTensors&, attncclAlgo_t) {
  return fail(attncclNotSupported, "attncclAttnBackward: communicators of %d ranks are not supported yet",
              comm->nranks);
}
attncclResult_t headAllToAll(attncclComm* comm, const AttnShape&, const void*, void*, int, int) {
  return fail(attncclNotSupported, "attncclHeadAllToAll: not supported yet");
}

}  // namespace attn
}  // namespace attnccl
