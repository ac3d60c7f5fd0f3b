// The volumes and rounds of one attncclKvCacheAttend, written once for the attend itself
// (attend.cc), the perf tool's expectations and the planner's inference model (tools/plan):
//
//   combine                   an all-gather of the partials: 1 round, every message posted at
//                             once; or, for a large partial (kvCombineByHeads), a reduce-scatter
//                             by query heads then an all-gather of the merged heads: 2 rounds,
//                             about 2 (P-1)/P of the partial out per rank instead of (P-1) of it
//   rounds per attend         1 (all-gather) or 2 (by heads)
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

// The combine by heads pays a second round's latency (~10-20 us on shared memory) to send
// (P-1) - 2(P-1)/P partials fewer per rank: worth it from P = 3 once a partial is 64 KB or more
// (a prefill chunk; a decode step's partial is a few KB and stays in one round).
constexpr size_t kKvHeadSplitBytes = size_t{64} << 10;

inline bool kvCombineByHeads(int nranks, int64_t n, int numHeadsQ, int headDim) {
  return nranks > 2 && kvPartialFloats(n, numHeadsQ, headDim) * sizeof(float) >= kKvHeadSplitBytes;
}

// Bytes one rank sends in one attend (a rank with data), by the combine the sizes pick; the head
// pieces taken as Hq/P heads each (evenPiece makes them differ by one head at most).
inline double kvBytesSentPerRank(int nranks, int64_t n, int numHeadsQ, int headDim) {
  const double full = static_cast<double>(kvMessageBytes(n, numHeadsQ, headDim, true));
  if (nranks < 2) return 0;
  if (!kvCombineByHeads(nranks, n, numHeadsQ, headDim)) return (nranks - 1) * full;
  // pieces of about Hq/P heads: (P-1) of others' pieces, then (P-1) copies of its own
  const double piece = kKvHeaderBytes + (full - kKvHeaderBytes) / nranks;
  return 2.0 * (nranks - 1) * piece;
}

inline int kvCombineRounds(int nranks, int64_t n, int numHeadsQ, int headDim) {
  if (nranks < 2) return 0;
  return kvCombineByHeads(nranks, n, numHeadsQ, headDim) ? 2 : kKvCombineRounds;
}

}  // namespace attn
}  // namespace attnccl
