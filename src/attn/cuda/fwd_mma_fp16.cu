// Forward tensor-core tiles, fp16: head dims 64 and 128 (padded).
#include "attn/cuda/kernel_entry.cuh"

namespace attnccl {
namespace cuda {

cudaError_t launchFwdMmaFp16(const attn::gpu::FwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s) {
  return launchFwdMma<attn::gpu::Fp16>(p, l, s);
}

}  // namespace cuda
}  // namespace attnccl
