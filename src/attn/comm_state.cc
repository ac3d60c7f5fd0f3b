#include "attn/comm_state.h"

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

void AttnCommState::abortSubComms() {
  std::lock_guard<std::mutex> lock(hybridMutex);
  for (auto& kv : hybridComms) {
    for (attncclComm_t c : {kv.second.first, kv.second.second}) c->aborted.store(true, std::memory_order_release);
  }
}

AttnCommState::~AttnCommState() {
  for (auto& kv : hybridComms) {
    attncclCommDestroy(kv.second.first);
    attncclCommDestroy(kv.second.second);
  }
}

}  // namespace attn
}  // namespace attnccl
