// The CUDA state of a communicator on a GPU (config.device = a CUDA ordinal).
//
// Stream-ordered like NCCL: a call records an event on the caller's stream, the communicator's
// own stream waits for it, all of the call's work is enqueued there (kernels, copies, waits on
// peers' flags), and the caller's stream waits for an event recorded at the end. Nothing waits
// on the host, so a call returns at once and is capturable in a CUDA graph (the fork/join is the
// pattern stream capture follows across streams). Since every call of the communicator runs on
// its one stream, calls never overlap and can share scratch memory.
//
//   caller stream  --rec(enter)-------------------------------wait(leave)-->
//                          \                                 /
//   comm stream             wait(enter) -- kernels, copies -- rec(leave)
//
// Persistent device memory (scratch, token metadata) is allocated on first need and grown by
// allocating anew: a replaced buffer is kept until the communicator is destroyed, because work
// already enqueued or a captured graph may still use it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/device_hooks.h"

namespace attnccl {
namespace cuda {
class IpcWindows;
struct Prepared;
}

class DeviceArena {
 public:
  ~DeviceArena();
  // A device buffer of at least `bytes` (contents undefined), for work on the comm's stream.
  attncclResult_t ensure(size_t bytes, char** out);
  size_t capacity() const { return bytes_; }

 private:
  char* ptr_ = nullptr;
  size_t bytes_ = 0;
  std::vector<char*> retired_;
};

// Read-only int64 arrays uploaded once per key (token positions and documents of a shape): a
// pinned host copy (kept: a graph replays the upload from it) and the device copy.
class DeviceConstCache {
 public:
  ~DeviceConstCache();
  const int64_t* find(const std::string& key) const;
  attncclResult_t add(const std::string& key, const std::vector<int64_t>& data, cudaStream_t stream,
                      const int64_t** out);

 private:
  struct Entry {
    int64_t* host = nullptr;
    int64_t* dev = nullptr;
  };
  std::map<std::string, Entry> entries_;
};

struct DeviceComm {
  int device = -1;
  cudaStream_t stream = nullptr;      // all of the communicator's work
  cudaStream_t copyStream = nullptr;  // transfers of the multi-rank executor (overlap tiles)
  cudaEvent_t enter = nullptr;        // recorded on the caller's stream at a call's start
  cudaEvent_t leave = nullptr;        // recorded on `stream` at a call's end
  std::vector<cudaEvent_t> roundEvents;  // the multi-rank executor's stream joins
  DeviceArena scratch;
  DeviceConstCache consts;
  std::unique_ptr<cuda::IpcWindows> ipc;  // peers' windows (several ranks)
  std::map<std::string, std::unique_ptr<cuda::Prepared>> prepared;  // multi-rank programs by shape
  ~DeviceComm();
};

namespace cuda {

// The fork/join of a call with the caller's stream (see the file comment). begin() makes the
// comm's stream wait for the caller's work so far; end() makes the caller's stream wait for
// everything the call enqueued.
attncclResult_t streamBegin(DeviceComm* d, cudaStream_t user);
attncclResult_t streamEnd(DeviceComm* d, cudaStream_t user);

// `n` events for stream joins inside a call (created on first need, reused by later calls).
attncclResult_t ensureEvents(DeviceComm* d, size_t n);

}  // namespace cuda
}  // namespace attnccl
