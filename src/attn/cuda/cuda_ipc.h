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
// rounds.
//
// Sequence numbers are read on the device: a call starts with a one-thread kernel that moves
// this rank's epoch (epoch[0] = the call's base, epoch[1] += the call's count), and the signal
// and wait kernels use epoch[0] + the program's relative value. Values baked in when the call
// is enqueued would repeat in every replay of a captured CUDA graph (a second replay's waits
// would pass at once); read from the epoch, every replay advances them like a new call. Every
// rank advances its epoch identically (same calls, same replays, as NCCL requires). The waits
// spin in one thread with acquire loads; the stores are release stores at system scope.
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
  // Starts a call that uses `count` sequence numbers (on the stream that runs the call first).
  attncclResult_t beginCall(cudaStream_t s, uint64_t count);
  // Writes peer's flag [kind][this rank] = the call's base + rel once the work before it on `s`
  // is done.
  attncclResult_t signal(cudaStream_t s, int peer, FlagKind kind, uint64_t rel);
  // Makes `s` wait until this rank's flag [kind][from] >= the call's base + rel.
  attncclResult_t wait(cudaStream_t s, int from, FlagKind kind, uint64_t rel);

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
  uint64_t* flags_ = nullptr;  // own flags, then the epoch (2 values)
  uint64_t* epoch_ = nullptr;
  char* data_ = nullptr;       // own data window
  size_t dataBytes_ = 0;
  std::vector<char*> retired_;  // replaced data windows (work or graphs may still use them)
};

// The one-thread kernels of the flags (attn/cuda/flags.cu).
cudaError_t launchAdvanceKernel(uint64_t* epoch, uint64_t count, cudaStream_t s);
cudaError_t launchSignalKernel(uint64_t* flag, const uint64_t* epoch, uint64_t rel, cudaStream_t s);
cudaError_t launchWaitKernel(const uint64_t* flag, const uint64_t* epoch, uint64_t rel, cudaStream_t s);

}  // namespace cuda
}  // namespace attnccl
