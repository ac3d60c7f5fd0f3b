// Dispatch of the GPU attention tiles: the launch plan (attn/gpu/kernel_select.h) picks the
// kernel; the per-dtype files launch it.
#include "attn/cuda/check.h"
#include "attn/cuda/kernels.h"

namespace attnccl {
namespace cuda {

using attn::gpu::TileKernel;

attncclResult_t forwardTile(attncclDataType_t dtype, const attn::gpu::FwdParams& p, cudaStream_t stream) {
  const attn::gpu::TileLaunch l = attn::gpu::planForward(dtype, p);
  cudaError_t e = cudaSuccess;
  switch (l.kernel) {
    case TileKernel::kNone: return attncclSuccess;
    case TileKernel::kMma64:
    case TileKernel::kMma128:
      e = dtype == attncclBfloat16 ? launchFwdMmaBf16(p, l, stream) : launchFwdMmaFp16(p, l, stream);
      break;
    case TileKernel::kSimt: e = launchFwdSimt(dtype, p, l, stream); break;
  }
  if (e != cudaSuccess) {
    return cudaFail(e, attn::gpu::tileKernelName(l.kernel), __FILE__, __LINE__);
  }
  return attncclSuccess;
}

attncclResult_t backwardTile(attncclDataType_t dtype, const attn::gpu::BwdParams& p, cudaStream_t stream) {
  const attn::gpu::TileLaunch l = attn::gpu::planBackward(dtype, p);
  cudaError_t e = cudaSuccess;
  switch (l.kernel) {
    case TileKernel::kNone: return attncclSuccess;
    case TileKernel::kMma64:
    case TileKernel::kMma128:
      e = dtype == attncclBfloat16 ? launchBwdMmaBf16(p, l, stream) : launchBwdMmaFp16(p, l, stream);
      break;
    case TileKernel::kSimt: e = launchBwdSimt(dtype, p, l, stream); break;
  }
  if (e != cudaSuccess) {
    return cudaFail(e, attn::gpu::tileKernelName(l.kernel), __FILE__, __LINE__);
  }
  return attncclSuccess;
}

}  // namespace cuda
}  // namespace attnccl
