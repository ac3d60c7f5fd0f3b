// The visibility rule of the attention mask, written once for every user: the descriptor check,
// the schedules' pair counts, the cost model, the CPU tiles and the GPU kernels (host and device
// code alike, so nothing here may need more than <cstdint>).
//
//   key j is visible to query i  iff  same document, (not causal or j <= i),
//                                     (windowLeft < 0 or i - j <= windowLeft),
//                                     (windowRight < 0 or j - i <= windowRight)
//
// with i and j global positions. Three forms of it follow: one pair; the interval of key
// positions one query sees inside its document; and the classification of a block of queries
// against a block of keys from their extreme positions and documents.
//
// The functions are templates over the mask type: any struct with `causal` (bool or int),
// `windowLeft` and `windowRight` (int64_t, -1 = unbounded) works, so AttnShape, the CPU tiles'
// MaskSpec and the kernels' DevMask use them without a conversion in their inner loops.
#pragma once

#include <cstdint>

// Host and device, always inlined: the per-pair test sits in the kernels' masking loops.
#if defined(__CUDACC__)
#define ATTN_VIS_FN __host__ __device__ __forceinline__
#else
#define ATTN_VIS_FN inline
#endif

namespace attnccl {
namespace attn {

// Key at (kPos, kDoc) visible to the query at (qPos, qDoc). Positions stay far below 2^62, so
// the differences cannot overflow.
template <typename Mask>
ATTN_VIS_FN bool pairVisible(const Mask& m, int64_t qPos, int64_t qDoc, int64_t kPos, int64_t kDoc) {
  if (qDoc != kDoc) return false;
  if (m.causal && kPos > qPos) return false;
  if (m.windowLeft >= 0 && qPos - kPos > m.windowLeft) return false;
  if (m.windowRight >= 0 && kPos - qPos > m.windowRight) return false;
  return true;
}

// The key positions [*lo, *hi) the query at qPos sees inside its document, which spans
// positions [docBegin, docEnd) (qPos need not lie inside it: a caller may pass the part of the
// document some block of keys covers). Empty when *lo >= *hi. Windows may be as large as
// INT64_MAX: the bounds are formed without overflow.
template <typename Mask>
ATTN_VIS_FN void visibleKeyRange(const Mask& m, int64_t qPos, int64_t docBegin, int64_t docEnd, int64_t* lo,
                                 int64_t* hi) {
  int64_t a = docBegin, b = docEnd;
  if (m.windowLeft >= 0 && qPos - a > m.windowLeft) a = qPos - m.windowLeft;
  if (m.causal && qPos + 1 < b) b = qPos + 1;
  // qPos + windowRight + 1 < b, compared as a difference so that a huge window cannot overflow
  if (m.windowRight >= 0 && m.windowRight < b - 1 - qPos) b = qPos + m.windowRight + 1;
  *lo = a;
  *hi = b;
}

// First and last position and document of a block of tokens (positions increase and documents
// never decrease inside a block, so the extremes bound every token of it).
struct BlockSpan {
  int64_t pos0 = 0, pos1 = 0, doc0 = 0, doc1 = 0;
};

// kBlockNone: no pair visible (exact). kBlockFull: every pair visible (exact). kBlockPartial:
// needs the per-pair rule; it may still hold no visible pair (keys and queries between the
// documents' boundaries, say).
enum BlockClass : int { kBlockNone = 0, kBlockFull = 1, kBlockPartial = 2 };

// Each condition of the rule is monotonic in both positions, so its extreme pairs decide the
// block: the closest pair rules a block out, the farthest pair rules it fully in.
template <typename Mask>
ATTN_VIS_FN BlockClass classifySpans(const Mask& m, const BlockSpan& q, const BlockSpan& k) {
  if (q.doc1 < k.doc0 || k.doc1 < q.doc0) return kBlockNone;
  bool full = q.doc0 == q.doc1 && k.doc0 == k.doc1 && q.doc0 == k.doc0;
  if (m.causal) {
    if (k.pos0 > q.pos1) return kBlockNone;
    full = full && k.pos1 <= q.pos0;
  }
  if (m.windowLeft >= 0) {
    if (q.pos0 - k.pos1 > m.windowLeft) return kBlockNone;
    full = full && q.pos1 - k.pos0 <= m.windowLeft;
  }
  if (m.windowRight >= 0) {
    if (k.pos0 - q.pos1 > m.windowRight) return kBlockNone;
    full = full && k.pos1 - q.pos0 <= m.windowRight;
  }
  return full ? kBlockFull : kBlockPartial;
}

}  // namespace attn
}  // namespace attnccl
