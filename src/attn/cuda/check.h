// CUDA runtime helpers of the GPU backend: CUDA errors as attncclResult_t with a message naming
// the call, the current-device guard every entry point takes, and the capture-mode guard that
// lets the library allocate its own persistent buffers while the caller's stream is being
// captured into a CUDA graph (the allocation is not part of the graph; the buffer outlives it).
#pragma once

#include <cuda_runtime.h>

#include "core/result.h"

namespace attnccl {
namespace cuda {

// Records "<what> failed: <CUDA error name>: <description> (file:line)" and returns
// attncclUnhandledCudaError; clears the error if it is not sticky.
attncclResult_t cudaFail(cudaError_t e, const char* what, const char* file, int line);

// Makes `device` current for the scope, restoring the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  attncclResult_t status() const { return status_; }

 private:
  int previous_ = -1;
  attncclResult_t status_ = attncclSuccess;
};

// Relaxed stream-capture mode for this thread during the scope (cudaMalloc & co. are otherwise
// illegal while another stream of the process is capturing in global mode).
class RelaxedCapture {
 public:
  RelaxedCapture();
  ~RelaxedCapture();
  RelaxedCapture(const RelaxedCapture&) = delete;
  RelaxedCapture& operator=(const RelaxedCapture&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

}  // namespace cuda
}  // namespace attnccl

#define ATTN_CUDA(call)                                                                \
  do {                                                                                 \
    cudaError_t attn_cuda_e_ = (call);                                                 \
    if (attn_cuda_e_ != cudaSuccess)                                                   \
      return ::attnccl::cuda::cudaFail(attn_cuda_e_, #call, __FILE__, __LINE__);       \
  } while (0)
