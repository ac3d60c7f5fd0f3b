// Attention of one rank over the whole sequence on its GPU, stream-ordered on the
// communicator's stream: what a CUDA communicator of one rank runs for every algorithm. The
// forward is one tile with the final epilogue (no fp32 round trip through memory); the backward
// computes Delta, accumulates dQ, dK, dV in fp32 (in the caller's tensors when they are fp32)
// and rounds them once.
#pragma once

#include "attn/cuda/device_comm.h"
#include "attn/desc.h"
#include "attn/tensors.h"
#include "attn/gpu/tile_params.h"

namespace attnccl {
namespace cuda {

attncclResult_t localForward(DeviceComm* d, const attn::AttnShape& s, const attn::FwdTensors& t);
attncclResult_t localBackward(DeviceComm* d, const attn::AttnShape& s, const attn::BwdTensors& t);

// The whole sequence as tile tokens: positions 0..seqLen-1 need no array; documents need one
// (uploaded once per set of documents).
attncclResult_t wholeSequence(DeviceComm* d, const attn::AttnShape& s, attn::gpu::DevTokens* out);
// Mask, heads (all local), head dim and scale of a shape.
void fillTileCommon(const attn::AttnShape& s, attn::gpu::DevMask* mask, attn::gpu::DevHeads* heads);

}  // namespace cuda
}  // namespace attnccl
