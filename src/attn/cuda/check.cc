#include "attn/cuda/check.h"

namespace attnccl {
namespace cuda {

attncclResult_t cudaFail(cudaError_t e, const char* what, const char* file, int line) {
  (void)cudaGetLastError();  // a non-sticky error must not fail the next call
  return fail(attncclUnhandledCudaError, "%s failed: %s: %s (%s:%d)", what, cudaGetErrorName(e), cudaGetErrorString(e),
              file, line);
}

DeviceGuard::DeviceGuard(int device) {
  cudaError_t e = cudaGetDevice(&previous_);
  if (e == cudaSuccess && previous_ != device) e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    status_ = cudaFail(e, "cudaSetDevice", __FILE__, __LINE__);
    previous_ = -1;
  }
}

DeviceGuard::~DeviceGuard() {
  int cur = -1;
  if (previous_ >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != previous_) (void)cudaSetDevice(previous_);
}

RelaxedCapture::RelaxedCapture() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }
RelaxedCapture::~RelaxedCapture() { (void)cudaThreadExchangeStreamCaptureMode(&mode_); }

}  // namespace cuda
}  // namespace attnccl
