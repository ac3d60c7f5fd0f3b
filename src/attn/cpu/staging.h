// Scratch memory of the CPU tiles and the fp32 view of their inputs. fp32 inputs are used in
// place; bf16/fp16 inputs are converted once per tile call into fp32 copies (the BLAS works in
// fp32), so a K/V block shared by many query blocks and heads is converted once.
#pragma once

#include <cstdint>
#include <vector>

#include "attnccl.h"
#include "core/thread_pool.h"

namespace attnccl {
namespace attn {
namespace cpu {

// Per-thread scratch that grows and is kept: pool threads reuse it across tiles.
struct ThreadScratch {
  std::vector<float> s, dp, q, dq;
  std::vector<float> m, l;
  std::vector<int64_t> lo, hi;
  std::vector<uint8_t> touched;
};
ThreadScratch& threadScratch();

// fp32 copies of a tile's bf16/fp16 inputs, owned by the thread that calls the tile.
struct TileStaging {
  std::vector<float> q, dout, k, v;
};
TileStaging& callerStaging();

// An fp32 matrix view: element (row, col) at ptr[row * ld + col].
struct F32View {
  const float* ptr = nullptr;
  int64_t ld = 0;
};

// Returns an fp32 view of n rows of `width` elements (row stride ld) in dtype: the data itself
// for fp32, else a converted copy in `store` (rows converted in parallel on the pool).
F32View stageRows(attncclDataType_t dtype, const void* src, int64_t ld, int64_t n, int64_t width,
                  std::vector<float>& store, ThreadPool& pool);

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
