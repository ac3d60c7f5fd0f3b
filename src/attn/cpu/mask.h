// Which (query, key) pairs of a block pair are visible (API.md's rule over global positions and
// document ids). Within a block positions increase and documents never decrease, so every
// condition is monotonic in the key index: the keys visible to one query form one contiguous
// index range. Tiles use that to skip invisible blocks, run fully visible ones unmasked, and
// trim partly visible ones to the rows and columns that matter.
#pragma once

#include <cstdint>

#include "attn/tile.h"

namespace attnccl {
namespace attn {
namespace cpu {

enum class BlockKind { None, Full, Partial };

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

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
