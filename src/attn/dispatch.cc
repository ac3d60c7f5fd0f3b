// Distributed attention on communicators of more than one rank: choose the algorithm, build its
// schedule (or run the head all-to-all algorithms), execute.
#include "attn/dispatch.h"

#include "attn/algos/algos.h"
#include "attn/algos/hybrid.h"
#include "attn/algos/ulysses.h"
#include "attn/comm_state.h"
#include "attn/executor.h"
#include "attn/tune/tuner.h"
#include "attn/verify.h"
#include "core/log.h"
#include "core/params.h"
#include "core/result.h"

namespace attnccl {
namespace attn {
namespace {

attncclResult_t buildSchedule(const Problem& p, attncclAlgo_t algo, bool backward, Schedule* s) {
  switch (algo) {
    case attncclAlgoRing: *s = ringSchedule(p, backward); break;
    case attncclAlgoPassQ: *s = passQSchedule(p, backward); break;
    case attncclAlgoAllGather: *s = allGatherSchedule(p, backward); break;
    default:
      return fail(attncclInternalError, "algorithm %s has no token schedule", attncclAlgoName(algo));
  }
  return attncclSuccess;
}

ExecContext contextOf(attncclComm* comm) {
  ExecContext ctx;
  ctx.engine = &comm->engine;
  ctx.rank = comm->rank;
  ctx.pool = comm->pool.get();
  ctx.arena = &attnState(comm).arena;
  return ctx;
}

// A key naming everything of a descriptor that the choice depends on.
std::string shapeKey(const AttnShape& s, bool backward) {
  std::string k;
  auto put = [&k](int64_t v) { k.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  for (int64_t v : {int64_t(s.dtype), s.seqLen, int64_t(s.numHeadsQ), int64_t(s.numHeadsKV), int64_t(s.headDim),
                    int64_t(s.layout), int64_t(s.causal), s.windowLeft, s.windowRight, int64_t(backward)})
    put(v);
  for (int64_t c : s.cuSeqlens) put(c);
  return k;
}

attncclResult_t resolveAlgo(attncclComm* comm, const AttnShape& shape, bool backward, attncclAlgo_t algo,
                            attncclAlgo_t* out) {
  if (algo == attncclAlgoAuto) {
    auto& cache = attnState(comm).decisions;
    std::string key = shapeKey(shape, backward);
    auto it = cache.find(key);
    if (it != cache.end()) {
      algo = it->second;
    } else {
      ATTN_CHECK(chooseAlgorithm(comm, shape, backward, &algo));
      if (cache.size() > 1024) cache.clear();
      cache[key] = algo;
    }
  }
  *out = algo;
  return attncclSuccess;
}

}  // namespace

attncclResult_t distributedForward(attncclComm* comm, const AttnShape& shape, const FwdTensors& t, attncclAlgo_t algo) {
  ATTN_CHECK(resolveAlgo(comm, shape, false, algo, &algo));
  if (algo == attncclAlgoUlysses) return ulyssesForward(comm, shape, t);
  if (algo == attncclAlgoHybrid) return hybridForward(comm, shape, t);
  Problem p = Problem::fromLayout(shape, comm->nranks);
  Schedule s;
  ATTN_CHECK(buildSchedule(p, algo, false, &s));
  return executeForward(contextOf(comm), p, s, t);
}

attncclResult_t distributedBackward(attncclComm* comm, const AttnShape& shape, const BwdTensors& t,
                                    attncclAlgo_t algo) {
  ATTN_CHECK(resolveAlgo(comm, shape, true, algo, &algo));
  if (algo == attncclAlgoUlysses) return ulyssesBackward(comm, shape, t);
  if (algo == attncclAlgoHybrid) return hybridBackward(comm, shape, t);
  Problem p = Problem::fromLayout(shape, comm->nranks);
  Schedule s;
  ATTN_CHECK(buildSchedule(p, algo, true, &s));
  return executeBackward(contextOf(comm), p, s, t);
}

// headAllToAll: src/attn/algos/head_alltoall.cc.

}  // namespace attn
}  // namespace attnccl
