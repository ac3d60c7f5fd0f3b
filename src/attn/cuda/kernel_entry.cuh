// __global__ entries of the kernel bodies of src/attn/gpu and their launch, shared by the
// per-(dtype) .cu files so that each file instantiates only its own kernels.
#pragma once

#include "attn/cuda/kernels.h"
#include "attn/gpu/bwd_mma.h"
#include "attn/gpu/fwd_mma.h"
#include "attn/gpu/kernel_config.h"
#include "attn/gpu/simt.h"

namespace attnccl {
namespace cuda {

template <class Cfg, class T>
__global__ void __launch_bounds__(Cfg::kThreads) fwdMmaKernel(const attn::gpu::FwdParams p) {
  extern __shared__ __align__(128) char smem[];
  attn::gpu::fwdMmaTile<Cfg, T>(p, smem);
}

template <class Cfg, class T>
__global__ void __launch_bounds__(Cfg::kThreads) bwdMmaKernel(const attn::gpu::BwdParams p) {
  extern __shared__ __align__(128) char smem[];
  attn::gpu::bwdMmaTile<Cfg, T>(p, smem);
}

// Launches kernel `k` with the plan's grid and dynamic shared memory (raising the per-kernel
// limit past the 48 KB default first).
template <typename Kernel, typename Params>
cudaError_t launchWith(Kernel k, const Params& p, int gx, int gy, int threads, size_t smem, cudaStream_t s) {
  if (gx <= 0 || gy <= 0) return cudaSuccess;
  cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  k<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), threads, smem, s>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t launchFwdMma(const attn::gpu::FwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s) {
  using attn::gpu::TileKernel;
  if (l.kernel == TileKernel::kMma64)
    return launchWith(fwdMmaKernel<attn::gpu::FwdMma64, T>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
  return launchWith(fwdMmaKernel<attn::gpu::FwdMma128, T>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
}

template <class T>
cudaError_t launchBwdMma(const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s) {
  using attn::gpu::TileKernel;
  if (l.kernel == TileKernel::kMma64)
    return launchWith(bwdMmaKernel<attn::gpu::BwdMma64, T>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
  return launchWith(bwdMmaKernel<attn::gpu::BwdMma128, T>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
}

}  // namespace cuda
}  // namespace attnccl
