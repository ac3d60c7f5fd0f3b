#include "attn/comm_state.h"

#include <algorithm>

#include "attn/group_view.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

Arena::~Arena() {
  if (region_.base) {
    regionUnregister(region_.base);
    regionDestroy(&region_);
  }
}

attncclResult_t Arena::ensure(size_t bytes, char** out) {
  if (region_.base == nullptr || region_.size < bytes) {
    if (region_.base) {
      regionUnregister(region_.base);
      regionDestroy(&region_);
    }
    // Grow geometrically so a sweep of sizes does not remap at every call.
    size_t want = bytes + bytes / 4 + 4096;
    ATTN_CHECK(regionCreate(want, "attnccl-attn", &region_));
    regionRegister(region_);
  }
  *out = static_cast<char*>(region_.base);
  return attncclSuccess;
}

AttnCommState& attnState(attncclComm* comm) {
  return *static_cast<AttnCommState*>(commExtension(comm, [] () -> CommExtension* { return new AttnCommState(); }));
}

AttnCommState::AttnCommState() = default;

void AttnCommState::abortViews() {
  std::lock_guard<std::mutex> lock(hybridMutex);
  for (auto& kv : hybridViews) {
    for (GroupView* v : {kv.second.group.get(), kv.second.ring.get()}) {
      if (v) v->abort();
    }
  }
}

std::shared_ptr<std::atomic<bool>> AttnCommState::kvCacheLink() {
  auto flag = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard<std::mutex> lock(kvMutex);
  // Forget the flags of destroyed caches, so a create/destroy loop does not grow the list.
  kvLinks.erase(std::remove_if(kvLinks.begin(), kvLinks.end(), [](const auto& w) { return w.expired(); }),
                kvLinks.end());
  kvLinks.push_back(flag);
  return flag;
}

void AttnCommState::raiseKvCacheLinks() {
  std::lock_guard<std::mutex> lock(kvMutex);
  for (const auto& w : kvLinks)
    if (auto f = w.lock()) f->store(true);
}

AttnCommState::~AttnCommState() {
  raiseKvCacheLinks();
  std::lock_guard<std::mutex> lock(hybridMutex);
  hybridViews.clear();
}

}  // namespace attn
}  // namespace attnccl
