// Clusters for the planner (tools/attnccl-plan): what the machines are, in the units people
// quote (GB/s, us, TFLOP/s), turned into the library's cost model (attn/tune/cost_model.h).
//
// Sources: a preset, a small JSON file (flat object, the keys of ClusterSpec's comments; a
// "preset" key starts from that preset), then command-line flags over either.
//
// Presets:
//   h100-nvlink-ndr   8 H100 SXM per node. NVLink4 at the ~380 GB/s per direction NCCL achieves
//                     (docs/references.md), 3 us per message; one NDR InfiniBand NIC per GPU at 48 GB/s,
//                     5 us. Tiles at FlashAttention-3's published H100 rates for head dim 128,
//                     bf16: 616 TFLOP/s forward (causal), 561 backward (docs/references.md). A tile call
//                     costs 5 us of launch and tail; its fp32 accumulators (the partial O/LSE,
//                     dQ, dK/dV a distributed tile merges into) are read and written once at
//                     3.35 TB/s of HBM3, which FA3's figures exclude.
//   this-machine      measured: the library's own calibration (attn/tune/tuner.h measureCalibration:
//                     its tiles with T threads, and memcpy) on this host, plus the masked work
//                     of a causal tile (plan/calibrate.h); all ranks on this node share its
//                     cores; shared memory copied by the receiving core at the measured memcpy
//                     rate, 2 us per message. The link between nodes: the one a communicator
//                     spanning nodes measured last, where ATTNCCL_TUNE_FILE names a tune file
//                     and "<it>.internode" exists (attn/tune/tuner.h), else assumed 10 GB/s, 5 us;
//                     one such link per node, shared by its ranks (inter_shared_by_node).
//
// --inter-link FILE (applyInterNodeFile): the inter-node figures from such a file, over the
// preset and the JSON file (flags such as --inter-gbps still override them).
#pragma once

#include <string>
#include <vector>

#include "attn/tune/cost_model.h"

namespace attnccl {
namespace plan {

struct ClusterSpec {
  std::string name = "custom";
  std::string source;          // where the figures come from (printed with the plan)
  int nodes = 1;               // "nodes"
  int ranksPerNode = 8;        // "ranks_per_node"
  double intraGBps = 100;      // "intra_gbps": per direction between two ranks of a node
  double intraLatencyUs = 5;   // "intra_latency_us"
  bool intraCopiedByReceiver = false;  // "intra_copied_by_receiver": host shared memory
  double interGBps = 12.5;     // "inter_gbps": per rank (its NIC share), per direction
  double interLatencyUs = 5;   // "inter_latency_us"
  bool interSharedByNode = false;  // "inter_shared_by_node": one NIC per node, not per rank
  double fwdTflops = 100;      // "fwd_tflops": one rank's tile rate
  double bwdTflops = 80;       // "bwd_tflops"
  double coresPerNode = 0;     // "cores_per_node": host CPUs shared by a node's ranks (0: devices)
  int threadsPerRank = 1;      // "threads_per_rank"
  double taskOverheadUs = 0;   // "task_overhead_us"
  double memGBps = 0;          // "mem_gbps": memory of the fp32 accumulators (0: merges free)
  bool accumulatorTraffic = false;  // "accumulator_traffic"
  double fwdMaskRowPairs = 0;  // "fwd_mask_row_pairs": masked work per partially visible row
  double bwdMaskRowPairs = 0;  // "bwd_mask_row_pairs"

  int nranks() const { return nodes * ranksPerNode; }
  attn::ClusterModel model() const;
};

// Names of the presets, for help texts.
const char* presetNames();

// Fills *out with a preset. this-machine calibrates (a few seconds) with `threadsPerRank`
// compute threads per rank and `ranks` ranks on this host. false (and *error) if unknown.
bool presetCluster(const std::string& name, int ranks, int threadsPerRank, ClusterSpec* out, std::string* error);

// Applies a JSON object's keys to *out (a "preset" key first loads that preset). false and
// *error on a syntax error or an unknown key.
bool applyClusterJson(const std::string& text, ClusterSpec* out, std::string* error);

// Sets interGBps / interLatencyUs from a file the library wrote (tuner.h writeInterNodeFile) and
// notes it in source. false and *error if the file is missing or malformed (*out unchanged).
bool applyInterNodeFile(const std::string& path, ClusterSpec* out, std::string* error);

// The loaded tile rate from rates[round][pool], pools timed together in each round: the slowest
// pool of a round is what a rank gets while the others compute (cores of unequal speed, shared
// caches), and the best round is taken because a transient (another process, or the scheduler
// leaving two pools on one core for a while) can only slow a round down. 0 if empty.
double loadedRate(const std::vector<std::vector<double>>& rates);

// The spec as a JSON object (the same keys).
std::string clusterJson(const ClusterSpec& c);

}  // namespace plan
}  // namespace attnccl
