// Attention of one rank over the whole sequence, forward and backward: what attncclAttnForward
// and attncclAttnBackward do on a communicator of one rank (every algorithm reduces to it), and
// the library's own single-rank oracle for the distributed algorithms. Built on the tiles: one
// tile over all queries against all keys, fp32 accumulators, one rounding to the storage dtype
// at the end.
#pragma once

#include "attn/desc.h"
#include "attn/tensors.h"
#include "core/thread_pool.h"

namespace attnccl {
namespace attn {

// Tensors hold all seqLen tokens in position order (every layout with one rank). t.lse may be
// null. Returns attncclSystemError when scratch memory cannot be had.
attncclResult_t localForward(const AttnShape& s, const FwdTensors& t, ThreadPool& pool);
attncclResult_t localBackward(const AttnShape& s, const BwdTensors& t, ThreadPool& pool);

}  // namespace attn
}  // namespace attnccl
