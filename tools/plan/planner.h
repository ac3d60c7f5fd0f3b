// The planner's core (tools/attnccl-plan and tests/plan): a problem on a cluster, every
// algorithm of the library predicted forward and backward by running its own schedule through
// the cost model (attn/tune/cost_model.h), the choice attncclAlgoAuto would make there, and the
// distributed efficiency against the ideal: the whole sequence's work divided evenly over the
// cluster's compute at the tile rate (1/P of the single-rank time; on shared host cores, the
// time of one rank with all the cores).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/tune/cost_model.h"
#include "attnccl.h"
#include "plan/cluster.h"
#include "plan/inference.h"

namespace attnccl {
namespace plan {

struct ProblemSpec {
  int64_t seqLen = 65536;  // global tokens (inference: the new tokens)
  int heads = 32, kvHeads = 8, headDim = 128;
  attncclDataType_t dtype = attncclBfloat16;
  bool causal = true;
  int64_t window = -1;  // left window, -1 = none
  attncclLayout_t layout = attncclLayoutZigzag;
  int hybridGroup = 0;  // 0 = ranks per node (as the library)
  int64_t cachedTokens = 0;  // > 0: inference with this many tokens in the K/V cache
};

struct AlgoPlan {
  attncclAlgo_t algo = attncclAlgoRing;
  attn::Prediction fwd, bwd;
  double fwdEfficiency = 0, bwdEfficiency = 0, efficiency = 0;  // ideal / predicted (fwd+bwd)
};

struct PlanResult {
  ProblemSpec problem;
  int nranks = 1, hybridGroup = 1;
  std::vector<AlgoPlan> algos;
  attncclAlgo_t autoFwd = attncclAlgoRing, autoBwd = attncclAlgoRing;
  double idealFwd = 0, idealBwd = 0;   // seconds
  double fwdFlops = 0;                 // over visible pairs, whole sequence
  bool inference = false;
  InferencePrediction infer;
};

// The library's descriptor of the problem (what a run of it passes to attncclAttnForward).
attncclAttnDesc_t descOf(const ProblemSpec& p);

// false and *error when the problem is invalid (the library's descriptor checks).
bool planProblem(const ProblemSpec& p, const ClusterSpec& c, PlanResult* out, std::string* error);

const AlgoPlan* findAlgo(const PlanResult& r, attncclAlgo_t a);

}  // namespace plan
}  // namespace attnccl
