// Attention on a CUDA communicator of several ranks of one node: the device programs of
// attn/program/dev_program.h and dev_ulysses.h enqueued on the communicator's streams
// (dev_executor.cc). Ring, pass-Q, gather-scatter, Ulysses and hybrid; the caller has forked the
// communicator's stream off its own.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/desc.h"
#include "attn/tensors.h"
#include "attn/program/dev_program.h"
#include "attn/problem.h"
#include "comm/comm.h"

namespace attnccl {
namespace cuda {

// Everything of one (shape, algorithm, direction) that does not change between calls; cached in
// the DeviceComm.
struct Prepared {
  attn::Problem problem;
  attn::gpu::DevProgram program;
  const int64_t* pos = nullptr;  // token positions of all ranks, concatenated (device)
  const int64_t* doc = nullptr;
  std::vector<int64_t> first;  // offset of each rank's tokens in pos/doc
  std::vector<const int64_t*> tablePos, tableDoc;  // the program's token tables (device)
};

attncclResult_t distributedForward(attncclComm* comm, const attn::AttnShape& s, const attn::FwdTensors& t,
                                   attncclAlgo_t algo);
attncclResult_t distributedBackward(attncclComm* comm, const attn::AttnShape& s, const attn::BwdTensors& t,
                                    attncclAlgo_t algo);

}  // namespace cuda
}  // namespace attnccl
