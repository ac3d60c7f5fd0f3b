#include "attn/problem.h"

#include <algorithm>

#include "attn/layout.h"

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

// Keys visible to query position i of document d lie in one interval of global positions.
void keyInterval(const Problem& p, int64_t i, int64_t d, int64_t* lo, int64_t* hi) {
  const AttnShape& s = p.shape;
  int64_t docBegin = s.cuSeqlens[d], docEnd = s.cuSeqlens[d + 1] - 1;
  *lo = docBegin;
  *hi = docEnd;
  if (s.causal) *hi = std::min(*hi, i);
  if (s.windowLeft >= 0) *lo = std::max(*lo, i - s.windowLeft);
  if (s.windowRight >= 0) *hi = std::min(*hi, i + s.windowRight);
}

int64_t countIn(const std::vector<int64_t>& pos, int64_t lo, int64_t hi) {
  if (hi < lo) return 0;
  auto a = std::lower_bound(pos.begin(), pos.end(), lo);
  auto b = std::upper_bound(a, pos.end(), hi);
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
  // Quick reject: the union of the query rows' key intervals misses k's range.
  const AttnShape& s = p.shape;
  int64_t kMin = k.pos.front(), kMax = k.pos.back();
  int64_t qMin = q.pos[qb], qMax = q.pos[qe - 1];
  if (s.causal && kMin > qMax) return false;
  if (s.windowLeft >= 0 && qMin - kMax > s.windowLeft) return false;
  if (s.windowRight >= 0 && kMin - qMax > s.windowRight) return false;
  if (q.doc[qe - 1] < k.doc.front() || k.doc.back() < q.doc[qb]) return false;
  for (int64_t r = qb; r < qe; ++r) {
    int64_t lo, hi;
    keyInterval(p, q.pos[r], q.doc[r], &lo, &hi);
    if (countIn(k.pos, lo, hi) > 0) return true;
  }
  return false;
}

}  // namespace attn
}  // namespace attnccl
