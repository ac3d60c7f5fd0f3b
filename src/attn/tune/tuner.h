// The automatic choice of attncclAlgoAuto: predict every algorithm with the cost model
// (attn/tune/cost_model.h) on this communicator's calibrated figures and take the fastest.
// ATTNCCL_ALGO overrides it. Calibration happens once per communicator, on the first automatic
// call: each rank measures its tile rates (or reads ATTNCCL_TUNE_FILE) and host copy bandwidth,
// and the ranks agree on the slowest figures, so every rank computes the same choice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/tune/cost_model.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

attncclResult_t chooseAlgorithm(attncclComm* comm, const AttnShape& shape, bool backward, attncclAlgo_t* algo);
// The communicator's calibrated model (calibrates on first use; collective then).
attncclResult_t clusterModel(attncclComm* comm, ClusterModel* out);
// The hybrid's groups: G ranks each, member lists in increasing rank order, groups ordered by
// their first member; groupOf / indexOf: each rank's group and its index in it. blocks: group g
// is ranks gG .. gG+G-1 (what the CUDA programs assume).
struct HybridLayout {
  int G = 1;
  std::vector<std::vector<int>> groups;
  std::vector<int> groupOf, indexOf;
  bool blocks = true;
};
// configured > 0 (attncclConfig_t.hybridGroupSize): blocks of hybridGroupOf(P, configured).
// Otherwise from the node (host hash) of every rank: G = the gcd of the nodes' rank counts, and
// each node's ranks, in rank order, cut into groups of G, so every group lies inside one node
// whatever the numbering (2 + 2 interleaved: {0, 2}, {1, 3}; 4 + 2: groups of 2; 3 + 1: G = 1,
// the ring). A pure function: every rank computes it from the same all-gathered facts.
HybridLayout hybridLayoutOf(const std::vector<uint64_t>& nodeOfRank, int configured);
// This communicator's layout. A CUDA communicator keeps to blocks (its device programs assume
// them): where the nodes' groups are not blocks it takes the largest G whose blocks lie inside
// nodes.
HybridLayout hybridLayout(const attncclComm* comm);
// hybridLayout(comm).G.
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

// The inter-node link a communicator measured (measureInterNode in tuner.cc), kept for the
// planner (attnccl-plan --inter-link, and its this-machine preset): where ATTNCCL_TUNE_FILE is
// set, rank 0 writes "<ATTNCCL_TUNE_FILE>.internode" as one line
//   interBandwidth=<bytes/s> interLatency=<s> ranks=<P> partner=<rank>
// interNodeFilePath: that path ("" when ATTNCCL_TUNE_FILE is unset). readInterNodeFile: false
// (and *error naming the file and what is wrong) unless both figures are there and positive.
std::string interNodeFilePath();
bool readInterNodeFile(const std::string& path, LinkModel* link, std::string* error);
bool writeInterNodeFile(const std::string& path, const LinkModel& link, int ranks, int partner);

}  // namespace attn
}  // namespace attnccl
