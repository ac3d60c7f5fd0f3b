// Per-communicator state of the attention collectives: the scratch arena that holds received
// items and partial results (library shared memory, so shm peers pull from it in place), reused
// across calls and grown on demand, the group views of the hybrid algorithm and the cached plans
// (attn/plan_cache.h). It is the communicator's extension (comm/comm.h): made here on first use,
// destroyed by the communicator.
#pragma once

#include <cstddef>
#include <atomic>
#include <map>
#include <string>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "attn/tune/cost_model.h"
#include "attn/tune/tuner.h"
#include "attnccl.h"
#include "comm/comm.h"
#include "transport/shm_region.h"

namespace attnccl {
namespace attn {

class Arena {
 public:
  ~Arena();
  // A buffer of at least `bytes` (contents undefined); valid until the next ensure().
  attncclResult_t ensure(size_t bytes, char** out);

 private:
  Region region_;
};

class GroupView;  // attn/group_view.h
class PlanCache;  // attn/plan_cache.h

// The hybrid algorithm's two levels for one group size: the view over this rank's group and the
// view over its ring across groups (attn/algos/hybrid.cc).
struct HybridViews {
  std::unique_ptr<GroupView> group, ring;
};

struct AttnCommState final : CommExtension {
  Arena arena;
  // The automatic choice's calibrated model (collective on first use) and its past decisions.
  bool modelReady = false;
  ClusterModel model;
  std::map<std::string, attncclAlgo_t> decisions;
  // The token-schedule calls' problems, schedules, plans and accumulators per shape (never null).
  std::unique_ptr<PlanCache> plans;
  // Hybrid: (group size) -> its views, made on the first call for that size. Only the calling
  // thread inserts; hybridMutex guards the map against abortViews from another thread.
  std::map<int, HybridViews> hybridViews;
  std::mutex hybridMutex;
  // Hybrid: this communicator's layout (attn/tune/tuner.h hybridLayout: a pure function of the
  // communicator's configuration and nodes), computed on the first hybrid call; calling thread only.
  std::unique_ptr<HybridLayout> hybridLayoutKept;
  std::mutex kvMutex;
  std::vector<std::weak_ptr<std::atomic<bool>>> kvLinks;
  // attncclCommAbort or a failure of the parent: ends the views' waits without freeing them
  // (their peers learn it from the parent's transports, which the views use); this state's
  // destructor frees them.
  void abortViews();
  // The KV caches made on this communicator (attn/kvcache) each hold one of these flags. Abort,
  // a failure that leaves the communicator unusable and its teardown raise them, so a cache
  // never touches a communicator that is gone (attncclCommAbort frees it).
  std::shared_ptr<std::atomic<bool>> kvCacheLink();
  void raiseKvCacheLinks();
  // Ends the views' waits, raises the KV cache links and marks the cached plans stale
  // (attn/plan_cache.h).
  void onAbort() override;
  AttnCommState();
  // Destroys the views first: each cancels what is pending on the parent's transports, which
  // are still there (the communicator destroys its extension before its pool and transports).
  ~AttnCommState() override;
};

// The communicator's attention state, created on first use.
AttnCommState& attnState(attncclComm* comm);

}  // namespace attn
}  // namespace attnccl
