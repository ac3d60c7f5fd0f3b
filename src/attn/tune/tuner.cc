#include "attn/tune/tuner.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
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

// Best of several timings of the full calibration tile (calibration_tile.h). The first calls
// of a thread are slow (up to 2x for the backward tile: glibc returns their large scratch to the
// kernel until its mmap threshold adapts, so they page-fault), hence five runs each.
void measureTiles(ThreadPool& pool, double* fwd, double* bwd) {
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
    measureTiles(pool, &c.fwdFlops, &c.bwdFlops);
    c.copyBandwidth = measureCopy();
    if (!file.empty()) writeTuneFile(file, c);
  }
  ATTN_INFO(kSubTune, "calibration (%d threads): tiles %.1f / %.1f GFLOP/s fwd/bwd, copy %.1f GB/s", pool.size(),
            c.fwdFlops / 1e9, c.bwdFlops / 1e9, c.copyBandwidth / 1e9);
  return cache[pool.size()] = c;
}

int hybridGroupOf(int nranks, int wanted) {
  int g = std::max(1, std::min(wanted, nranks));
  while (nranks % g != 0) --g;  // a divisor of P
  return g;
}

int hybridGroupSize(const attncclComm* comm) {
  return hybridGroupOf(comm->nranks, comm->config.hybridGroupSize > 0 ? comm->config.hybridGroupSize
                                                                      : static_cast<int>(comm->localRanks.size()));
}

attncclResult_t clusterModel(attncclComm* comm, ClusterModel* out) {
  AttnCommState& st = attnState(comm);
  if (!st.modelReady) {
    Calibration mine = measureCalibration(*comm->pool);
    std::vector<Calibration> all(comm->nranks);
    ATTN_CHECK(comm->engine.allGatherSmall(&mine, sizeof(mine), all.data()));
    Calibration c = mine;
    for (const Calibration& x : all) {  // the slowest rank sets the pace
      c.fwdFlops = std::min(c.fwdFlops, x.fwdFlops);
      c.bwdFlops = std::min(c.bwdFlops, x.bwdFlops);
      c.copyBandwidth = std::min(c.copyBandwidth, x.copyBandwidth);
    }
    ClusterModel& m = st.model;
    m.nranks = comm->nranks;
    m.ranksPerNode = std::max<int>(1, static_cast<int>(comm->localRanks.size()));
    m.fwdFlops = c.fwdFlops;
    m.bwdFlops = c.bwdFlops;
    const bool shmOnNode = comm->config.transport != "ucx";
    // Host ranks of a node share its cores (cost_model.h: node sharing).
    m.coresPerNode = static_cast<double>(std::max<size_t>(1, comm->topo->cores.size()));
    m.threadsPerRank = comm->pool->size();
    m.intraNode = shmOnNode ? LinkModel{c.copyBandwidth, 1e-6, true} : LinkModel{std::min(c.copyBandwidth, 10e9), 5e-6, false};
    m.interNode = LinkModel{10e9, 5e-6, false};
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
