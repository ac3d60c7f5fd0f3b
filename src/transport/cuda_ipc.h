// The cuda_ipc transport: GPU memory shared between the ranks of one node, for the
// stream-ordered multi-rank executor (attn/cuda/dev_executor.cc).
//
// Every rank owns a window in device memory that its peers map:
//   flags  uint64 [2][nranks], allocated once and zeroed at creation, written by peers:
//            kData[from]:  `from` has finished writing a round's data into this window
//            kReady[from]: `from` no longer reads the slots it receives into next, so this
//                          rank may write into from's window
//          values are sequence numbers and only grow
//   data   the receive slots and accumulators of the executor; grown collectively
// A sender copies into the receiver's data window with the copy engine (cudaMemcpy on a stream)
// and then writes the receiver's kData flag from the same stream; the receiver's stream waits
// for that flag before it reads. Before writing, the sender's stream waits for its own
// kReady[receiver] flag, which the receiver writes when it no longer reads the slots of earlier
// rounds. Flags are written and waited for by the GPU's stream memory operations (no kernel, no
// SM held while waiting), or by one-thread kernels where the driver lacks them.
//
// Handles travel over the communicator's engine (host messages), once at creation for the flags
// and again whenever the data windows grow; every rank calls ensureData() with the same size,
// so growth needs no agreement round. Peers in this process use the pointer itself (CUDA IPC
// cannot open a handle of its own process); peers in other processes open the handle.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "attnccl.h"

struct attncclComm;

namespace attnccl {
namespace cuda {

enum FlagKind : int { kFlagData = 0, kFlagReady = 1 };

class IpcWindows {
 public:
  // Exchanges identities and flag windows with every peer (all ranks call it). Every peer must
  // be on this node.
  static attncclResult_t create(attncclComm* comm, int device, std::unique_ptr<IpcWindows>* out);
  ~IpcWindows();

  // Makes every rank's data window at least `bytes` (collective; same value on all ranks).
  attncclResult_t ensureData(size_t bytes);
  // Base of `rank`'s data window as this rank addresses it (its own: local memory).
  char* data(int rank) const { return peers_[rank].data; }
  // Writes peer's flag [kind][this rank] = value once the work before it on `s` is done.
  attncclResult_t signal(cudaStream_t s, int peer, FlagKind kind, uint64_t value);
  // Makes `s` wait until this rank's flag [kind][from] >= value.
  attncclResult_t wait(cudaStream_t s, int from, FlagKind kind, uint64_t value);
  // Sequence numbers: every rank advances them identically (same calls, same schedules).
  uint64_t nextSequence(uint64_t count) {
    const uint64_t base = seq_;
    seq_ += count;
    return base;
  }
  bool streamMemOps() const { return memOps_; }

 private:
  struct Peer {
    int pid = 0;
    int device = -1;
    char* data = nullptr;
    uint64_t* flags = nullptr;
    std::vector<char*> opened;  // IPC mappings to close at destruction
  };
  IpcWindows() = default;
  attncclResult_t exchange(void* mine, size_t bytes, std::vector<char>* all);
  attncclResult_t mapPeer(int r, const void* handle, uint64_t rawPointer, char** out);
  uint64_t* flagAt(int rank, FlagKind kind, int from) const { return peers_[rank].flags + kind * nranks_ + from; }

  attncclComm* comm_ = nullptr;
  int rank_ = 0, nranks_ = 1, device_ = -1;
  std::vector<Peer> peers_;
  uint64_t* flags_ = nullptr;  // own flags
  char* data_ = nullptr;       // own data window
  size_t dataBytes_ = 0;
  std::vector<char*> retired_;  // replaced data windows (work or graphs may still use them)
  uint64_t seq_ = 1;
  bool memOps_ = false;
  void* writeValue64_ = nullptr;  // cuStreamWriteValue64 / cuStreamWaitValue64 (driver entry points)
  void* waitValue64_ = nullptr;
};

// One-thread kernels that stand in for the stream memory operations (attn/cuda/flags.cu).
cudaError_t launchSignalKernel(uint64_t* flag, uint64_t value, cudaStream_t s);
cudaError_t launchWaitKernel(const uint64_t* flag, uint64_t value, cudaStream_t s);

}  // namespace cuda
}  // namespace attnccl
