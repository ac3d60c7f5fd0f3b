#include "attn/layout.h"

#include <algorithm>

namespace attnccl {
namespace attn {

void evenPiece(int64_t L, int64_t n, int64_t i, int64_t* begin, int64_t* end) {
  // The first L mod n pieces hold q+1 tokens, the others q.
  int64_t q = L / n, r = L % n;
  *begin = i * q + std::min(i, r);
  *end = *begin + q + (i < r ? 1 : 0);
}

namespace {

// Calls emit(begin, end) for each run of document-local offsets [begin, end) that the rank
// holds in a document of length L, in increasing order; striped emits single tokens.
template <typename Emit>
void forEachRun(attncclLayout_t layout, int64_t L, int nranks, int rank, Emit emit) {
  int64_t b, e;
  switch (layout) {
    case attncclLayoutZigzag:
      evenPiece(L, 2 * nranks, rank, &b, &e);
      emit(b, e);
      evenPiece(L, 2 * nranks, 2 * nranks - 1 - rank, &b, &e);
      emit(b, e);
      break;
    case attncclLayoutStriped:
      for (int64_t p = rank; p < L; p += nranks) emit(p, p + 1);
      break;
    default:
      evenPiece(L, nranks, rank, &b, &e);
      emit(b, e);
      break;
  }
}

int64_t countInDoc(attncclLayout_t layout, int64_t L, int nranks, int rank) {
  if (layout == attncclLayoutStriped) return L > rank ? (L - rank + nranks - 1) / nranks : 0;
  int64_t n = 0;
  forEachRun(layout, L, nranks, rank, [&](int64_t b, int64_t e) { n += e - b; });
  return n;
}

}  // namespace

int64_t localTokenCount(const AttnShape& s, int nranks, int rank) {
  int64_t n = 0;
  for (int64_t d = 0; d < s.numDocs(); ++d)
    n += countInDoc(s.layout, s.cuSeqlens[d + 1] - s.cuSeqlens[d], nranks, rank);
  return n;
}

std::vector<int64_t> localPositions(const AttnShape& s, int nranks, int rank) {
  std::vector<int64_t> pos;
  pos.reserve(static_cast<size_t>(localTokenCount(s, nranks, rank)));
  for (int64_t d = 0; d < s.numDocs(); ++d) {
    int64_t base = s.cuSeqlens[d];
    forEachRun(s.layout, s.cuSeqlens[d + 1] - base, nranks, rank, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) pos.push_back(base + p);
    });
  }
  return pos;
}

std::vector<int64_t> documentIds(const AttnShape& s, const std::vector<int64_t>& positions) {
  std::vector<int64_t> ids(positions.size());
  int64_t d = 0;
  for (size_t i = 0; i < positions.size(); ++i) {
    if (i > 0 && positions[i] < positions[i - 1]) d = 0;  // not increasing: restart the walk
    while (positions[i] >= s.cuSeqlens[d + 1]) ++d;
    ids[i] = d;
  }
  return ids;
}

}  // namespace attn
}  // namespace attnccl
