// The volumes and rounds of one attncclKvCacheAttend, written once for the attend itself
// (attend.cc), the perf tool's expectations and the planner's inference model (tools/plan):
//
//   rounds per attend         1 (an all-gather of the partials, every message posted at once)
//   message of a rank         header + O [n][Hq][D] fp32 + LSE [Hq][n] fp32
//                             = 32 + n Hq (D + 1) 4 bytes (the header alone: 32 bytes, for a
//                             rank that sees nothing)
//   sent per rank             (P - 1) messages
//   cache read per rank       its visible slots, K and V: slots x Hkv x D x dtype bytes x 2
#pragma once

#include <cstddef>
#include <cstdint>

namespace attnccl {
namespace attn {

constexpr size_t kKvHeaderBytes = 32;
constexpr int kKvCombineRounds = 1;

inline size_t kvPartialFloats(int64_t n, int numHeadsQ, int headDim) {
  return static_cast<size_t>(n) * numHeadsQ * (static_cast<size_t>(headDim) + 1);
}

inline size_t kvMessageBytes(int64_t n, int numHeadsQ, int headDim, bool hasData) {
  return kKvHeaderBytes + (hasData ? kvPartialFloats(n, numHeadsQ, headDim) * sizeof(float) : 0);
}

}  // namespace attn
}  // namespace attnccl
