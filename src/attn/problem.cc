#include "attn/problem.h"

#include <algorithm>

#include "attn/layout.h"
#include "attn/visibility.h"

namespace attnccl {
namespace attn {

Problem Problem::fromLayout(const AttnShape& s, int nranks) {
  Problem p;
  p.shape = s;
  p.nranks = nranks;
  p.tokens.resize(nranks);
  for (int r = 0; r < nranks; ++r) {
    p.tokens[r].pos = localPositions(s, nranks, r);
    p.tokens[r].doc = documentIds(s, p.tokens[r].pos);
  }
  p.heads.numQ = s.numHeadsQ;
  p.heads.numKV = s.numHeadsKV;
  p.heads.qFirst = 0;
  p.heads.kvFirst = 0;
  p.heads.group = s.group();
  return p;
}

void partRows(int64_t n, int part, int parts, int64_t* begin, int64_t* end) { evenPiece(n, parts, part, begin, end); }

namespace {

// Keys visible to query position i of document d lie in one interval of global positions,
// [*lo, *hi).
void keyInterval(const Problem& p, int64_t i, int64_t d, int64_t* lo, int64_t* hi) {
  visibleKeyRange(p.shape, i, p.shape.cuSeqlens[d], p.shape.cuSeqlens[d + 1], lo, hi);
}

// Positions of pos inside [lo, hi).
int64_t countIn(const std::vector<int64_t>& pos, int64_t lo, int64_t hi) {
  if (hi <= lo) return 0;
  auto a = std::lower_bound(pos.begin(), pos.end(), lo);
  auto b = std::lower_bound(a, pos.end(), hi);
  return b - a;
}

}  // namespace

int64_t visiblePairs(const Problem& p, const RankTokens& q, int64_t qb, int64_t qe, const RankTokens& k) {
  if (k.pos.empty()) return 0;
  int64_t total = 0;
  for (int64_t r = qb; r < qe; ++r) {
    int64_t lo, hi;
    keyInterval(p, q.pos[r], q.doc[r], &lo, &hi);
    total += countIn(k.pos, lo, hi);
  }
  return total;
}

bool anyVisible(const Problem& p, const RankTokens& q, int64_t qb, int64_t qe, const RankTokens& k) {
  if (k.pos.empty() || qe <= qb) return false;
  // Quick reject: the rows' extremes against k's rule out every pair.
  const BlockSpan qs{q.pos[qb], q.pos[qe - 1], q.doc[qb], q.doc[qe - 1]};
  const BlockSpan ks{k.pos.front(), k.pos.back(), k.doc.front(), k.doc.back()};
  const BlockClass c = classifySpans(p.shape, qs, ks);
  if (c != kBlockPartial) return c == kBlockFull;
  for (int64_t r = qb; r < qe; ++r) {
    int64_t lo, hi;
    keyInterval(p, q.pos[r], q.doc[r], &lo, &hi);
    if (countIn(k.pos, lo, hi) > 0) return true;
  }
  return false;
}

}  // namespace attn
}  // namespace attnccl
