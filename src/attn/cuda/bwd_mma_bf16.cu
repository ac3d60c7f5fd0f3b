// Backward tensor-core tiles, bf16: head dims 64 and 128 (padded).
#include "attn/cuda/kernel_entry.cuh"

namespace attnccl {
namespace cuda {

cudaError_t launchBwdMmaBf16(const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s) {
  return launchBwdMma<attn::gpu::Bf16>(p, l, s);
}

}  // namespace cuda
}  // namespace attnccl
