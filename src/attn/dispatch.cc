// Distributed attention on communicators of more than one rank: choose the algorithm, then run
// its row of the table (algos/registry.h): its own runner, or its schedule on the executor, with
// the problem, schedule and compiled plan cached per shape (attn/plan_cache.h).
#include "attn/dispatch.h"

#include <memory>
#include <string>

#include "attn/algos/registry.h"
#include "attn/comm_state.h"
#include "attn/executor.h"
#include "attn/plan_cache.h"
#include "attn/tune/tuner.h"
#include "attn/verify.h"
#include "core/log.h"
#include "core/params.h"
#include "core/result.h"

namespace attnccl {
namespace attn {
namespace {

// The row of a resolved algorithm (never attncclAlgoAuto here).
attncclResult_t rowOf(attncclAlgo_t algo, const AlgoEntry** out) {
  *out = findAlgorithm(algo);
  if (*out == nullptr) return fail(attncclInternalError, "algorithm %d is not in the table", static_cast<int>(algo));
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

attncclResult_t resolveAlgo(attncclComm* comm, const AttnShape& shape, bool backward, attncclAlgo_t algo,
                            attncclAlgo_t* out) {
  if (algo == attncclAlgoAuto) {
    auto& cache = attnState(comm).decisions;
    std::string key = shapeKey(shape);
    key += backward ? 'b' : 'f';
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

// The cached problem, schedule and compiled plan of a token-schedule call (attn/plan_cache.h),
// built on the first call of its key.
CachedPlan* cachedPlan(attncclComm* comm, const AttnShape& shape, const AlgoEntry& a, bool backward) {
  PlanCache& cache = *attnState(comm).plans;
  const std::string key = PlanCache::keyOf(shape, comm->nranks, a.algo, backward);
  if (CachedPlan* e = cache.find(key)) return e;
  std::unique_ptr<CachedPlan> e(new CachedPlan());
  e->problem = Problem::fromLayout(shape, comm->nranks);
  e->schedule = a.schedule(e->problem, backward);
  e->plan = compilePlan(e->problem, e->schedule, comm->rank);
  return cache.insert(key, std::move(e));
}

attncclResult_t execute(const ExecContext& x, CachedPlan* e, const FwdTensors& t) {
  return executeForward(x, e->problem, e->schedule, e->plan, t, &e->scratch);
}
attncclResult_t execute(const ExecContext& x, CachedPlan* e, const BwdTensors& t) {
  return executeBackward(x, e->problem, e->schedule, e->plan, t, &e->scratch);
}

// Runs a cached entry; the first call sizes its scratch, which the cache's bound then counts.
template <typename Tensors>
attncclResult_t runCached(attncclComm* comm, CachedPlan* e, const Tensors& t) {
  const size_t before = e->scratch.bytes();
  attncclResult_t r = execute(contextOf(comm), e, t);
  if (e->scratch.bytes() != before) attnState(comm).plans->resized(e);
  return r;
}

}  // namespace

attncclResult_t distributedForward(attncclComm* comm, const AttnShape& shape, const FwdTensors& t, attncclAlgo_t algo) {
  ATTN_CHECK(resolveAlgo(comm, shape, false, algo, &algo));
  const AlgoEntry* a;
  ATTN_CHECK(rowOf(algo, &a));
  if (a->forward != nullptr) return a->forward(comm, shape, t);
  if (a->schedule == nullptr) return fail(attncclInternalError, "algorithm %s has no token schedule", a->name);
  return runCached(comm, cachedPlan(comm, shape, *a, false), t);
}

attncclResult_t distributedBackward(attncclComm* comm, const AttnShape& shape, const BwdTensors& t,
                                    attncclAlgo_t algo) {
  ATTN_CHECK(resolveAlgo(comm, shape, true, algo, &algo));
  const AlgoEntry* a;
  ATTN_CHECK(rowOf(algo, &a));
  if (a->backward != nullptr) return a->backward(comm, shape, t);
  if (a->schedule == nullptr) return fail(attncclInternalError, "algorithm %s has no token schedule", a->name);
  return runCached(comm, cachedPlan(comm, shape, *a, true), t);
}

// headAllToAll: src/attn/algos/head_alltoall.cc.

}  // namespace attn
}  // namespace attnccl
