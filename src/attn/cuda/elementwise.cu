// The small kernels around the tiles: clearing and merging fp32 (O, LSE) accumulators,
// attncclMergeStates on device memory, Delta = rowsum(dO * O), rounding fp32 rows to the storage
// dtype, fp32 adds. Row-wise merges run one warp per (row, head): every lane reads the two LSEs,
// combines its share of the head dim, and lane 0 writes the new LSE after the warp has read it.
#include <cstdint>

#include "attn/cuda/check.h"
#include "attn/cuda/kernels.h"
#include "attn/gpu/simt.h"

namespace attnccl {
namespace cuda {
namespace {

using attn::gpu::Bf16;
using attn::gpu::F32;
using attn::gpu::Fp16;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

unsigned blocksFor(int64_t items, int64_t perBlock) {
  const int64_t b = (items + perBlock - 1) / perBlock;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 30) ? (int64_t{1} << 30) : b));
}

__global__ void clearKernel(float* o, int64_t rows, int heads, int headDim, int64_t ldo, float* lse, int64_t ldlse) {
  const int64_t width = static_cast<int64_t>(heads) * headDim;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * width; i += stride) {
    o[(i / width) * ldo + i % width] = 0.f;
  }
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * heads; i += stride) {
    lse[(i / rows) * ldlse + i % rows] = -INFINITY;
  }
}

template <class S>
__global__ void mergeKernel(void* o, float* lse, int64_t ldo, int64_t ldlse, const void* oB, const float* lseB,
                            int64_t ldoB, int64_t ldlseB, int64_t rows, int heads, int headDim) {
  const int lane = threadIdx.x & 31;
  const int64_t item = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + (threadIdx.x >> 5);
  if (item >= rows * heads) return;
  const int64_t row = item / heads;
  const int h = static_cast<int>(item % heads);
  const float la = lse[h * ldlse + row];
  const float lb = lseB[h * ldlseB + row];
  __syncwarp();
  float wa, wb;
  const float l = attn::gpu::mergeWeights(la, lb, &wa, &wb);
  if (wb == 0.f) return;  // B holds nothing for this row
  const int64_t a0 = row * ldo + static_cast<int64_t>(h) * headDim;
  const int64_t b0 = row * ldoB + static_cast<int64_t>(h) * headDim;
  for (int d = lane; d < headDim; d += 32) {
    const float va = wa != 0.f ? attn::gpu::loadElem<S>(o, a0 + d) * wa : 0.f;
    attn::gpu::storeElem<S>(o, a0 + d, va + attn::gpu::loadElem<S>(oB, b0 + d) * wb);
  }
  if (lane == 0) lse[h * ldlse + row] = l;
}

template <class S>
__global__ void deltaKernel(const void* out, const void* dout, int64_t rows, int heads, int headDim, int64_t ld,
                            float* delta, int64_t lddelta) {
  const int lane = threadIdx.x & 31;
  const int64_t item = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + (threadIdx.x >> 5);
  if (item >= rows * heads) return;
  const int64_t row = item / heads;
  const int h = static_cast<int>(item % heads);
  const int64_t base = row * ld + static_cast<int64_t>(h) * headDim;
  float s = 0.f;
  for (int d = lane; d < headDim; d += 32) {
    s += attn::gpu::loadElem<S>(out, base + d) * attn::gpu::loadElem<S>(dout, base + d);
  }
  s = attn::gpu::warpSum(s);
  if (lane == 0) delta[h * lddelta + row] = s;
}

template <class S>
__global__ void storeKernel(const float* src, int64_t ldsrc, void* dst, int64_t lddst, int64_t rows, int64_t width) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * width; i += stride) {
    const int64_t r = i / width, c = i % width;
    attn::gpu::storeElem<S>(dst, r * lddst + c, src[r * ldsrc + c]);
  }
}

__global__ void addKernel(float* dst, const float* src, int64_t width, int64_t n, int64_t dpitch, int64_t spitch,
                          bool copy) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const int64_t y = i / width, x = i % width;
    float& d = dst[y * dpitch + x];
    d = copy ? src[y * spitch + x] : d + src[y * spitch + x];
  }
}

attncclResult_t launched(const char* what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? attncclSuccess : cudaFail(e, what, __FILE__, __LINE__);
}

}  // namespace

