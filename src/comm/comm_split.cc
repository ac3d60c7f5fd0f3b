// attncclCommSplit: ranks with the same color form a new communicator, ordered by key.
//
//   1. every rank of the parent shares (color, key, rank) over the parent's engine;
//   2. the first member of each new communicator makes its unique id and sends it to the others
//      over the parent;
//   3. every member initialises the child with that id (the bootstrap of commInit).
//
// Blocking parent: all three run in the call, then the child takes the requested mode.
// Non-blocking parent: the call returns attncclInProgress with *newcomm already set; 1-2 run on
// the parent's worker, after the calls queued before the split, and hand the child's identity
// over to the child's own worker, which runs 3. attncclCommGetAsyncError(child) reports
// attncclInProgress until the child is ready; calls on it are refused until it knows its rank.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/async_worker.h"
#include "comm/bootstrap.h"
#include "comm/comm.h"
#include "core/export.h"
#include "core/result.h"
#include "core/topology.h"
#include "transport/shm.h"

using namespace attnccl;

namespace {

// This rank's place in the new communicator (nranks 0: it takes no part).
struct SplitPlan {
  attncclUniqueId id;
  int nranks = 0;
  int rank = 0;
};

// Steps 1 and 2 on the parent.
attncclResult_t splitExchange(attncclComm* comm, int color, int key, SplitPlan* plan) {
  struct Entry {
    int32_t color, key, rank;
  };
  std::vector<Entry> all(comm->nranks);
  Entry me = {color, key, comm->rank};
  ATTN_CHECK(comm->engine.allGatherSmall(&me, sizeof(me), all.data()));
  if (color == ATTNCCL_SPLIT_NOCOLOR) return attncclSuccess;
  std::vector<Entry> members;
  for (const Entry& e : all) {
    if (e.color == color) members.push_back(e);
  }
  std::stable_sort(members.begin(), members.end(),
                   [](const Entry& a, const Entry& b) { return a.key != b.key ? a.key < b.key : a.rank < b.rank; });
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].rank == comm->rank) plan->rank = static_cast<int>(i);
  }
  plan->nranks = static_cast<int>(members.size());
  if (plan->rank == 0) {
    ATTN_CHECK(bootstrapGetUniqueId(&plan->id));
    for (size_t i = 1; i < members.size(); ++i) {
      ATTN_CHECK(comm->engine.send(members[i].rank, kTagInternal, &plan->id, sizeof(plan->id)));
    }
  } else {
    ATTN_CHECK(comm->engine.recv(members[0].rank, kTagInternal, &plan->id, sizeof(plan->id)));
  }
  comm->splitCount++;
  return attncclSuccess;
}

// The parent's worker hands the plan to the child's worker through this.
class Handoff {
 public:
  void deliver(attncclResult_t r, const SplitPlan& plan, const char* error) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != kWaiting) return;
    state_ = r == attncclSuccess ? kDelivered : kFailed;
    result_ = r;
    plan_ = plan;
    error_ = error ? error : "";
    cv_.notify_all();
  }
  // The parent's task was dropped without running (the parent was aborted or failed before).
  void abandon() { deliver(attncclRemoteError, SplitPlan(), "the parent communicator dropped the split"); }
  // Waits (on the child's worker) until the plan is there, or the child is aborted.
  attncclResult_t await(const attncclComm* child, SplitPlan* plan) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (state_ == kWaiting) {
      if (commAborted(child)) return fail(attncclInvalidUsage, "attncclCommSplit: the new communicator was aborted");
      cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
    if (state_ == kFailed) return fail(result_, "attncclCommSplit: %s", error_.c_str());
    *plan = plan_;
    return attncclSuccess;
  }

 private:
  enum State { kWaiting, kDelivered, kFailed };
  std::mutex mutex_;
  std::condition_variable cv_;
  State state_ = kWaiting;
  attncclResult_t result_ = attncclSuccess;
  SplitPlan plan_;
  std::string error_;
};

