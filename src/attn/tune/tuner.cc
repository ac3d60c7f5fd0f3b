#include "attn/tune/tuner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "attn/algos/registry.h"
#include "attn/tune/calibration_tile.h"
#include "attn/comm_state.h"
#include "attn/tile.h"
#include "core/log.h"
#include "core/params.h"
#include "core/result.h"
#include "core/topology.h"

namespace attnccl {
namespace attn {
namespace {

double seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

double measureCopy() {
  const size_t bytes = 32u << 20;
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double best = 1e30;
  for (int it = 0; it < 3; ++it) {
    auto t0 = std::chrono::steady_clock::now();
    memcpy(b.data(), a.data(), bytes);
    best = std::min(best, seconds(t0));
  }
  return static_cast<double>(bytes) / best;
}

bool readTuneFile(const std::string& path, Calibration* c) {
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return false;
  int n = fscanf(f, "fwdFlops=%lf bwdFlops=%lf copyBandwidth=%lf", &c->fwdFlops, &c->bwdFlops, &c->copyBandwidth);
  fclose(f);
  return n == 3 && c->fwdFlops > 0 && c->bwdFlops > 0 && c->copyBandwidth > 0;
}

void writeTuneFile(const std::string& path, const Calibration& c) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return;
  fprintf(f, "fwdFlops=%.6g bwdFlops=%.6g copyBandwidth=%.6g\n", c.fwdFlops, c.bwdFlops, c.copyBandwidth);
  fclose(f);
}

}  // namespace

std::string interNodeFilePath() {
  const std::string file = paramString(Param::TuneFile);
  return file.empty() ? file : file + ".internode";
}

bool readInterNodeFile(const std::string& path, LinkModel* link, std::string* error) {
  FILE* f = fopen(path.c_str(), "r");
  if (!f) {
    *error = "cannot read " + path;
    return false;
  }
  double bw = 0, lat = -1;
  const int n = fscanf(f, "interBandwidth=%lf interLatency=%lf", &bw, &lat);
  fclose(f);
  if (n != 2 || !(bw > 0) || !(lat >= 0)) {
    *error = path + ": expected 'interBandwidth=<bytes/s> interLatency=<s>' with positive figures";
    return false;
  }
  *link = LinkModel{bw, lat, false};
  return true;
}

bool writeInterNodeFile(const std::string& path, const LinkModel& link, int ranks, int partner) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return false;
  fprintf(f, "interBandwidth=%.6g interLatency=%.6g ranks=%d partner=%d\n", link.bandwidth, link.latency, ranks,
          partner);
  return fclose(f) == 0;
}

// Best of several timings of the full calibration tile (calibration_tile.h). The first calls
// of a thread are slow (up to 2x for the backward tile: glibc returns their large scratch to the
// kernel until its mmap threshold adapts, so they page-fault), hence five runs each.
void measureTileRates(ThreadPool& pool, double* fwd, double* bwd) {
  CalibrationTile tile;
  double best = 1e30;
  for (int it = 0; it < 5; ++it) {
    tile.clearOutput();
    auto t0 = std::chrono::steady_clock::now();
    fwdTile(tile.fwd, pool);
    best = std::min(best, seconds(t0));
  }
  *fwd = CalibrationTile::fullFlops() / best;
  best = 1e30;
  for (int it = 0; it < 5; ++it) {
    auto t0 = std::chrono::steady_clock::now();
    bwdTile(tile.bwd, pool);
    best = std::min(best, seconds(t0));
  }
  *bwd = 2.5 * CalibrationTile::fullFlops() / best;
}

Calibration measureCalibration(ThreadPool& pool, bool fresh) {
  static std::mutex m;
  static std::map<int, Calibration> cache;  // by thread count
  std::lock_guard<std::mutex> lock(m);
  auto it = cache.find(pool.size());
  if (it != cache.end() && !fresh) return it->second;
  Calibration c;
  std::string file = paramString(Param::TuneFile);
  if (!file.empty()) file += "." + std::to_string(pool.size());
  if (file.empty() || !readTuneFile(file, &c)) {
    measureTileRates(pool, &c.fwdFlops, &c.bwdFlops);
    c.copyBandwidth = measureCopy();
    if (!file.empty()) writeTuneFile(file, c);
  }
  ATTN_INFO(kSubTune, "calibration (%d threads): tiles %.1f / %.1f GFLOP/s fwd/bwd, copy %.1f GB/s", pool.size(),
            c.fwdFlops / 1e9, c.bwdFlops / 1e9, c.copyBandwidth / 1e9);
  return cache[pool.size()] = c;
}

