#include "attn/kvcache/cache.h"

#include <cstring>

#include "core/dtype.h"

namespace attnccl {
namespace attn {

KvState::~KvState() {
  if (shard.base) {
    regionUnregister(shard.base);
    regionDestroy(&shard);
  }
}

size_t KvState::elemBytes() const { return dtypeSize(shape.dtype); }

char* KvState::kAt(int h, int64_t s) const {
  return k + (static_cast<size_t>(h) * shardCapacity + s) * shape.headDim * elemBytes();
}

char* KvState::vAt(int h, int64_t s) const {
  return v + (static_cast<size_t>(h) * shardCapacity + s) * shape.headDim * elemBytes();
}

void kvStore(KvState& s, const void* k, const void* v, int64_t first, int64_t n) {
  const size_t rowBytes = static_cast<size_t>(s.shape.headDim) * s.elemBytes();
  const size_t tokenBytes = rowBytes * s.shape.numHeadsKV;
  const char* kc = static_cast<const char*>(k);
  const char* vc = static_cast<const char*>(v);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = first + t;
    if (s.place.owner(p) != s.rank) continue;
    const int64_t slot = s.place.slot(p);
    for (int h = 0; h < s.shape.numHeadsKV; ++h) {
      memcpy(s.kAt(h, slot), kc + t * tokenBytes + h * rowBytes, rowBytes);
      memcpy(s.vAt(h, slot), vc + t * tokenBytes + h * rowBytes, rowBytes);
    }
  }
}

}  // namespace attn
}  // namespace attnccl
