// Which (query, key) pairs of a block pair are visible (attn/visibility.h's rule over global
// positions and document ids). Within a block positions increase and documents never decrease, so every
// condition is monotonic in the key index: the keys visible to one query form one contiguous
// index range. Tiles use that to skip invisible blocks, run fully visible ones unmasked, and
// trim partly visible ones to the rows and columns that matter.
#pragma once

#include <cstdint>

#include "attn/tile.h"
#include "attn/visibility.h"

namespace attnccl {
namespace attn {
namespace cpu {

// attn/visibility.h's classes under the tiles' names (same values).
enum class BlockKind { None = kBlockNone, Full = kBlockFull, Partial = kBlockPartial };

// Classifies queries [q0, q1) of q against keys [k0, k1) of k from the block's extreme
// positions and documents. None and Full are exact; Partial may still hold no visible pair.
BlockKind classifyBlock(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0,
                        int64_t k1);

// Visible key range [lo[i], hi[i]) (absolute key indices, within [k0, k1)) of every query q0+i;
// lo == hi when none is visible.
void visibleRanges(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0,
                   int64_t k1, int64_t* lo, int64_t* hi);

// The rows and columns a block pair really uses: rows [r0, r1) (relative to q0) are those with a
// visible key, columns [c0, c1) (absolute) the union of their ranges. Fills lo/hi (size q1-q0)
// and returns false when no pair is visible.
struct BlockUse {
  BlockKind kind = BlockKind::None;
  int64_t r0 = 0, r1 = 0;
  int64_t c0 = 0, c1 = 0;
};
bool blockUse(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0, int64_t k1,
              int64_t* lo, int64_t* hi, BlockUse* use);

// Rows of a partly visible block whose visible pairs fill less than kDenseShare of its
// rectangle go to the GEMMs in chunks of kPartialChunkRows, each trimmed to its own columns: on
// a causal diagonal this computes a staircase instead of the whole rectangle. (Chunks repack the
// keys for every GEMM, so denser blocks stay whole.)
constexpr int64_t kPartialChunkRows = 32;
constexpr double kDenseShare = 0.75;

// Calls f(r0, r1, c0, c1) for the row chunks of a used block that hold visible pairs: rows
// [r0, r1) relative to the block's first query, columns [c0, c1) absolute.
template <typename F>
void forEachRowChunk(const BlockUse& use, const int64_t* lo, const int64_t* hi, F f) {
  if (use.kind == BlockKind::Full) {
    f(use.r0, use.r1, use.c0, use.c1);
    return;
  }
  int64_t visible = 0;
  for (int64_t i = use.r0; i < use.r1; ++i) visible += hi[i] > lo[i] ? hi[i] - lo[i] : 0;
  if (visible >= kDenseShare * static_cast<double>((use.r1 - use.r0) * (use.c1 - use.c0))) {
    f(use.r0, use.r1, use.c0, use.c1);
    return;
  }
  for (int64_t ra = use.r0; ra < use.r1; ra += kPartialChunkRows) {
    const int64_t rb = ra + kPartialChunkRows < use.r1 ? ra + kPartialChunkRows : use.r1;
    int64_t r0 = -1, r1 = -1, c0 = use.c1, c1 = use.c0;
    for (int64_t i = ra; i < rb; ++i) {
      if (lo[i] >= hi[i]) continue;
      if (r0 < 0) r0 = i;
      r1 = i + 1;
      c0 = lo[i] < c0 ? lo[i] : c0;
      c1 = hi[i] > c1 ? hi[i] : c1;
    }
    if (r0 >= 0) f(r0, r1, c0, c1);
  }
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
