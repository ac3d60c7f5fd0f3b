// The automatic choice of attncclAlgoAuto: predict every algorithm with the cost model
// (attn/tune/cost_model.h) on this communicator's calibrated figures and take the fastest.
// ATTNCCL_ALGO overrides it. Calibration happens once per communicator, on the first automatic
// call: each rank measures its tile rates (or reads ATTNCCL_TUNE_FILE) and host copy bandwidth,
// and the ranks agree on the slowest figures, so every rank computes the same choice.
#pragma once

#include "attn/tune/cost_model.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

attncclResult_t chooseAlgorithm(attncclComm* comm, const AttnShape& shape, bool backward, attncclAlgo_t* algo);
// The communicator's calibrated model (calibrates on first use; collective then).
attncclResult_t clusterModel(attncclComm* comm, ClusterModel* out);
// Group size the hybrid uses on this communicator: hybridGroupOf(nranks, the configured size or
// the ranks of this node).
int hybridGroupSize(const attncclComm* comm);
// The group size for `wanted` (<= 0: 1) on nranks ranks: the largest divisor of nranks not above
// it. The planner sizes its hybrid with it too.
int hybridGroupOf(int nranks, int wanted);

// Per-process measurements (cached): tile rates with `threads` threads, host copy bandwidth.
// fresh: measure again (unless ATTNCCL_TUNE_FILE supplies them) and replace the cached values,
// for callers that know the machine's speed has changed since (a VM whose host load drifts).
struct Calibration {
  double fwdFlops = 0, bwdFlops = 0, copyBandwidth = 0;
};
Calibration measureCalibration(ThreadPool& pool, bool fresh = false);
// The calibration tile's forward and backward rates (FLOP/s) on `pool`, best of a few runs,
// uncached: the caller decides what else runs meanwhile.
void measureTileRates(ThreadPool& pool, double* fwd, double* bwd);

}  // namespace attn
}  // namespace attnccl
