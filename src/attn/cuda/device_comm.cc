#include "attn/cuda/device_comm.h"

#include <cstring>

#include "attn/cuda/check.h"
#include "attn/cuda/dev_executor.h"
#include "comm/comm.h"
#include "core/log.h"
#include "attn/cuda/cuda_ipc.h"

namespace attnccl {

void DeviceCommDeleter::operator()(DeviceComm* d) const { delete d; }

DeviceArena::~DeviceArena() {
  if (ptr_ != nullptr) (void)cudaFree(ptr_);
  for (char* p : retired_) (void)cudaFree(p);
}

attncclResult_t DeviceArena::ensure(size_t bytes, char** out) {
  if (bytes > bytes_ || ptr_ == nullptr) {
    // Grow by at least half so that a slowly growing sequence length does not reallocate often.
    size_t want = bytes_ + bytes_ / 2 > bytes ? bytes_ + bytes_ / 2 : bytes;
    if (want < 4096) want = 4096;
    cuda::RelaxedCapture relaxed;
    char* p = nullptr;
    cudaError_t e = cudaMalloc(&p, want);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return fail(attncclSystemError, "out of device memory: scratch of %zu bytes (%s)", want, cudaGetErrorString(e));
    }
    if (ptr_ != nullptr) retired_.push_back(ptr_);
    ptr_ = p;
    bytes_ = want;
  }
  *out = ptr_;
  return attncclSuccess;
}

DeviceConstCache::~DeviceConstCache() {
  for (auto& kv : entries_) {
    (void)cudaFreeHost(kv.second.host);
    (void)cudaFree(kv.second.dev);
  }
}

const int64_t* DeviceConstCache::find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second.dev;
}

attncclResult_t DeviceConstCache::add(const std::string& key, const std::vector<int64_t>& data, cudaStream_t stream,
                                      const int64_t** out) {
  const size_t bytes = (data.empty() ? 1 : data.size()) * sizeof(int64_t);
  Entry e;
  {
    cuda::RelaxedCapture relaxed;
    ATTN_CUDA(cudaMallocHost(&e.host, bytes));
    cudaError_t err = cudaMalloc(&e.dev, bytes);
    if (err != cudaSuccess) {
      (void)cudaFreeHost(e.host);
      return cuda::cudaFail(err, "cudaMalloc (token metadata)", __FILE__, __LINE__);
    }
  }
  if (!data.empty()) memcpy(e.host, data.data(), data.size() * sizeof(int64_t));
  entries_[key] = e;
  ATTN_CUDA(cudaMemcpyAsync(e.dev, e.host, bytes, cudaMemcpyHostToDevice, stream));
  *out = e.dev;
  return attncclSuccess;
}

DeviceComm::~DeviceComm() {
  if (device < 0) return;
  cuda::DeviceGuard guard(device);
  // Work still queued on the comm's streams may use the memory released below.
  if (stream != nullptr) (void)cudaStreamSynchronize(stream);
  if (copyStream != nullptr) (void)cudaStreamSynchronize(copyStream);
  ipc.reset();
  for (cudaEvent_t e : roundEvents) (void)cudaEventDestroy(e);
  if (enter != nullptr) (void)cudaEventDestroy(enter);
  if (leave != nullptr) (void)cudaEventDestroy(leave);
  if (copyStream != nullptr) (void)cudaStreamDestroy(copyStream);
  if (stream != nullptr) (void)cudaStreamDestroy(stream);
}

attncclResult_t deviceCheckOrdinal(int device) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fail(attncclInvalidArgument, "config->device is %d but no CUDA device is usable here (%s: %s)", device,
                cudaGetErrorName(e), cudaGetErrorString(e));
  }
  if (device >= count) {
    return fail(attncclInvalidArgument, "config->device is %d but this process sees %d CUDA device(s) (0..%d)", device,
                count, count - 1);
  }
  return attncclSuccess;
}

attncclResult_t deviceCommInit(attncclComm* comm) {
  const int device = comm->config.device;
  ATTN_CHECK(deviceCheckOrdinal(device));
  cuda::DeviceGuard guard(device);
  ATTN_CHECK(guard.status());
  std::unique_ptr<DeviceComm, DeviceCommDeleter> d(new DeviceComm());
  d->device = device;
  ATTN_CUDA(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
  ATTN_CUDA(cudaStreamCreateWithFlags(&d->copyStream, cudaStreamNonBlocking));
  ATTN_CUDA(cudaEventCreateWithFlags(&d->enter, cudaEventDisableTiming));
  ATTN_CUDA(cudaEventCreateWithFlags(&d->leave, cudaEventDisableTiming));
  if (comm->nranks > 1) ATTN_CHECK(cuda::IpcWindows::create(comm, device, &d->ipc));
  ATTN_INFO(kSubInit, "comm %p rank %d on CUDA device %d", static_cast<void*>(comm), comm->rank, device);
  comm->dev = std::move(d);
  return attncclSuccess;
}

namespace cuda {

attncclResult_t streamBegin(DeviceComm* d, cudaStream_t user) {
  ATTN_CUDA(cudaEventRecord(d->enter, user));
  ATTN_CUDA(cudaStreamWaitEvent(d->stream, d->enter, 0));
  return attncclSuccess;
}

attncclResult_t streamEnd(DeviceComm* d, cudaStream_t user) {
  ATTN_CUDA(cudaEventRecord(d->leave, d->stream));
  ATTN_CUDA(cudaStreamWaitEvent(user, d->leave, 0));
  return attncclSuccess;
}

attncclResult_t ensureEvents(DeviceComm* d, size_t n) {
  RelaxedCapture relaxed;
  while (d->roundEvents.size() < n) {
    cudaEvent_t e;
    ATTN_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    d->roundEvents.push_back(e);
  }
  return attncclSuccess;
}

}  // namespace cuda
}  // namespace attnccl
