// The CPU executor of schedules (attn/schedule.h): runs one rank's compiled plan round by round,
// posting the round's transfers, computing its tiles on the rank's pool while thread 0 keeps the
// transfers moving, then merging what arrived. Accumulators are fp32 from the first tile to the
// final rounding into the caller's dtype.
#pragma once

#include <vector>

#include "attn/comm_state.h"
#include "attn/plan.h"
#include "attn/schedule.h"
#include "attn/tensors.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

// Where a schedule runs: an engine (the communicator's, or a group view's for the hybrid's ring
// level, attn/group_view.h), this rank's index in it, the compute pool and the scratch arena.
struct ExecContext {
  Engine* engine = nullptr;
  int rank = 0;
  ThreadPool* pool = nullptr;
  Arena* arena = nullptr;
};

// Host buffers a round's sends read from (packed strided rows, backward LSE and Delta rows):
// taken during a round, all given back at the next (its sends completed in the round's wait),
// their capacity kept between rounds and calls.
class StagingPool {
 public:
  float* take(size_t floats);
  void reset() { used_ = 0; }
  size_t bytes() const;

 private:
  std::vector<std::vector<float>> bufs_;  // a buffer's storage stays put when bufs_ grows
  size_t used_ = 0;
};

// One transfer of a round and the segments it posts.
struct RoundPost {
  const PlannedTransfer* t = nullptr;
  SlotSegments seg;
};

// The storage of a call's fp32 accumulators (forward O and LSE; backward dQ, dK, dV and Delta)
// and of its host staging, kept between calls of one shape (attn/plan_cache.h): a call resizes
// and fills it exactly as fresh vectors would be, so only the allocations go.
struct ExecScratch {
  std::vector<float> o, lse, dq, dk, dv, delta;
  std::vector<float> packedK, packedV;  // the rank's own K/V as dense rows, when strided views
  std::vector<float> lseDense;          // backward: a padded LSE copied dense
  StagingPool staging;
  std::vector<RoundPost> posts;
  size_t bytes() const;
};

// Tensors hold this rank's tokens of the problem ([T][heads.numQ][D] etc., T = tokens[rank]).
// plan is compilePlan(p, s, ctx.rank); the overloads without one compile it (and use fresh
// scratch).
attncclResult_t executeForward(const ExecContext& ctx, const Problem& p, const Schedule& s, const Plan& plan,
                               const FwdTensors& t, ExecScratch* scratch);
attncclResult_t executeBackward(const ExecContext& ctx, const Problem& p, const Schedule& s, const Plan& plan,
                                const BwdTensors& t, ExecScratch* scratch);
attncclResult_t executeForward(const ExecContext& ctx, const Problem& p, const Schedule& s, const FwdTensors& t);
attncclResult_t executeBackward(const ExecContext& ctx, const Problem& p, const Schedule& s, const BwdTensors& t);

}  // namespace attn
}  // namespace attnccl
