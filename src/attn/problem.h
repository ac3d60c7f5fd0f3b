// The problem a distributed attention schedule is planned for: which global tokens each rank of
// the communicator holds (with their documents), the mask, and the heads this rank's tensors
// carry. Built from the descriptor's layout for the plain algorithms; the hybrid builds one whose
// "ranks" are groups holding the union of their members' tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/desc.h"
#include "attn/tile.h"

namespace attnccl {
namespace attn {

struct RankTokens {
  std::vector<int64_t> pos;  // global positions, increasing
  std::vector<int64_t> doc;  // document of each position
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

struct Problem {
  AttnShape shape;
  int nranks = 1;
  std::vector<RankTokens> tokens;  // per rank of the communicator the schedule runs on
  HeadMap heads;                   // heads every rank's tensors carry (same on all ranks)

  // Tokens of the layout's ranks, all heads.
  static Problem fromLayout(const AttnShape& s, int nranks);
  MaskSpec mask() const { return MaskSpec{shape.causal, shape.windowLeft, shape.windowRight}; }
};

// Rows [begin, end) of part `part` of `parts` of a rank's tokens (even pieces).
void partRows(int64_t n, int part, int parts, int64_t* begin, int64_t* end);

// Number of visible (query, key) pairs between q tokens [qb, qe) and all of k's tokens, exactly
// by attn/visibility.h's rule. O(queries * log keys).
int64_t visiblePairs(const Problem& p, const RankTokens& q, int64_t qb, int64_t qe, const RankTokens& k);
// True when some query row in [qb, qe) sees some key of k (cheap interval test first).
bool anyVisible(const Problem& p, const RankTokens& q, int64_t qb, int64_t qe, const RankTokens& k);

}  // namespace attn
}  // namespace attnccl
