#include "attn/cpu/staging.h"

#include <algorithm>
#include <cstring>

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
  for (std::vector<float>* v : {&s.q, &s.dout, &s.k, &s.v, &s.kp, &s.vp}) std::vector<float>().swap(*v);
}

namespace cpu {

HeadMajor stageHeads(attncclDataType_t dtype, const void* src, int64_t ld, int64_t hs, int64_t n, int heads,
                     int headDim, std::vector<float>& store, ThreadPool& pool, const std::function<void()>& between,
                     bool keepBf16) {
  if (hs == 0) hs = headDim;
  // One fp32 head packed at headDim stride already is head-major: used in place (the KV cache's
  // head-major shards, MQA keys). Nothing to copy.
  if (dtype == attncclFloat32 && heads == 1 && ld == headDim)
    return {static_cast<const char*>(src), sizeof(float), n, headDim};
  const bool raw = keepBf16 && dtype == attncclBfloat16;
  const size_t outSize = raw ? 2 : 4;
  const size_t elems = static_cast<size_t>(std::max<int64_t>(n * heads * headDim, 1));
  store.resize((elems * outSize + 3) / 4);
  const RowOps& ops = rowOps();
  const char* base = static_cast<const char*>(src);
  const size_t esz = dtypeSize(dtype);
  const int64_t kRowsPerItem = 64;
  char* dst = reinterpret_cast<char*>(store.data());
  pool.run((n + kRowsPerItem - 1) / kRowsPerItem, [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t r = item * kRowsPerItem; r < r1; ++r)
      for (int h = 0; h < heads; ++h) {
        const char* from = base + static_cast<size_t>(r * ld + h * hs) * esz;
        char* to = dst + static_cast<size_t>((h * n + r) * headDim) * outSize;
        if (raw)
          std::memcpy(to, from, static_cast<size_t>(headDim) * 2);
        else
          ops.toFloat(dtype, from, reinterpret_cast<float*>(to), headDim);
      }
  }, between);
  return {reinterpret_cast<const char*>(store.data()), outSize, n, headDim};
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
