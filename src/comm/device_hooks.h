// The communicator's GPU hooks: what comm.cc needs from the CUDA backend (src/attn/cuda), with
// stubs in builds without CUDA (src/comm/device_hooks.cc). A communicator whose config names a CUDA
// device owns a DeviceComm: its streams, scratch memory and peer windows.
#pragma once

#include "attnccl.h"

struct attncclComm;

namespace attnccl {

struct DeviceComm;
struct DeviceCommDeleter {
  void operator()(DeviceComm* d) const;
};

// attncclSuccess when `device` is a CUDA device this process can use; else
// attncclInvalidArgument naming the ordinal and how many devices there are (and why none).
attncclResult_t deviceCheckOrdinal(int device);
// Creates comm->dev once the communicator's transports are up (all ranks call it).
attncclResult_t deviceCommInit(attncclComm* comm);

}  // namespace attnccl
