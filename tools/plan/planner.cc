#include "plan/planner.h"

#include <algorithm>

#include "attn/desc.h"
#include "attn/problem.h"
#include "attn/tune/tuner.h"

namespace attnccl {
namespace plan {
namespace {

// Compute the cluster can bring to one call, in FLOP/s: P tile rates, or on shared host cores
// the threads that actually get a core.
double aggregateRate(const attn::ClusterModel& m, bool backward) {
  const double perRank = backward ? m.bwdFlops : m.fwdFlops;
  if (m.coresPerNode <= 0) return perRank * m.nranks;
  const double perThread = perRank / std::max(1, m.threadsPerRank);
  const int nodes = (m.nranks + m.ranksPerNode - 1) / m.ranksPerNode;
  const double threadsPerNode = std::min<double>(m.coresPerNode, std::min(m.ranksPerNode, m.nranks) * m.threadsPerRank);
  return perThread * threadsPerNode * nodes;
}

}  // namespace

attncclAttnDesc_t descOf(const ProblemSpec& p) {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.dtype = p.dtype;
  d.seqLen = p.seqLen;
  d.numHeadsQ = p.heads;
  d.numHeadsKV = p.kvHeads;
  d.headDim = p.headDim;
  d.layout = p.layout;
  d.causal = p.causal ? 1 : 0;
  d.windowLeft = p.window;
  return d;
}

bool planProblem(const ProblemSpec& ps, const ClusterSpec& c, PlanResult* out, std::string* error) {
  attncclAttnDesc_t d = descOf(ps);
  attn::AttnShape shape;
  if (attn::resolveDesc(&d, &shape) != attncclSuccess) {
    *error = attncclGetLastError(nullptr);
    return false;
  }
  const attn::ClusterModel m = c.model();
  *out = PlanResult();
  out->problem = ps;
  out->nranks = m.nranks;
  const int g = attn::hybridGroupOf(m.nranks, ps.hybridGroup > 0 ? ps.hybridGroup : m.ranksPerNode);
  out->hybridGroup = g;
  const attn::Problem p = attn::Problem::fromLayout(shape, m.nranks);
  const double pairs = attn::totalVisiblePairs(p);
  out->fwdFlops = pairs * 4.0 * ps.headDim * ps.heads;
  // One rank with the whole sequence and all the compute: its visible pairs and masked work.
  const double perPair = 4.0 * ps.headDim * ps.heads;
  out->idealFwd = attn::singleRankPairs(p, m, false) * perPair / aggregateRate(m, false);
  out->idealBwd = attn::singleRankPairs(p, m, true) * 2.5 * perPair / aggregateRate(m, true);
  const std::vector<attn::Candidate> fwd = attn::predictAlgorithms(p, false, m, g);
  const std::vector<attn::Candidate> bwd = attn::predictAlgorithms(p, true, m, g);
  for (size_t i = 0; i < fwd.size(); ++i) {
    AlgoPlan a;
    a.algo = fwd[i].algo;
    a.fwd = fwd[i].pred;
    a.bwd = bwd[i].pred;
    a.fwdEfficiency = a.fwd.supported ? out->idealFwd / a.fwd.seconds : 0;
    a.bwdEfficiency = a.bwd.supported ? out->idealBwd / a.bwd.seconds : 0;
    a.efficiency = a.fwd.supported && a.bwd.supported ? (out->idealFwd + out->idealBwd) / (a.fwd.seconds + a.bwd.seconds) : 0;
    out->algos.push_back(a);
  }
  out->autoFwd = attn::fastestAlgorithm(fwd);
  out->autoBwd = attn::fastestAlgorithm(bwd);
  if (ps.cachedTokens > 0) {
    InferenceSpec is;
    is.newTokens = ps.seqLen;
    is.cachedTokens = ps.cachedTokens;
    is.heads = ps.heads;
    is.kvHeads = ps.kvHeads;
    is.headDim = ps.headDim;
    is.dtype = ps.dtype;
    out->inference = true;
    out->infer = predictInference(is, c);
  }
  return true;
}

const AlgoPlan* findAlgo(const PlanResult& r, attncclAlgo_t a) {
  for (const AlgoPlan& x : r.algos) {
    if (x.algo == a) return &x;
  }
  return nullptr;
}

}  // namespace plan
}  // namespace attnccl
