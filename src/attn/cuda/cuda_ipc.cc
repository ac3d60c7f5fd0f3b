#include "attn/cuda/cuda_ipc.h"

#include <unistd.h>

#include <cstring>

#include "attn/cuda/check.h"
#include "comm/comm.h"
#include "core/log.h"

namespace attnccl {
namespace cuda {
namespace {

// What each rank tells its peers about one allocation.
struct WindowRecord {
  int32_t pid;
  int32_t device;
  int32_t exported;  // 0 when the handle could not be made (only peers in this process can map)
  int32_t unused;
  uint64_t pointer;  // for peers in the same process
  cudaIpcMemHandle_t handle;
};

// The IPC handle of an allocation; where CUDA IPC is unavailable, peers in the same process
// still use the pointer, so that is not an error here.
void exportHandle(void* p, WindowRecord* rec) {
  rec->exported = cudaIpcGetMemHandle(&rec->handle, p) == cudaSuccess ? 1 : 0;
  if (!rec->exported) (void)cudaGetLastError();
}

}  // namespace

attncclResult_t IpcWindows::create(attncclComm* comm, int device, std::unique_ptr<IpcWindows>* out) {
  std::unique_ptr<IpcWindows> w(new IpcWindows());
  w->comm_ = comm;
  w->rank_ = comm->rank;
  w->nranks_ = comm->nranks;
  w->device_ = device;
  w->peers_.resize(comm->nranks);
  for (int r = 0; r < comm->nranks; ++r) {
    if (comm->peers[r].hostHash != comm->peers[comm->rank].hostHash) {
      return fail(attncclNotSupported,
                  "CUDA communicator: rank %d is on another node (%s); only ranks of one node are supported on GPUs "
                  "so far (cuda_ipc)",
                  r, comm->peers[r].hostname.c_str());
    }
  }
  const size_t flagBytes = (2 * static_cast<size_t>(comm->nranks) + 2) * sizeof(uint64_t);
  {
    RelaxedCapture relaxed;
    ATTN_CUDA(cudaMalloc(&w->flags_, flagBytes));
    ATTN_CUDA(cudaMemset(w->flags_, 0, flagBytes));
    ATTN_CUDA(cudaDeviceSynchronize());
  }
  w->epoch_ = w->flags_ + 2 * comm->nranks;
  WindowRecord mine;
  memset(&mine, 0, sizeof mine);
  mine.pid = getpid();
  mine.device = device;
  mine.pointer = reinterpret_cast<uint64_t>(w->flags_);
  exportHandle(w->flags_, &mine);
  std::vector<char> all;
  ATTN_CHECK(w->exchange(&mine, sizeof mine, &all));
  for (int r = 0; r < comm->nranks; ++r) {
    WindowRecord rec;
    memcpy(&rec, all.data() + r * sizeof rec, sizeof rec);
    w->peers_[r].pid = rec.pid;
    w->peers_[r].device = rec.device;
    char* mapped = nullptr;
    ATTN_CHECK(w->mapPeer(r, rec.exported ? &rec.handle : nullptr, rec.pointer, &mapped));
    w->peers_[r].flags = reinterpret_cast<uint64_t*>(mapped);
  }
  ATTN_INFO(kSubInit, "cuda_ipc: rank %d of %d ready", comm->rank, comm->nranks);
  *out = std::move(w);
  return attncclSuccess;
}

IpcWindows::~IpcWindows() {
  for (Peer& p : peers_)
    for (char* m : p.opened) (void)cudaIpcCloseMemHandle(m);
  for (char* r : retired_) (void)cudaFree(r);
  if (data_ != nullptr) (void)cudaFree(data_);
  if (flags_ != nullptr) (void)cudaFree(flags_);
}

attncclResult_t IpcWindows::exchange(void* mine, size_t bytes, std::vector<char>* all) {
  all->assign(bytes * nranks_, 0);
  return comm_->engine.allGatherSmall(mine, bytes, all->data());
}

attncclResult_t IpcWindows::mapPeer(int r, const void* handle, uint64_t rawPointer, char** out) {
  if (r == rank_ || peers_[r].pid == getpid()) {
    // Same process: the pointer itself; another device of this process needs peer access.
    if (peers_[r].device != device_) {
      cudaError_t e = cudaDeviceEnablePeerAccess(peers_[r].device, 0);
      if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
        return cudaFail(e, "cudaDeviceEnablePeerAccess", __FILE__, __LINE__);
      }
      (void)cudaGetLastError();
    }
    *out = reinterpret_cast<char*>(rawPointer);
    return attncclSuccess;
  }
  if (handle == nullptr) {
    return fail(attncclNotSupported, "cuda_ipc: rank %d (pid %d) could not export a CUDA IPC handle, so ranks in other "
                "processes cannot map its memory", r, peers_[r].pid);
  }
  cudaIpcMemHandle_t h;
  memcpy(&h, handle, sizeof h);
  void* p = nullptr;
  RelaxedCapture relaxed;
  cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fail(attncclUnhandledCudaError, "cuda_ipc: cannot map rank %d's window (pid %d, device %d): %s", r,
                peers_[r].pid, peers_[r].device, cudaGetErrorString(e));
  }
  peers_[r].opened.push_back(static_cast<char*>(p));
  *out = static_cast<char*>(p);
  return attncclSuccess;
}

attncclResult_t IpcWindows::ensureData(size_t bytes) {
  if (bytes <= dataBytes_ && data_ != nullptr) return attncclSuccess;
  size_t want = dataBytes_ + dataBytes_ / 2 > bytes ? dataBytes_ + dataBytes_ / 2 : bytes;
  if (want < (size_t{1} << 20)) want = size_t{1} << 20;
  char* p = nullptr;
  {
    RelaxedCapture relaxed;
    cudaError_t e = cudaMalloc(&p, want);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return fail(attncclSystemError, "out of device memory: cuda_ipc window of %zu bytes (%s)", want,
                  cudaGetErrorString(e));
    }
  }
  if (data_ != nullptr) retired_.push_back(data_);
  data_ = p;
  dataBytes_ = want;
  WindowRecord mine;
  memset(&mine, 0, sizeof mine);
  mine.pid = getpid();
  mine.device = device_;
  mine.pointer = reinterpret_cast<uint64_t>(p);
  exportHandle(p, &mine);
  std::vector<char> all;
  ATTN_CHECK(exchange(&mine, sizeof mine, &all));
  for (int r = 0; r < nranks_; ++r) {
    WindowRecord rec;
    memcpy(&rec, all.data() + r * sizeof rec, sizeof rec);
    ATTN_CHECK(mapPeer(r, rec.exported ? &rec.handle : nullptr, rec.pointer, &peers_[r].data));
  }
  return attncclSuccess;
}

attncclResult_t IpcWindows::beginCall(cudaStream_t s, uint64_t count) {
  ATTN_CUDA(launchAdvanceKernel(epoch_, count, s));
  return attncclSuccess;
}

attncclResult_t IpcWindows::signal(cudaStream_t s, int peer, FlagKind kind, uint64_t rel) {
  ATTN_CUDA(launchSignalKernel(flagAt(peer, kind, rank_), epoch_, rel, s));
  return attncclSuccess;
}

attncclResult_t IpcWindows::wait(cudaStream_t s, int from, FlagKind kind, uint64_t rel) {
  ATTN_CUDA(launchWaitKernel(flagAt(rank_, kind, from), epoch_, rel, s));
  return attncclSuccess;
}

}  // namespace cuda
}  // namespace attnccl
