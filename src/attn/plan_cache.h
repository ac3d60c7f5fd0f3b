// The per-communicator cache of cached plans. A framework calls the same shape in every layer of
// every step; a token-schedule call (ring, pass-Q, all-gather) would otherwise rebuild, per call,
// the problem (every rank's token positions and documents: O(S)), every rank's schedule (O(P^2)
// rounds and items), this rank's compiled plan (maps of slot lifetimes) and its fp32 accumulators.
// All of it is a pure function of (shape, rank count, algorithm, direction) on one communicator
// (its rank is fixed), so it is built once and reused: the CUDA executor does the same with its
// device programs (attn/cuda/dev_executor.cc, keyed alike).
//
//   key = shapeKey(shape) . nranks . algo . direction        (bytes, attn/desc.h)
//   entry = { Problem, Schedule, Plan, ExecScratch, extra }   (attn/executor.h)
// The hybrid (algos/hybrid.cc) keeps its ring level here too, under its own algorithm: the
// problem of its groups as ranks, the ring's schedule and plan over them, and in `extra` its
// group's members; a hybrid whose groups are one rank (or all ranks) runs the ring's (Ulysses')
// path instead.
//
// Bounded: least recently used entries go once there are more than `maxEntries` or their host
// memory passes `maxBytes` (the newest entry always stays, however large). Accumulator storage
// is kept only up to `maxScratch` bytes per entry: a large shape's accumulators (T x Hq x D
// floats) are freed after the call as before, since its tiles dwarf an allocation, and its plan
// then stays cheap to keep. Only the thread
// running the communicator's calls touches it (calls of one communicator are serialised: the
// caller's thread, or the non-blocking worker); abort, from any thread, only marks it stale, and
// the next use (if any) empties it. The communicator's attention state (attn/comm_state.h) frees
// it with the communicator.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "attn/executor.h"
#include "attn/plan.h"
#include "attn/problem.h"
#include "attn/schedule.h"

namespace attnccl {
namespace attn {

// What an algorithm keeps in its entry besides the four below (the hybrid: its group's members
// and the arena layout of a call, algos/hybrid.cc).
struct CachedExtra {
  virtual ~CachedExtra() = default;
  virtual size_t bytes() const = 0;  // host memory held, for the bound
};

struct CachedPlan {
  Problem problem;
  Schedule schedule;
  Plan plan;
  ExecScratch scratch;  // the accumulators' storage, kept between calls
  std::unique_ptr<CachedExtra> extra;
  size_t bytes = 0;  // host memory held, for the bound (scratch counted once it is sized)
};

// What the tests read (tests/attn/test_plan_cache.cc): lookups that found an entry, lookups
// that built one, entries dropped by the bound, entries dropped by invalidation.
struct PlanCacheCounters {
  uint64_t hits = 0, misses = 0, evictions = 0, invalidations = 0;
};

class PlanCache {
 public:
  static constexpr size_t kDefaultEntries = 64;
  static constexpr size_t kDefaultBytes = size_t{256} << 20;
  static constexpr size_t kDefaultScratch = size_t{16} << 20;

  // The key of a call (see above).
  static std::string keyOf(const AttnShape& s, int nranks, attncclAlgo_t algo, bool backward);

  // The entry of key, most recently used from now on; null when absent.
  CachedPlan* find(const std::string& key);
  // Stores a new entry under key (absent) and returns it; evicts by the bound first.
  CachedPlan* insert(const std::string& key, std::unique_ptr<CachedPlan> entry);
  // After a call sized the entry's scratch: frees it when over maxScratch, recounts the
  // entry's bytes and applies the bound.
  void resized(CachedPlan* entry);

  // Any thread (attncclCommAbort): the entries must not be used again; the next find() drops
  // them all.
  void invalidate() { stale_.store(true, std::memory_order_release); }

  // Tests.
  void setBounds(size_t maxEntries, size_t maxBytes, size_t maxScratch = kDefaultScratch);
  size_t size() const { return lru_.size(); }
  size_t bytes() const { return bytes_; }
  PlanCacheCounters counters() const { return counters_; }

 private:
  using Entry = std::pair<std::string, std::unique_ptr<CachedPlan>>;
  void dropStale();
  void evict(const CachedPlan* keep);

  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t maxEntries_ = kDefaultEntries, maxBytes_ = kDefaultBytes, maxScratch_ = kDefaultScratch, bytes_ = 0;
  std::atomic<bool> stale_{false};
  PlanCacheCounters counters_;
};

// Host memory a built entry holds (problem, schedule, plan, scratch), approximately.
size_t cachedPlanBytes(const CachedPlan& e);

}  // namespace attn
}  // namespace attnccl