attncclResult_t clearAccumulator(float* o, int64_t rows, int heads, int headDim, int64_t ldo, float* lse,
                                 int64_t ldlse, cudaStream_t stream) {
  if (rows <= 0) return attncclSuccess;
  clearKernel<<<blocksFor(rows * heads * headDim, kThreads * 4), kThreads, 0, stream>>>(o, rows, heads, headDim, ldo,
                                                                                         lse, ldlse);
  return launched("clear accumulator kernel");
}

attncclResult_t mergeAccumulators(float* o, float* lse, int64_t ldo, int64_t ldlse, const float* oB,
                                  const float* lseB, int64_t ldoB, int64_t ldlseB, int64_t rows, int heads,
                                  int headDim, cudaStream_t stream) {
  if (rows <= 0) return attncclSuccess;
  mergeKernel<F32><<<blocksFor(rows * heads, kWarpsPerBlock), kThreads, 0, stream>>>(o, lse, ldo, ldlse, oB, lseB,
                                                                                     ldoB, ldlseB, rows, heads, headDim);
  return launched("merge accumulators kernel");
}

attncclResult_t mergeStates(attncclDataType_t dtype, void* out, float* lse, const void* outB, const float* lseB,
                            int64_t tokens, int heads, int headDim, cudaStream_t stream) {
  if (tokens <= 0) return attncclSuccess;
  const int64_t ld = static_cast<int64_t>(heads) * headDim;
  const unsigned blocks = blocksFor(tokens * heads, kWarpsPerBlock);
  switch (dtype) {
    case attncclBfloat16:
      mergeKernel<Bf16><<<blocks, kThreads, 0, stream>>>(out, lse, ld, tokens, outB, lseB, ld, tokens, tokens, heads,
                                                         headDim);
      break;
    case attncclFloat16:
      mergeKernel<Fp16><<<blocks, kThreads, 0, stream>>>(out, lse, ld, tokens, outB, lseB, ld, tokens, tokens, heads,
                                                         headDim);
      break;
    default:
      mergeKernel<F32><<<blocks, kThreads, 0, stream>>>(out, lse, ld, tokens, outB, lseB, ld, tokens, tokens, heads,
                                                        headDim);
      break;
  }
  return launched("merge states kernel");
}

attncclResult_t computeDelta(attncclDataType_t dtype, const void* out, const void* dout, int64_t rows, int heads,
                             int headDim, int64_t ld, float* delta, int64_t lddelta, cudaStream_t stream) {
  if (rows <= 0) return attncclSuccess;
  const unsigned blocks = blocksFor(rows * heads, kWarpsPerBlock);
  switch (dtype) {
    case attncclBfloat16:
      deltaKernel<Bf16><<<blocks, kThreads, 0, stream>>>(out, dout, rows, heads, headDim, ld, delta, lddelta);
      break;
    case attncclFloat16:
      deltaKernel<Fp16><<<blocks, kThreads, 0, stream>>>(out, dout, rows, heads, headDim, ld, delta, lddelta);
      break;
    default:
      deltaKernel<F32><<<blocks, kThreads, 0, stream>>>(out, dout, rows, heads, headDim, ld, delta, lddelta);
      break;
  }
  return launched("delta kernel");
}

attncclResult_t storeRows(attncclDataType_t dtype, const float* src, int64_t ldsrc, void* dst, int64_t lddst,
                          int64_t rows, int64_t width, cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return attncclSuccess;
  const unsigned blocks = blocksFor(rows * width, kThreads * 4);
  switch (dtype) {
    case attncclBfloat16: storeKernel<Bf16><<<blocks, kThreads, 0, stream>>>(src, ldsrc, dst, lddst, rows, width); break;
    case attncclFloat16: storeKernel<Fp16><<<blocks, kThreads, 0, stream>>>(src, ldsrc, dst, lddst, rows, width); break;
    default: storeKernel<F32><<<blocks, kThreads, 0, stream>>>(src, ldsrc, dst, lddst, rows, width); break;
  }
  return launched("store rows kernel");
}

attncclResult_t addF32(float* dst, const float* src, int64_t width, int64_t height, int64_t dpitch, int64_t spitch,
                       bool copy, cudaStream_t stream) {
  const int64_t n = width * height;
  if (n <= 0) return attncclSuccess;
  addKernel<<<blocksFor(n, kThreads * 4), kThreads, 0, stream>>>(dst, src, width, n, dpitch, spitch, copy);
  return launched("add kernel");
}

}  // namespace cuda
}  // namespace attnccl
