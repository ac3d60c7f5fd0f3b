// One-thread kernels that write and wait for the cuda_ipc flags where the driver has no stream
// memory operations (transport/cuda_ipc.h). The release store publishes everything the stream
// did before it (copies included) to the whole system; the acquire load orders what follows.
#include <cstdint>

#include "transport/cuda_ipc.h"

namespace attnccl {
namespace cuda {
namespace {

__global__ void signalKernel(uint64_t* flag, uint64_t value) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(flag), "l"(value) : "memory");
}

__global__ void waitKernel(const uint64_t* flag, uint64_t value) {
  uint64_t v = 0;
  do {
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(flag) : "memory");
  } while (v < value);
}

}  // namespace

cudaError_t launchSignalKernel(uint64_t* flag, uint64_t value, cudaStream_t s) {
  signalKernel<<<1, 1, 0, s>>>(flag, value);
  return cudaGetLastError();
}

cudaError_t launchWaitKernel(const uint64_t* flag, uint64_t value, cudaStream_t s) {
  waitKernel<<<1, 1, 0, s>>>(flag, value);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace attnccl
