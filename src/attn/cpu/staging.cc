#include "attn/cpu/staging.h"

#include <algorithm>

#include "attn/cpu/rowops.h"
#include "attn/tile.h"
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

}  // namespace cpu

void releaseTileScratch() {
  cpu::TileStaging& s = cpu::callerStaging();
  for (std::vector<float>* v : {&s.q, &s.dout, &s.k, &s.v}) std::vector<float>().swap(*v);
}

namespace cpu {

HeadMajor stageHeads(attncclDataType_t dtype, const void* src, int64_t ld, int64_t hs, int64_t n, int heads,
                     int headDim, std::vector<float>& store, ThreadPool& pool, const std::function<void()>& between) {
  if (hs == 0) hs = headDim;
  // One fp32 head packed at headDim stride already is head-major: used in place (the KV cache's
  // head-major shards, MQA keys). Nothing to copy.
  if (dtype == attncclFloat32 && heads == 1 && ld == headDim) return {static_cast<const float*>(src), n, headDim};
  store.resize(static_cast<size_t>(std::max<int64_t>(n * heads * headDim, 1)));
  const RowOps& ops = rowOps();
  const char* base = static_cast<const char*>(src);
  const size_t esz = dtypeSize(dtype);
  const int64_t kRowsPerItem = 64;
  float* dst = store.data();
  pool.run((n + kRowsPerItem - 1) / kRowsPerItem, [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t r = item * kRowsPerItem; r < r1; ++r)
      for (int h = 0; h < heads; ++h)
        ops.toFloat(dtype, base + static_cast<size_t>(r * ld + h * hs) * esz,
                    dst + (h * n + r) * headDim, headDim);
  }, between);
  return {store.data(), n, headDim};
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
