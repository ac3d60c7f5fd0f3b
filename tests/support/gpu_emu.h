// A CPU emulator for the GPU kernel bodies of src/attn/gpu, compiled as host C++ (where
// attn/gpu/portable.h declares the primitives this file implements): every thread of a block
// is a fiber; block barriers, warp shuffles, ldmatrix, mma.sync m16n8k16 and cp.async follow
// the PTX ISA's definitions (fragment layouts included), so a kernel's indexing, masking,
// pipelining and epilogue run, and fail, here as they would on a GPU. Deliberately strict:
// cp.async data lands only at the wait that covers its group, shared memory starts as NaN
// bytes, and a block whose threads all wait on a barrier or a warp collective that cannot
// complete is reported as a deadlock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace attnccl_test {
namespace emu {

// Runs body(sharedMemory) for every block of a gx x gy grid of `threads` threads (a multiple of
// 32). Blocks run one after the other. Returns "" or what went wrong (a deadlock, a copy left
// in flight).
std::string launch(int gx, int gy, int threads, size_t smemBytes, const std::function<void(char*)>& body);

// Fiber switches since the start of the process (to size tests).
uint64_t switches();

}  // namespace emu
}  // namespace attnccl_test