namespace {

// The link between nodes, measured once per communicator that spans nodes (with the rest of the
// calibration, on the first automatic call), so the model prices an inter-node hop at what this
// cluster's fabric does rather than at a constant. Rank 0 and the lowest rank of another node
// ping-pong on their transport:
//   8 bytes x 20 round trips:  latency   = best round trip / 2
//   4 MiB   x 3  round trips:  bandwidth = 4 MiB / (best round trip / 2 - latency)
// The other ranks take no part; every rank then adopts rank 0's figures (one small all-gather),
// so all of them predict alike. One node: nothing is measured (the constant stays, unused).
attncclResult_t measureInterNode(attncclComm* comm, LinkModel* link) {
  const int P = comm->nranks;
  if (static_cast<int>(comm->peers.size()) != P) return attncclSuccess;
  int partner = -1;
  for (int r = 1; r < P && partner < 0; ++r)
    if (comm->peers[r].hostHash != comm->peers[0].hostHash) partner = r;
  if (partner < 0) return attncclSuccess;
  double figures[2] = {0, 0};  // bandwidth (B/s), latency (s); rank 0's are adopted
  if (comm->rank == 0 || comm->rank == partner) {
    const int peer = comm->rank == 0 ? partner : 0;
    const bool first = comm->rank == 0;
    auto roundTrip = [&](std::vector<char>& buf) -> attncclResult_t {
      for (int leg = 0; leg < 2; ++leg) {
        OpArray op(comm->engine, 1);
        const bool send = (leg == 0) == first;
        ATTN_CHECK(send ? comm->engine.isend(peer, kTagTune, buf.data(), buf.size(), &op[0])
                        : comm->engine.irecv(peer, kTagTune, buf.data(), buf.size(), &op[0]));
        ATTN_CHECK(comm->engine.waitAll(op));
      }
      return attncclSuccess;
    };
    auto best = [&](size_t bytes, int trips, double* out) -> attncclResult_t {
      std::vector<char> buf(bytes, 1);
      *out = 1e30;
      for (int i = 0; i < trips; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        ATTN_CHECK(roundTrip(buf));
        *out = std::min(*out, seconds(t0));
      }
      return attncclSuccess;
    };
    double small, large;
    ATTN_CHECK(best(8, 20, &small));
    ATTN_CHECK(best(4u << 20, 3, &large));
    figures[1] = small / 2;
    figures[0] = static_cast<double>(4u << 20) / std::max(large / 2 - figures[1], 1e-9);
  }
  std::vector<double> all(2 * static_cast<size_t>(P));
  ATTN_CHECK(comm->engine.allGatherSmall(figures, sizeof(figures), all.data()));
  link->bandwidth = all[0];
  link->latency = all[1];
  link->copiedByReceiver = false;
  ATTN_INFO(kSubTune, "inter-node link measured between ranks 0 and %d: %.3f GB/s, %.1f us", partner,
            link->bandwidth / 1e9, link->latency * 1e6);
  // For the planner (attnccl-plan --inter-link): rank 0's figures, next to the tune file.
  const std::string path = interNodeFilePath();
  if (comm->rank == 0 && !path.empty()) {
    if (writeInterNodeFile(path, *link, P, partner)) {
      ATTN_INFO(kSubTune, "inter-node link written to %s", path.c_str());
    } else {
      ATTN_WARN(kSubTune, "cannot write the measured inter-node link to %s", path.c_str());
    }
  }
  return attncclSuccess;
}

}  // namespace

int hybridGroupOf(int nranks, int wanted) {
  int g = std::max(1, std::min(wanted, nranks));
  while (nranks % g != 0) --g;  // a divisor of P
  return g;
}

