#include "attn/plan_cache.h"

namespace attnccl {
namespace attn {

std::string PlanCache::keyOf(const AttnShape& s, int nranks, attncclAlgo_t algo, bool backward) {
  std::string k = shapeKey(s);
  for (int64_t v : {int64_t(nranks), int64_t(algo), int64_t(backward)}) {
    k.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  return k;
}

size_t cachedPlanBytes(const CachedPlan& e) {
  size_t b = sizeof(CachedPlan) + e.problem.shape.cuSeqlens.capacity() * sizeof(int64_t);
  for (const RankTokens& t : e.problem.tokens) b += sizeof(t) + (t.pos.capacity() + t.doc.capacity()) * sizeof(int64_t);
  for (const RankSchedule& r : e.schedule.ranks) {
    for (const Round& k : r.rounds) {
      b += sizeof(k) + k.transfers.capacity() * sizeof(Transfer) + k.tasks.capacity() * sizeof(Task);
    }
  }
  for (const PlannedRound& k : e.plan.rounds) {
    b += sizeof(k) + k.transfers.capacity() * sizeof(PlannedTransfer) + k.tasks.capacity() * sizeof(PlannedTask) +
         k.merges.capacity() * sizeof(PlannedMerge);
  }
  return b + e.scratch.bytes() + (e.extra ? e.extra->bytes() : 0);
}

void PlanCache::dropStale() {
  if (!stale_.load(std::memory_order_acquire)) return;
  counters_.invalidations += lru_.size();
  index_.clear();
  lru_.clear();
  bytes_ = 0;
  stale_.store(false, std::memory_order_relaxed);
}

CachedPlan* PlanCache::find(const std::string& key) {
  dropStale();
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++counters_.misses;
    return nullptr;
  }
  ++counters_.hits;
  if (it->second != lru_.begin()) lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second.get();
}

CachedPlan* PlanCache::insert(const std::string& key, std::unique_ptr<CachedPlan> entry) {
  dropStale();
  entry->bytes = cachedPlanBytes(*entry);
  CachedPlan* e = entry.get();
  // Both containers grow first (either may throw bad_alloc), so a failure leaves the cache as it
  // was and the caller's entry is simply dropped.
  lru_.emplace_front(key, std::move(entry));
  try {
    index_.emplace(key, lru_.begin());
  } catch (...) {
    lru_.pop_front();
    throw;
  }
  bytes_ += e->bytes;
  evict(e);
  return e;
}

void PlanCache::resized(CachedPlan* e) {
  if (e->scratch.bytes() > maxScratch_) e->scratch = ExecScratch();
  const size_t now = cachedPlanBytes(*e);
  bytes_ = bytes_ - e->bytes + now;
  e->bytes = now;
  evict(e);
}

void PlanCache::evict(const CachedPlan* keep) {
  while (!lru_.empty() && (lru_.size() > maxEntries_ || bytes_ > maxBytes_)) {
    if (lru_.back().second.get() == keep) break;  // the newest entry stays, however large
    bytes_ -= lru_.back().second->bytes;
    index_.erase(lru_.back().first);
    lru_.pop_back();
    ++counters_.evictions;
  }
}

void PlanCache::setBounds(size_t maxEntries, size_t maxBytes, size_t maxScratch) {
  maxEntries_ = maxEntries < 1 ? 1 : maxEntries;
  maxBytes_ = maxBytes;
  maxScratch_ = maxScratch;
  evict(lru_.empty() ? nullptr : lru_.front().second.get());
}

}  // namespace attn
}  // namespace attnccl
