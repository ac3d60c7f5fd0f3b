#include "plan/cluster.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "attn/tune/tuner.h"
#include "core/params.h"
#include "core/thread_pool.h"
#include "plan/calibrate.h"
#include "plan/json_lite.h"
#include "core/topology.h"

namespace attnccl {
namespace plan {
namespace {

ClusterSpec h100NvlinkNdr() {
  ClusterSpec c;
  c.name = "h100-nvlink-ndr";
  c.source =
      "docs/references.md: NVLink4 ~380 GB/s/dir achieved, NDR 48 GB/s per NIC, FA3 d128 bf16 616/561 TFLOP/s fwd/bwd";
  c.nodes = 1;
  c.ranksPerNode = 8;
  c.intraGBps = 380;
  c.intraLatencyUs = 3;
  c.interGBps = 48;
  c.interLatencyUs = 5;
  c.fwdTflops = 616;
  c.bwdTflops = 561;
  c.taskOverheadUs = 5;
  c.memGBps = 3350;
  c.accumulatorTraffic = true;
  return c;
}

// The cores the library itself sizes by (hwloc's allowed cores, capped by a CPU quota).
int onlineCores() {
  Topology t;
  if (Topology::detect(&t) == attncclSuccess && !t.cores.empty()) return static_cast<int>(t.cores.size());
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// The tile rate one rank gets while the node's other ranks compute too: as many pools as the
// run will have computing at once (its ranks, at most as many as fit the cores) time the
// calibration tile together, and the slowest sets the rate, as the library's own calibration
// does (tuner.cc: every rank measures at once, the slowest figure wins). Timing one pool on an
// idle machine overrates a rank wherever ranks share something: cores of unequal speed (these
// VMs' two cores differ by ~15%), hidden SMT siblings, memory bandwidth or a power budget.
// kLoadedRounds rounds, every pool starting a round together, and the best round counts
// (loadedRate): one single-round calibration of a Zen 4 VM's topology benchmark came out 1.6x
// slow (49.8 against 78-81 GFLOP/s in six others of the same host), which priced every
// algorithm 1.6x high (perf/RESULTS.md, "Topology, 2 nodes x 2 ranks, on a Zen 4").
constexpr int kLoadedRounds = 3;

void measureLoadedTileRates(int ranks, int threads, double* fwd, double* bwd) {
  const int together = std::max(1, std::min(ranks, onlineCores() / std::max(1, threads)));
  std::vector<std::vector<double>> f(kLoadedRounds, std::vector<double>(together));
  std::vector<std::vector<double>> b = f;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;  // pools at the start of the current round, over all rounds
  auto startRound = [&](int round) {  // a barrier of `together` pools per round
    std::unique_lock<std::mutex> lock(m);
    ++arrived;
    cv.notify_all();
    cv.wait(lock, [&] { return arrived >= (round + 1) * together; });
  };
  auto pool = [&](int k) {
    ThreadPool p(threads);
    for (int round = 0; round < kLoadedRounds; ++round) {
      startRound(round);
      attn::measureTileRates(p, &f[round][k], &b[round][k]);
    }
  };
  std::vector<std::thread> others;
  for (int k = 1; k < together; ++k) others.emplace_back(pool, k);
  pool(0);
  for (std::thread& t : others) t.join();
  *fwd = loadedRate(f);
  *bwd = loadedRate(b);
}

// The library's own calibration on this host (its tiles and memcpy, best of a few runs), the
// tile rates measured under the run's own load unless ATTNCCL_TUNE_FILE supplies them.
ClusterSpec thisMachine(int ranks, int threadsPerRank) {
  ThreadPool pool(std::max(1, threadsPerRank));
  attn::Calibration cal = attn::measureCalibration(pool);
  if (paramString(Param::TuneFile).empty() && ranks > 1) {
    measureLoadedTileRates(ranks, pool.size(), &cal.fwdFlops, &cal.bwdFlops);
  }
  const MaskWaste waste = measureMaskWaste(pool);
  ClusterSpec c;
  c.name = "this-machine";
  c.source = "measured: library tiles with " + std::to_string(pool.size()) + " thread(s) per rank, the ranks computing at once, memcpy; " +
             std::to_string(onlineCores()) + " cores shared by the ranks";
  c.nodes = 1;
  c.ranksPerNode = std::max(1, ranks);
  c.intraGBps = cal.copyBandwidth / 1e9;
  c.intraLatencyUs = 2;
  c.intraCopiedByReceiver = true;
  c.interGBps = 10;  // no link measured: a 100 Gb/s NIC if one were asked for
  c.interLatencyUs = 5;
  c.interSharedByNode = true;  // one host, one NIC: its ranks share it
  c.fwdTflops = cal.fwdFlops / 1e12;
  c.bwdTflops = cal.bwdFlops / 1e12;
  c.coresPerNode = onlineCores();
  c.threadsPerRank = pool.size();
  c.memGBps = cal.copyBandwidth / 1e9;
  c.accumulatorTraffic = false;  // the calibrated tile includes its accumulator traffic
  c.fwdMaskRowPairs = waste.fwdRowPairs;
  c.bwdMaskRowPairs = waste.bwdRowPairs;
  std::string ignored;
  const std::string linkFile = attn::interNodeFilePath();
  if (linkFile.empty() || !applyInterNodeFile(linkFile, &c, &ignored)) c.source += "; inter-node link assumed";
  return c;
}

struct Key {
  const char* name;
  std::function<bool(const json::Value&, ClusterSpec*)> set;
  std::function<std::string(const ClusterSpec&)> get;
};

template <typename T>
Key numberKey(const char* name, T ClusterSpec::*field) {
  return Key{name,
             [field](const json::Value& v, ClusterSpec* c) {
               if (v.kind != json::Value::kNumber || v.number < 0) return false;
               c->*field = static_cast<T>(v.number);
               return true;
             },
             [field](const ClusterSpec& c) { return json::num(static_cast<double>(c.*field)); }};
}

Key boolKey(const char* name, bool ClusterSpec::*field) {
  return Key{name,
             [field](const json::Value& v, ClusterSpec* c) {
               if (v.kind != json::Value::kBool) return false;
               c->*field = v.flag;
               return true;
             },
             [field](const ClusterSpec& c) { return json::boolean(c.*field); }};
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      Key{"name",
          [](const json::Value& v, ClusterSpec* c) {
            if (v.kind != json::Value::kString) return false;
            c->name = v.text;
            return true;
          },
          [](const ClusterSpec& c) { return json::str(c.name); }},
      numberKey("nodes", &ClusterSpec::nodes),
      numberKey("ranks_per_node", &ClusterSpec::ranksPerNode),
      numberKey("intra_gbps", &ClusterSpec::intraGBps),
      numberKey("intra_latency_us", &ClusterSpec::intraLatencyUs),
      boolKey("intra_copied_by_receiver", &ClusterSpec::intraCopiedByReceiver),
      numberKey("inter_gbps", &ClusterSpec::interGBps),
      numberKey("inter_latency_us", &ClusterSpec::interLatencyUs),
      boolKey("inter_shared_by_node", &ClusterSpec::interSharedByNode),
      numberKey("fwd_tflops", &ClusterSpec::fwdTflops),
      numberKey("bwd_tflops", &ClusterSpec::bwdTflops),
      numberKey("cores_per_node", &ClusterSpec::coresPerNode),
      numberKey("threads_per_rank", &ClusterSpec::threadsPerRank),
      numberKey("task_overhead_us", &ClusterSpec::taskOverheadUs),
      numberKey("mem_gbps", &ClusterSpec::memGBps),
      boolKey("accumulator_traffic", &ClusterSpec::accumulatorTraffic),
      numberKey("fwd_mask_row_pairs", &ClusterSpec::fwdMaskRowPairs),
      numberKey("bwd_mask_row_pairs", &ClusterSpec::bwdMaskRowPairs),
  };
  return k;
}

}  // namespace

attn::ClusterModel ClusterSpec::model() const {
  attn::ClusterModel m;
  m.nranks = nranks();
  m.ranksPerNode = std::max(1, ranksPerNode);
  m.fwdFlops = fwdTflops * 1e12;
  m.bwdFlops = bwdTflops * 1e12;
  m.intraNode = attn::LinkModel{intraGBps * 1e9, intraLatencyUs * 1e-6, intraCopiedByReceiver};
  m.interNode = attn::LinkModel{interGBps * 1e9, interLatencyUs * 1e-6, false};
  m.interNodeShared = interSharedByNode;
  m.coresPerNode = coresPerNode;
  m.threadsPerRank = std::max(1, threadsPerRank);
  m.taskOverhead = taskOverheadUs * 1e-6;
  m.memBandwidth = memGBps * 1e9;
  m.accumulatorTraffic = accumulatorTraffic;
  m.fwdMaskRowPairs = fwdMaskRowPairs;
  m.bwdMaskRowPairs = bwdMaskRowPairs;
  return m;
}

double loadedRate(const std::vector<std::vector<double>>& rates) {
  double best = 0;
  for (const std::vector<double>& round : rates)
    if (!round.empty()) best = std::max(best, *std::min_element(round.begin(), round.end()));
  return best;
}

const char* presetNames() { return "h100-nvlink-ndr, this-machine"; }

bool presetCluster(const std::string& name, int ranks, int threadsPerRank, ClusterSpec* out, std::string* error) {
  if (name == "h100-nvlink-ndr") {
    *out = h100NvlinkNdr();
    return true;
  }
  if (name == "this-machine") {
    *out = thisMachine(ranks, threadsPerRank);
    return true;
  }
  *error = "unknown preset '" + name + "' (" + presetNames() + ")";
  return false;
}

bool applyClusterJson(const std::string& text, ClusterSpec* out, std::string* error) {
  std::vector<std::pair<std::string, json::Value>> members;
  if (!json::parseFlatObject(text, &members, error)) return false;
  for (const auto& kv : members) {  // a preset first, so the other keys refine it
    if (kv.first != "preset") continue;
    if (kv.second.kind != json::Value::kString) {
      *error = "\"preset\" must be a string";
      return false;
    }
    if (!presetCluster(kv.second.text, out->nranks(), out->threadsPerRank, out, error)) return false;
  }
  for (const auto& kv : members) {
    if (kv.first == "preset" || kv.first == "source") continue;
    const Key* key = nullptr;
    for (const Key& k : keys()) {
      if (kv.first == k.name) key = &k;
    }
    if (!key) {
      *error = "unknown key \"" + kv.first + "\"";
      return false;
    }
    if (!key->set(kv.second, out)) {
      *error = "bad value for \"" + kv.first + "\"";
      return false;
    }
  }
  if (out->source.empty() || members.size() > 1) out->source = "cluster file" + (out->source.empty() ? "" : " over " + out->source);
  return true;
}

bool applyInterNodeFile(const std::string& path, ClusterSpec* out, std::string* error) {
  attn::LinkModel link;
  if (!attn::readInterNodeFile(path, &link, error)) return false;
  out->interGBps = link.bandwidth / 1e9;
  out->interLatencyUs = link.latency * 1e6;
  out->source += std::string(out->source.empty() ? "" : "; ") + "inter-node link measured by the library (" + path + ")";
  return true;
}

std::string clusterJson(const ClusterSpec& c) {
  json::Members m;
  for (const Key& k : keys()) m.push_back({k.name, k.get(c)});
  m.push_back({"source", json::str(c.source)});
  return json::object(m, 2);
}

}  // namespace plan
}  // namespace attnccl
