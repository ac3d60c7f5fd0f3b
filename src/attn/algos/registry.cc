#include "attn/algos/registry.h"

#include <strings.h>

#include <string>

#include "attn/algos/algos.h"
#include "attn/algos/hybrid.h"
#include "attn/algos/ulysses.h"
#include "attn/plan.h"
#include "attn/program/dev_program.h"
#include "attn/program/dev_ulysses.h"
#include "attn/tune/cost_model.h"

namespace attnccl {
namespace attn {
namespace {

// Adapters from the algorithms' own signatures to the table's.

Prediction predictUlyssesRow(const Problem& p, bool backward, const ClusterModel& m, int) {
  return predictUlysses(p, backward, m);
}

Prediction predictHybridRow(const Problem& p, bool backward, const ClusterModel& m, int hybridGroup) {
  return predictHybrid(p, hybridGroup, backward, m);
}

gpu::DevProgram ulyssesProgramRow(const Problem& p, bool backward, int rank, int) {
  return gpu::buildUlyssesProgram(p, backward, rank);
}

// Groups of every rank are Ulysses, groups of one rank the ring (as the CPU hybrid runs them).
gpu::DevProgram hybridProgramRow(const Problem& p, bool backward, int rank, int hybridGroup) {
  if (hybridGroup == p.nranks) return gpu::buildUlyssesProgram(p, backward, rank);
  if (hybridGroup > 1) return gpu::buildHybridProgram(p, backward, rank, hybridGroup);
  return scheduleProgram(p, ringSchedule(p, backward), rank);
}

attncclResult_t ulyssesForwardRow(attncclComm* comm, const AttnShape& s, const FwdTensors& t) {
  return ulyssesForward(comm, s, t);
}

attncclResult_t ulyssesBackwardRow(attncclComm* comm, const AttnShape& s, const BwdTensors& t) {
  return ulyssesBackward(comm, s, t);
}

}  // namespace

const char* algoKindName(AlgoKind k) {
  switch (k) {
    case AlgoKind::kTokenSchedule: return "token schedule";
    case AlgoKind::kHeadExchange: return "head exchange";
    case AlgoKind::kTwoLevel: return "two level";
  }
  return "?";
}

const std::vector<AlgoEntry>& algorithms() {
  static const std::vector<AlgoEntry> rows = {
      {attncclAlgoRing, "ring", AlgoKind::kTokenSchedule, ringSchedule, nullptr, nullptr, nullptr, nullptr},
      {attncclAlgoPassQ, "passq", AlgoKind::kTokenSchedule, passQSchedule, nullptr, nullptr, nullptr, nullptr},
      {attncclAlgoAllGather, "allgather", AlgoKind::kTokenSchedule, allGatherSchedule, nullptr, nullptr, nullptr,
       nullptr},
      {attncclAlgoUlysses, "ulysses", AlgoKind::kHeadExchange, nullptr, ulyssesForwardRow, ulyssesBackwardRow,
       predictUlyssesRow, ulyssesProgramRow},
      {attncclAlgoHybrid, "hybrid", AlgoKind::kTwoLevel, nullptr, hybridForward, hybridBackward, predictHybridRow,
       hybridProgramRow},
  };
  return rows;
}

const AlgoEntry* findAlgorithm(attncclAlgo_t algo) {
  for (const AlgoEntry& a : algorithms()) {
    if (a.algo == algo) return &a;
  }
  return nullptr;
}

bool parseAlgoName(const char* name, attncclAlgo_t* algo) {
  if (name == nullptr) return false;
  if (strcasecmp(name, "auto") == 0) {
    *algo = attncclAlgoAuto;
    return true;
  }
  for (const AlgoEntry& a : algorithms()) {
    if (strcasecmp(name, a.name) == 0) {
      *algo = a.algo;
      return true;
    }
  }
  return false;
}

const char* algoNameList() {
  static const std::string list = [] {
    std::string s;
    const std::vector<AlgoEntry>& rows = algorithms();
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) s += i + 1 == rows.size() ? " or " : ", ";
      s += rows[i].name;
    }
    return s;
  }();
  return list.c_str();
}

Prediction predictAlgorithm(const AlgoEntry& a, const Problem& p, bool backward, const ClusterModel& m,
                            int hybridGroup) {
  if (a.predict != nullptr) return a.predict(p, backward, m, hybridGroup);
  return predictSchedule(p, a.schedule(p, backward), m);
}

gpu::DevProgram scheduleProgram(const Problem& p, const Schedule& s, int rank) {
  std::vector<Plan> plans;
  for (int r = 0; r < p.nranks; ++r) plans.push_back(compilePlan(p, s, r));
  return gpu::buildProgram(p, s, plans, rank);
}

gpu::DevProgram deviceProgramOf(const AlgoEntry& a, const Problem& p, bool backward, int rank, int hybridGroup) {
  if (a.deviceProgram != nullptr) return a.deviceProgram(p, backward, rank, hybridGroup);
  return scheduleProgram(p, a.schedule(p, backward), rank);
}

}  // namespace attn
}  // namespace attnccl
