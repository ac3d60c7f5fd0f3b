// The one-thread kernels of the cuda_ipc flags (attn/cuda/cuda_ipc.h). A call's values are its
// epoch base (epoch[0], set by the advance kernel at the call's start) plus the program's
// relative value, read when the kernel runs, so a replayed CUDA graph uses fresh values. The
// release store publishes everything the stream did before it (copies included) to the whole
// system; the acquire load orders what follows the wait.
#include <cstdint>

#include "attn/cuda/cuda_ipc.h"

namespace attnccl {
namespace cuda {
namespace {

__global__ void advanceKernel(uint64_t* epoch, uint64_t count) {
  epoch[0] = epoch[1];
  epoch[1] += count;
}

__global__ void signalKernel(uint64_t* flag, const uint64_t* epoch, uint64_t rel) {
  const uint64_t value = epoch[0] + rel;
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(flag), "l"(value) : "memory");
}

__global__ void waitKernel(const uint64_t* flag, const uint64_t* epoch, uint64_t rel) {
  const uint64_t target = epoch[0] + rel;
  uint64_t v = 0;
  do {
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(flag) : "memory");
  } while (v < target);
}

}  // namespace

cudaError_t launchAdvanceKernel(uint64_t* epoch, uint64_t count, cudaStream_t s) {
  advanceKernel<<<1, 1, 0, s>>>(epoch, count);
  return cudaGetLastError();
}

cudaError_t launchSignalKernel(uint64_t* flag, const uint64_t* epoch, uint64_t rel, cudaStream_t s) {
  signalKernel<<<1, 1, 0, s>>>(flag, epoch, rel);
  return cudaGetLastError();
}

cudaError_t launchWaitKernel(const uint64_t* flag, const uint64_t* epoch, uint64_t rel, cudaStream_t s) {
  waitKernel<<<1, 1, 0, s>>>(flag, epoch, rel);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace attnccl