// Every rank must pick the same groups, so they are derived from what all ranks know alike: the
// node (host hash) of every rank, all-gathered at init, never from this node's rank count (3 + 1
// ranks per node: 3 on one side, 1 on the other). nodeBlockSize: the largest divisor G of P whose
// consecutive blocks g*G .. g*G+G-1 each lie inside one node (the CUDA programs' groups, and the
// cost model's nodes); hybridLayout below cuts groups out of each node's own ranks instead.
static int nodeBlockSize(const attncclComm* comm) {
  const int P = comm->nranks;
  if (static_cast<int>(comm->peers.size()) != P) return static_cast<int>(comm->localRanks.size());
  for (int g = P; g > 1; --g) {
    if (P % g != 0) continue;
    bool inside = true;
    for (int r = 0; r < P && inside; ++r) inside = comm->peers[r].hostHash == comm->peers[r - r % g].hostHash;
    if (inside) return g;
  }
  return 1;
}

namespace {

HybridLayout blockLayout(int P, int G) {
  HybridLayout l;
  l.G = G;
  l.groupOf.resize(P);
  l.indexOf.resize(P);
  for (int r = 0; r < P; ++r) {
    if (r % G == 0) l.groups.emplace_back();
    l.groups.back().push_back(r);
    l.groupOf[r] = r / G;
    l.indexOf[r] = r % G;
  }
  return l;
}

int gcd(int a, int b) { return b == 0 ? a : gcd(b, a % b); }

}  // namespace

HybridLayout hybridLayoutOf(const std::vector<uint64_t>& nodeOfRank, int configured) {
  const int P = static_cast<int>(nodeOfRank.size());
  if (configured > 0) return blockLayout(P, hybridGroupOf(P, configured));
  // Nodes in order of their first rank, each with its ranks in order.
  std::vector<uint64_t> ids;
  std::vector<std::vector<int>> nodes;
  for (int r = 0; r < P; ++r) {
    size_t n = 0;
    while (n < ids.size() && ids[n] != nodeOfRank[r]) ++n;
    if (n == ids.size()) {
      ids.push_back(nodeOfRank[r]);
      nodes.emplace_back();
    }
    nodes[n].push_back(r);
  }
  int G = 0;
  for (const auto& n : nodes) G = gcd(static_cast<int>(n.size()), G);
  G = std::max(G, 1);
  std::vector<std::vector<int>> groups;
  for (const auto& n : nodes)
    for (size_t k = 0; k < n.size(); k += G) groups.emplace_back(n.begin() + k, n.begin() + k + G);
  std::sort(groups.begin(), groups.end());  // by first member
  HybridLayout l;
  l.G = G;
  l.groups = std::move(groups);
  l.groupOf.resize(P);
  l.indexOf.resize(P);
  for (size_t g = 0; g < l.groups.size(); ++g)
    for (int i = 0; i < G; ++i) {
      const int r = l.groups[g][i];
      l.groupOf[r] = static_cast<int>(g);
      l.indexOf[r] = i;
      l.blocks = l.blocks && r == static_cast<int>(g) * G + i;
    }
  return l;
}

HybridLayout hybridLayout(const attncclComm* comm) {
  const int P = comm->nranks;
  std::vector<uint64_t> node(P, 0);
  if (static_cast<int>(comm->peers.size()) == P)
    for (int r = 0; r < P; ++r) node[r] = comm->peers[r].hostHash;
  HybridLayout l = hybridLayoutOf(node, comm->config.hybridGroupSize);
  if (comm->dev && !l.blocks) l = blockLayout(P, nodeBlockSize(comm));
  if (comm->config.hybridGroupSize <= 0 && logEnabled(kLogInfo, kSubTune)) {
    // Said once per communicator (this runs on every hybrid call), on every rank, when the groups
    // are not the nodes' consecutive blocks.
    static std::mutex m;
    static std::set<std::pair<const void*, uint64_t>> said;
    std::lock_guard<std::mutex> lock(m);
    int most = 0;
    for (const PeerInfo& a : comm->peers) {
      int same = 0;
      for (const PeerInfo& b : comm->peers) same += a.hostHash == b.hostHash;
      most = std::max(most, same);
    }
    if ((l.G < most || !l.blocks) && said.insert({comm, comm->commHash}).second) {
      ATTN_INFO(kSubTune, "hybrid: a node holds up to %d ranks; groups of %d%s%s", most, l.G,
                l.G == 1 ? " (the ring)" : " inside nodes", l.blocks ? "" : ", ranks not numbered node by node");
    }
  }
  return l;
}

