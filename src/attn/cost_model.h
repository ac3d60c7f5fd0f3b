// The timing model shared by the automatic choice (attncclAlgoAuto) and the planner
// (tools/attnccl-plan). A schedule runs round by round (attn/schedule.h); in round k rank r
//
//   computes   c = (visible pairs of its tiles) * 4 * D * Hq / F      (backward: * 2.5)
//   transfers  x = max(bytes sent, bytes received) / W(link) + L(link) * messages
//
// where F is the rank's tile rate and W, L the bandwidth and latency of the link to each peer.
// Transfers run under the round's tiles when a copy engine or a NIC moves them (UCX, GPUs):
// the rank needs max(c, x). On host shared memory the receiving core copies the data itself, so
// the copy adds to the compute: c + x. A round lasts as long as its slowest rank, and the call
// is the sum of its rounds. The head all-to-all algorithms are costed from their exchange
// volumes the same way (see predictUlysses / predictHybrid).
#pragma once

#include <string>
#include <vector>

#include "attn/schedule.h"

namespace attnccl {
namespace attn {

struct LinkModel {
  double bandwidth = 10e9;  // bytes/s per direction
  double latency = 5e-6;    // s per message
  bool copiedByReceiver = false;  // host shm: the receiving core does the copy
};

struct ClusterModel {
  int nranks = 1;
  int ranksPerNode = 1;      // ranks r and s share a node iff r / ranksPerNode == s / ranksPerNode
  double fwdFlops = 50e9;    // tile rate of one rank, FLOP/s
  double bwdFlops = 40e9;
  LinkModel intraNode, interNode;
  const LinkModel& link(int a, int b) const {
    return a / ranksPerNode == b / ranksPerNode ? intraNode : interNode;
  }
};

struct Prediction {
  std::string algorithm;
  double seconds = 0;          // predicted time of the call
  double computeSeconds = 0;   // slowest rank's compute, summed over rounds
  double exposedCommSeconds = 0;  // time beyond the compute critical path
  double idleFraction = 0;     // 1 - (all ranks' compute) / (P * time)
  double bytesPerRank = 0;     // mean bytes sent per rank
  double balance = 1;          // slowest rank's total compute / mean
  int rounds = 0;
  bool supported = true;
};

Prediction predictSchedule(const Problem& p, const Schedule& s, const ClusterModel& m);
// Ulysses: seq->head exchange, attention on Hq/P heads over all tokens, head->seq exchange.
Prediction predictUlysses(const Problem& p, bool backward, const ClusterModel& m);
// Hybrid: Ulysses inside groups of g ranks, ring across the P/g groups.
Prediction predictHybrid(const Problem& p, int groupSize, bool backward, const ClusterModel& m);

// Visible pairs over the whole sequence (for FLOP counts).
double totalVisiblePairs(const Problem& p);

}  // namespace attn
}  // namespace attnccl
