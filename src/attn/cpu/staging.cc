#include "attn/cpu/staging.h"

#include <algorithm>

#include "attn/cpu/rowops.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace cpu {

ThreadScratch& threadScratch() {
  static thread_local ThreadScratch scratch;
  return scratch;
}

TileStaging& callerStaging() {
  static thread_local TileStaging staging;
  return staging;
}

F32View stageRows(attncclDataType_t dtype, const void* src, int64_t ld, int64_t n, int64_t width,
                  std::vector<float>& store, ThreadPool& pool) {
  if (dtype == attncclFloat32) return {static_cast<const float*>(src), ld};
  store.resize(static_cast<size_t>(std::max<int64_t>(n * width, 1)));
  const RowOps& ops = rowOps();
  const char* base = static_cast<const char*>(src);
  size_t esz = dtypeSize(dtype);
  const int64_t kRowsPerItem = 64;
  float* dst = store.data();
  pool.run((n + kRowsPerItem - 1) / kRowsPerItem, [&](int64_t item, int) {
    int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t r = item * kRowsPerItem; r < r1; ++r)
      ops.toFloat(dtype, base + static_cast<size_t>(r * ld) * esz, dst + r * width, width);
  });
  return {store.data(), width};
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
