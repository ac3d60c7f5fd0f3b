// Which GPU attention kernel runs a tile, and its launch shape: pure host logic, unit-tested on
// the CPU. The tensor-core kernels need 16-bit inputs, a head dim that is a multiple of 8 and at
// most 128 (padded to 64 or 128 inside the kernel), 16-byte aligned tensors and row strides that
// keep every row 16-byte aligned (cp.async moves 16-byte chunks). Everything else runs the
// generic SIMT kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "attn/gpu/tile_params.h"
#include "attnccl.h"

namespace attnccl {
namespace attn {
namespace gpu {

enum class TileKernel { kNone, kMma64, kMma128, kSimt };
const char* tileKernelName(TileKernel k);

struct TileLaunch {
  TileKernel kernel = TileKernel::kNone;  // kNone: nothing to compute (no queries or no keys)
  int gridX = 0, gridY = 0;               // forward; backward: the dK/dV (tensor cores: only) kernel
  int gridX2 = 0, gridY2 = 0;             // backward SIMT: the dQ kernel
  int threads = 0;
  size_t smemBytes = 0;
};

// True when the tensor-core kernels can stream these tensors (dtype, head dim, alignment).
bool mmaEligible(attncclDataType_t dtype, int headDim, const void* const* ptrs, int nptrs, const int64_t* strides,
                 int nstrides);

TileLaunch planForward(attncclDataType_t dtype, const FwdParams& p);
TileLaunch planBackward(attncclDataType_t dtype, const BwdParams& p);

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
