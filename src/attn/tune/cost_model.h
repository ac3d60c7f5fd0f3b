// The timing model shared by the automatic choice (attncclAlgoAuto) and the planner
// (tools/attnccl-plan). It runs a schedule (attn/schedule.h) step by step as the executors do:
// in round k rank r posts the round's transfers, computes its tiles while they move, waits for
// them, merges what arrived home, and goes on to round k+1. No global barrier: a round starts
// when the rank's previous round ended, a transfer completes once both ends have posted it and
// its bytes have crossed the link.
//
//   compute   c = sum over tasks of ((visible pairs + maskRowPairs * staircase rows)
//                 * 4 D Hq / F + taskOverhead [+ the task's fp32 accumulator read and write
//                 at memBandwidth])                                                (bwd: 2.5 x)
//             A staircase row sees some but not all of the block's keys, up to a different key
//             than the row before (a causal diagonal, a window's edge, a striped layout): it
//             costs the tile more than its visible pairs, the blocks it touches are computed
//             and then masked.
//   transfer  bytes / W(link) + L(link) per message, from max(start of sender, start of receiver);
//             across nodes on a shared node link (interNodeShared), bytes = all the round's bytes
//             leaving the sender's node or entering the receiver's, whichever is more (the
//             transfers of a round move at once and share the link fairly)
//   copies    on host shared memory the receiving core copies the bytes itself: they add to its
//             busy time (c + copy) as well as bounding the transfer
//   merges    arriving partial results (Out, dQ, dK/dV items): 3 x bytes / memBandwidth
//   round     end = max(start + busy, completion of every transfer of the round, sent or
//             received: the executor waits for both)
//
// Host CPUs: when the ranks of a node have more compute threads than the node has cores
// (coresPerNode), they share the cores. A round's busy times are then stretched so the round
// takes at least the node's total core-seconds / cores (processor sharing, McNaughton's bound:
// max(longest job, total work / cores)); tile rates F are per rank with threadsPerRank threads.
//
// The head all-to-all algorithms are costed from their exchange volumes (predictUlysses,
// predictHybrid's group level).
#pragma once

#include <string>
#include <vector>

#include "attn/schedule.h"
#include "attnccl.h"

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
  double fwdFlops = 50e9;    // tile rate of one rank, FLOP/s over visible pairs
  double bwdFlops = 40e9;
  LinkModel intraNode, interNode;
  // The ranks of a node share one link to the other nodes (a host's NIC, CPU clusters): the
  // node's transfers that cross at the same time split interNode's bandwidth, each direction on
  // its own. false: every rank has interNode to itself (a NIC per GPU, as in DGX H100 nodes).
  bool interNodeShared = false;
  // Host CPUs: cores one node's ranks share (0 = every rank computes on its own device) and the
  // compute threads of each rank (the tile rates above are per rank with that many threads).
  double coresPerNode = 0;
  int threadsPerRank = 1;
  double taskOverhead = 0;   // s per tile call (kernel launch, tile set-up)
  // Extra (query, key) pairs a tile computes per staircase query row and head (masked work);
  // measured for the CPU tiles by the planner's this-machine preset.
  double fwdMaskRowPairs = 0, bwdMaskRowPairs = 0;
  double memBandwidth = 0;   // bytes/s of the memory holding the fp32 accumulators; 0 = merges are free
  // Each task also reads and writes its fp32 accumulators at memBandwidth (GPU kernels whose
  // published rates exclude it; the CPU calibration's tile already includes it).
  bool accumulatorTraffic = false;
  const LinkModel& link(int a, int b) const {
    return a / ranksPerNode == b / ranksPerNode ? intraNode : interNode;
  }
};

struct Prediction {
  std::string algorithm;
  double seconds = 0;          // predicted time of the call
  double computeSeconds = 0;   // slowest rank's compute (tiles, merges, copies), summed over rounds
  double exposedCommSeconds = 0;  // seconds - computeSeconds: waiting for transfers or peers
  double idleFraction = 0;     // 1 - (all ranks' compute) / (P * time)
  double bytesPerRank = 0;     // mean bytes sent per rank
  double maxLinkBytes = 0;     // most bytes any rank sends (per-link volume of the busiest rank)
  double balance = 1;          // slowest rank's total compute / mean
  int rounds = 0;
  bool supported = true;
};

Prediction predictSchedule(const Problem& p, const Schedule& s, const ClusterModel& m);
// Ulysses: seq->head exchange, attention on Hq/P heads over all tokens, head->seq exchange.
Prediction predictUlysses(const Problem& p, bool backward, const ClusterModel& m);
// Hybrid: Ulysses inside groups of g ranks, ring across the P/g groups (g = P: Ulysses, g = 1:
// the ring, as the executor runs them).
Prediction predictHybrid(const Problem& p, int groupSize, bool backward, const ClusterModel& m);

// Every algorithm of the table (algos/registry.h), in its order, on the problem, and the
// choice attncclAlgoAuto makes from them: the fastest, where a later algorithm must be at least
// 2% faster to displace an earlier one (stable choices on near ties).
struct Candidate {
  attncclAlgo_t algo;
  Prediction pred;
};
std::vector<Candidate> predictAlgorithms(const Problem& p, bool backward, const ClusterModel& m, int hybridGroup);
attncclAlgo_t fastestAlgorithm(const std::vector<Candidate>& c);

// Visible pairs over the whole sequence (for FLOP counts).
double totalVisiblePairs(const Problem& p);
// What one rank holding the whole sequence computes: the visible pairs plus the masked work of
// its staircase rows (pair equivalents; the planner's ideal, Ulysses' per-head work).
double singleRankPairs(const Problem& p, const ClusterModel& m, bool backward);

}  // namespace attn
}  // namespace attnccl
