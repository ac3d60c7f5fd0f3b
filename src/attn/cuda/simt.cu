// Generic SIMT tiles (attn/gpu/simt.h): fp32, bf16 and fp16 storage, any head dim up to 256.
#include "attn/cuda/kernel_entry.cuh"

namespace attnccl {
namespace cuda {
namespace {

using attn::gpu::SimtConfig;

template <class S>
__global__ void __launch_bounds__(SimtConfig::kThreads) fwdSimtKernel(const attn::gpu::FwdParams p) {
  extern __shared__ __align__(128) char smem[];
  attn::gpu::fwdSimtTile<S>(p, smem);
}

template <class S>
__global__ void __launch_bounds__(SimtConfig::kThreads) bwdSimtDqKernel(const attn::gpu::BwdParams p) {
  extern __shared__ __align__(128) char smem[];
  attn::gpu::bwdSimtDq<S>(p, smem);
}

template <class S>
__global__ void __launch_bounds__(SimtConfig::kThreads) bwdSimtDkvKernel(const attn::gpu::BwdParams p) {
  extern __shared__ __align__(128) char smem[];
  attn::gpu::bwdSimtDkv<S>(p, smem);
}

template <class S>
cudaError_t bwd(const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s) {
  cudaError_t e = launchWith(bwdSimtDqKernel<S>, p, l.gridX2, l.gridY2, l.threads, l.smemBytes, s);
  if (e != cudaSuccess) return e;
  return launchWith(bwdSimtDkvKernel<S>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
}

}  // namespace

cudaError_t launchFwdSimt(attncclDataType_t dtype, const attn::gpu::FwdParams& p, const attn::gpu::TileLaunch& l,
                          cudaStream_t s) {
  switch (dtype) {
    case attncclBfloat16: return launchWith(fwdSimtKernel<attn::gpu::Bf16>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
    case attncclFloat16: return launchWith(fwdSimtKernel<attn::gpu::Fp16>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
    default: return launchWith(fwdSimtKernel<attn::gpu::F32>, p, l.gridX, l.gridY, l.threads, l.smemBytes, s);
  }
}

cudaError_t launchBwdSimt(attncclDataType_t dtype, const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l,
                          cudaStream_t s) {
  switch (dtype) {
    case attncclBfloat16: return bwd<attn::gpu::Bf16>(p, l, s);
    case attncclFloat16: return bwd<attn::gpu::Fp16>(p, l, s);
    default: return bwd<attn::gpu::F32>(p, l, s);
  }
}

}  // namespace cuda
}  // namespace attnccl