int hybridGroupSize(const attncclComm* comm) { return hybridLayout(comm).G; }

attncclResult_t clusterModel(attncclComm* comm, ClusterModel* out) {
  AttnCommState& st = attnState(comm);
  if (!st.modelReady) {
    // Everything the model is built from is agreed: the slowest rank's rates, the fewest cores
    // and the most threads any rank has, and the node blocks above, so that every rank predicts
    // the same times and picks the same algorithm.
    Calibration mine = measureCalibration(*comm->pool);
    struct Facts {
      Calibration c;
      double cores, threads;
    };
    Facts f{mine, static_cast<double>(std::max<size_t>(1, comm->topo->cores.size())),
            static_cast<double>(comm->pool->size())};
    std::vector<Facts> all(comm->nranks);
    ATTN_CHECK(comm->engine.allGatherSmall(&f, sizeof(f), all.data()));
    Calibration c = mine;
    double cores = f.cores, threads = f.threads;
    for (const Facts& x : all) {  // the slowest rank sets the pace
      c.fwdFlops = std::min(c.fwdFlops, x.c.fwdFlops);
      c.bwdFlops = std::min(c.bwdFlops, x.c.bwdFlops);
      c.copyBandwidth = std::min(c.copyBandwidth, x.c.copyBandwidth);
      cores = std::min(cores, x.cores);
      threads = std::max(threads, x.threads);
    }
    ClusterModel& m = st.model;
    m.nranks = comm->nranks;
    // The model's nodes are blocks of ranksPerNode consecutive ranks: the node blocks, which on
    // unequal or interleaved nodes understate how many ranks share a node's cores.
    m.ranksPerNode = nodeBlockSize(comm);
    m.fwdFlops = c.fwdFlops;
    m.bwdFlops = c.bwdFlops;
    const bool shmOnNode = comm->config.transport != "ucx";
    // Host ranks of a node share its cores (cost_model.h: node sharing).
    m.coresPerNode = cores;
    m.threadsPerRank = static_cast<int>(threads);
    m.intraNode = shmOnNode ? LinkModel{c.copyBandwidth, 1e-6, true} : LinkModel{std::min(c.copyBandwidth, 10e9), 5e-6, false};
    m.interNode = LinkModel{10e9, 5e-6, false};  // one node: never used
    // Host ranks reach the other nodes through their host's NIC, all of them through the same
    // one (the measurement below times one pair); device ranks are taken to have a NIC each.
    m.interNodeShared = comm->dev == nullptr;
    ATTN_CHECK(measureInterNode(comm, &m.interNode));
    st.modelReady = true;
  }
  *out = st.model;
  return attncclSuccess;
}

attncclResult_t chooseAlgorithm(attncclComm* comm, const AttnShape& shape, bool backward, attncclAlgo_t* algo) {
  std::string forced = paramString(Param::Algo);
  if (!forced.empty()) {
    if (!parseAlgoName(forced.c_str(), algo) || *algo == attncclAlgoAuto) {
      return fail(attncclInvalidArgument, "ATTNCCL_ALGO is '%s' (%s)", forced.c_str(), algoNameList());
    }
    return attncclSuccess;
  }
  ClusterModel m;
  ATTN_CHECK(clusterModel(comm, &m));
  Problem p = Problem::fromLayout(shape, comm->nranks);
  const std::vector<Candidate> preds = predictAlgorithms(p, backward, m, hybridGroupSize(comm));
  *algo = fastestAlgorithm(preds);
  if (logEnabled(kLogInfo, kSubTune)) {
    char line[512];
    int n = snprintf(line, sizeof(line), "auto %s: chose %s (predicted", backward ? "backward" : "forward",
                     attncclAlgoName(*algo));
    for (size_t i = 0; i < preds.size() && n < static_cast<int>(sizeof(line)); ++i) {
      n += snprintf(line + n, sizeof(line) - n, " %s %.0f us", attncclAlgoName(preds[i].algo),
                    preds[i].pred.supported ? preds[i].pred.seconds * 1e6 : -1.0);
    }
    ATTN_INFO(kSubTune, "%s)", line);
  }
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
