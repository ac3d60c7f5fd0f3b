#include "attn/auto_choice.h"

#include "attn/desc.h"
#include "attn/tune/tuner.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

attncclResult_t autoAlgorithm(attncclComm_t comm, const attncclAttnDesc_t* desc, bool backward, attncclAlgo_t* algo) {
  if (comm == nullptr || algo == nullptr) return fail(attncclInvalidArgument, "autoAlgorithm: null argument");
  AttnShape shape;
  ATTN_CHECK(resolveDesc(desc, &shape));
  if (comm->nranks == 1) {  // one rank runs local attention, whatever the algorithm
    *algo = attncclAlgoAuto;
    return attncclSuccess;
  }
  return chooseAlgorithm(comm, shape, backward, algo);
}

}  // namespace attn
}  // namespace attnccl
