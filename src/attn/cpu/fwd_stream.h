// The forward tile's streaming path for few query rows (decode steps, the folded query heads of
// one KV head, tiny ring blocks): cpu/fwd_stream.cc. fwdTile (cpu/fwd.cc) takes it by itself.
#pragma once

#include <functional>

#include "attn/tile.h"
#include "core/thread_pool.h"

namespace attnccl {
namespace attn {
namespace cpu {

// At most this many query rows per head go the streaming way (measured: README.md "Decode").
constexpr int64_t kStreamMaxRows = 16;

// Whether fwdTile streams this call (few query rows; ATTNCCL_CPU_STREAM=0 turns it off, for A/B).
bool fwdStreams(const FwdTileArgs& a);

// The same contract as fwdTile (attn/tile.h): merges into the fp32 accumulator (O, LSE).
void fwdTileStream(const FwdTileArgs& a, ThreadPool& pool, const std::function<void()>& between);

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
