#include "attn/algos/head_split.h"

#include <algorithm>

#include "attn/layout.h"

namespace attnccl {
namespace attn {

HeadSplit::HeadSplit(int numHeadsQ, int numHeadsKV, int members, int chunks)
    : hq_(numHeadsQ), hkv_(numHeadsKV), group_(numHeadsQ / numHeadsKV), members_(members),
      chunks_(std::max(1, chunks)), shared_(numHeadsKV, 0) {
  // K/V head h is shared when the members holding Q heads h*g and h*g+g-1 differ.
  std::vector<int> owner(hq_);
  for (int m = 0; m < members_; ++m) {
    HeadRange r = q(m);
    for (int h = r.first; h < r.end(); ++h) owner[h] = m;
  }
  for (int h = 0; h < hkv_; ++h) shared_[h] = owner[h * group_] != owner[h * group_ + group_ - 1];
}

HeadRange HeadSplit::q(int m) const {
  int64_t b, e;
  evenPiece(hq_, members_, m, &b, &e);
  return HeadRange{static_cast<int>(b), static_cast<int>(e - b)};
}

HeadRange HeadSplit::kvOfQ(HeadRange r) const {
  if (r.count == 0) return HeadRange{r.first / group_, 0};
  int lo = r.first / group_, hi = (r.end() - 1) / group_;
  return HeadRange{lo, hi - lo + 1};
}

HeadRange HeadSplit::kv(int m) const { return kvOfQ(q(m)); }

HeadRange HeadSplit::qChunk(int m, int c) const {
  HeadRange r = q(m);
  int64_t b, e;
  evenPiece(r.count, chunks_, c, &b, &e);
  return HeadRange{r.first + static_cast<int>(b), static_cast<int>(e - b)};
}

HeadRange HeadSplit::kvNeed(int m, int c) const { return kvOfQ(qChunk(m, c)); }

HeadRange HeadSplit::kvNew(int m, int c) const {
  HeadRange need = kvNeed(m, c);
  if (need.count == 0 || c == 0) return need;
  // Empty chunks only follow non-empty ones (even pieces), so chunk c-1 is non-empty here.
  int from = std::max(need.first, kvNeed(m, c - 1).end());
  return HeadRange{from, need.end() - from};
}

HeadRange HeadSplit::kvDone(int m, int c) const {
  // End of the done heads after chunk c: the next non-empty chunk's first K/V head, else all.
  auto doneEnd = [&](int k) {
    if (k + 1 < chunks_ && qChunk(m, k + 1).count > 0) return kvNeed(m, k + 1).first;
    return kv(m).end();
  };
  if (qChunk(m, c).count == 0) return HeadRange{kv(m).end(), 0};
  int from = c == 0 ? kv(m).first : doneEnd(c - 1);
  return HeadRange{from, doneEnd(c) - from};
}

HeadRange HeadSplit::kvDoneSharedLo(int m, int c) const {
  HeadRange d = kvDone(m, c);
  bool lo = d.count > 0 && d.first == kv(m).first && kvShared(d.first);
  return HeadRange{d.first, lo ? 1 : 0};
}

HeadRange HeadSplit::kvDoneSharedHi(int m, int c) const {
  HeadRange d = kvDone(m, c), lo = kvDoneSharedLo(m, c);
  bool hi = d.count > lo.count && d.end() == kv(m).end() && kvShared(d.end() - 1);
  return HeadRange{hi ? d.end() - 1 : d.end(), hi ? 1 : 0};
}

HeadRange HeadSplit::kvDoneExclusive(int m, int c) const {
  HeadRange d = kvDone(m, c), lo = kvDoneSharedLo(m, c), hi = kvDoneSharedHi(m, c);
  return HeadRange{d.first + lo.count, d.count - lo.count - hi.count};
}

bool HeadSplit::anyShared() const { return std::find(shared_.begin(), shared_.end(), 1) != shared_.end(); }

HeadMap HeadSplit::map(int m, int c) const {
  HeadRange qr = c < 0 ? q(m) : qChunk(m, c);
  HeadRange kr = c < 0 ? kv(m) : kvNeed(m, c);
  HeadMap h;
  h.numQ = qr.count;
  h.numKV = kr.count;
  h.qFirst = qr.first;
  h.kvFirst = kr.first;
  h.group = group_;
  return h;
}

std::vector<HeadRange> HeadSplit::all(HeadRange (HeadSplit::*fn)(int, int) const, int c) const {
  std::vector<HeadRange> r(members_);
  for (int m = 0; m < members_; ++m) r[m] = (this->*fn)(m, c);
  return r;
}

std::vector<HeadRange> HeadSplit::allQ() const {
  std::vector<HeadRange> r(members_);
  for (int m = 0; m < members_; ++m) r[m] = q(m);
  return r;
}

std::vector<HeadRange> HeadSplit::allKV() const {
  std::vector<HeadRange> r(members_);
  for (int m = 0; m < members_; ++m) r[m] = kv(m);
  return r;
}

}  // namespace attn
}  // namespace attnccl