// Lives in the parent's task: when the task is destroyed without having delivered (skipped
// after an earlier failure, or dropped by an abort), the child stops waiting.
struct HandoffGuard {
  explicit HandoffGuard(std::shared_ptr<Handoff> h) : handoff(std::move(h)) {}
  HandoffGuard(const HandoffGuard&) = delete;
  HandoffGuard& operator=(const HandoffGuard&) = delete;
  ~HandoffGuard() { handoff->abandon(); }
  std::shared_ptr<Handoff> handoff;
};

attncclResult_t splitBlocking(attncclComm* comm, int color, int key, const CommConfig& cfg, attncclComm_t* newcomm) {
  SplitPlan plan;
  ATTN_CHECK(splitExchange(comm, color, key, &plan));
  if (plan.nranks == 0) return attncclSuccess;
  CommConfig now = cfg;
  now.blocking = true;  // the split completes here; the child then runs in the requested mode
  attncclComm_t child = nullptr;
  ATTN_CHECK(commCreate(&child, plan.nranks, plan.id, plan.rank, now, &comm->aborted));
  // The parent's abort mattered while the child was being built; the child outlives it freely.
  child->parentAborted = nullptr;
  child->engine.setParentAbortFlag(nullptr);
  child->config.blocking = cfg.blocking;
  if (!cfg.blocking) commStartWorker(child);
  *newcomm = child;
  return attncclSuccess;
}

attncclResult_t splitNonBlocking(attncclComm* comm, int color, int key, const CommConfig& cfg,
                                 attncclComm_t* newcomm) {
  auto handoff = std::make_shared<Handoff>();
  if (color != ATTNCCL_SPLIT_NOCOLOR) {
    auto* child = new attncclComm();
    child->config = cfg;
    child->nranks = 0;
    child->identityKnown.store(false);
    child->asyncError.store(attncclInProgress);
    commStartWorker(child);  // a blocking child keeps it only for its initialisation
    child->worker->push([child, handoff]() -> attncclResult_t {
      SplitPlan plan;
      ATTN_CHECK(handoff->await(child, &plan));
      child->nranks = plan.nranks;
      child->rank = plan.rank;
      child->identityKnown.store(true, std::memory_order_release);
      attncclResult_t r = commInit(child, plan.id);
      if (r == attncclSuccess) child->asyncError.store(attncclSuccess);
      return r;  // a failure becomes the child's async error
    });
    *newcomm = child;
  }
  auto guard = std::make_shared<HandoffGuard>(handoff);
  return commRun(comm, "attncclCommSplit", [comm, color, key, guard]() -> attncclResult_t {
    SplitPlan plan;
    attncclResult_t r = splitExchange(comm, color, key, &plan);
    guard->handoff->deliver(r, plan, lastError());
    return r;
  });
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclCommSplit(attncclComm_t comm, int color, int key, attncclComm_t* newcomm,
                                             attncclConfig_t* config) {
  const char* fn = "attncclCommSplit";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_ARG(newcomm != nullptr, "%s: newcomm is NULL", fn);
  *newcomm = nullptr;
  ATTN_ARG(color >= 0 || color == ATTNCCL_SPLIT_NOCOLOR, "%s: color is %d (>= 0, or ATTNCCL_SPLIT_NOCOLOR)", fn,
           color);
  CommConfig cfg;
  attncclResult_t r = resolveConfig(config, &comm->config, &cfg);
  if (r != attncclSuccess) {
    prefixLastError(fn);
    return r;
  }
  if (config == nullptr) cfg.cpuThreads = 0;  // re-plan threads for the new membership
  if (!comm->config.blocking) return splitNonBlocking(comm, color, key, cfg, newcomm);
  return commRun(comm, fn, [&] { return splitBlocking(comm, color, key, cfg, newcomm); });
}
