// Scratch memory of the CPU tiles and the fp32, head-major copies of their inputs. Inputs are
// copied (and converted from bf16/fp16) once per tile call into [head][token][headDim] fp32: the
// BLAS works in fp32, a K/V block shared by many query blocks and heads is converted once, and
// the GEMMs read rows packed at headDim stride instead of the tensors' numHeads*headDim stride,
// whose power-of-two strides alias in the caches (measured: src/attn/cpu/README.md). On the
// bf16 GEMM path (cpu/gemm.h) bf16 inputs are copied as bf16 instead: no conversion at all.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "attnccl.h"
#include "core/thread_pool.h"

namespace attnccl {
namespace attn {
namespace cpu {

// Per-thread scratch that grows and is kept: pool threads reuse it across tiles.
struct ThreadScratch {
  std::vector<float> s, p, dp, q, o, dq, dk, dv;
  std::vector<uint16_t> qh, ph;  // bf16 path: the query block, P (or dS) as bf16
  std::vector<float> m, l;
  std::vector<int64_t> lo, hi;
  std::vector<uint8_t> touched;
};
ThreadScratch& threadScratch();

// fp32 copies of a tile's bf16/fp16 inputs, owned by the thread that calls the tile.
struct TileStaging {
  std::vector<float> q, dout, k, v;
  // The packed kernels' panels (cpu/packed_gemm.h): forward K as key and V as value panels;
  // backward K and V as key panels and K as value panels (kv).
  std::vector<float> kp, vp, kv;
};
TileStaging& callerStaging();

// Head-major data (fp32, or bf16 on the bf16 path): row `token` of head `h` at element
// (h * n + token) * headDim.
struct HeadMajor {
  const char* ptr = nullptr;
  size_t elemSize = 4;
  int64_t n = 0;
  int64_t headDim = 0;
  const void* row(int64_t h, int64_t token) const {
    return ptr + static_cast<size_t>((h * n + token) * headDim) * elemSize;
  }
};

// Copies n tokens of `heads` heads (row stride ld, head stride hs elements, 0 = headDim; storage
// dtype) into `store` as head-major fp32 (or, with keepBf16 and bf16 input, as bf16), in
// parallel on the pool (`between` as in ThreadPool::run).
HeadMajor stageHeads(attncclDataType_t dtype, const void* src, int64_t ld, int64_t hs, int64_t n, int heads,
                     int headDim, std::vector<float>& store, ThreadPool& pool, const std::function<void()>& between,
                     bool keepBf16 = false);

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
