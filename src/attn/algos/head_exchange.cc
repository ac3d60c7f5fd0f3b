#include "attn/algos/head_exchange.h"

#include <algorithm>
#include <cstring>

#include "attn/layout.h"
#include "core/result.h"

namespace attnccl {
namespace attn {
namespace {

// Token t of a move is row at(t) of its view (identity when rows is null).
struct TokenMap {
  const int64_t* rows = nullptr;
  int64_t n = 0;
  int64_t at(int64_t i) const { return rows ? rows[i] : i; }
};

void copySpan(char* dst, const char* src, int64_t bytes, bool add) {
  if (!add) {
    memcpy(dst, src, static_cast<size_t>(bytes));
    return;
  }
  float* d = reinterpret_cast<float*>(dst);
  const float* s = reinterpret_cast<const float*>(src);
  for (int64_t i = 0, n = bytes / 4; i < n; ++i) d[i] += s[i];
}

constexpr int64_t kBlockBytes = 256 << 10;  // copy work per pool item

// dst(dm[i], h) = (or +=) src(sm[i], h) for every token i and head h of `heads`. Runs of tokens
// that are consecutive on both sides with dense rows become one memcpy.
void moveRows(const HeadView& src, TokenMap sm, const HeadView& dst, TokenMap dm, HeadRange heads, bool add,
              ThreadPool& pool, const std::function<void()>& between) {
  const int64_t n = sm.n;
  if (n == 0 || heads.count == 0) return;
  const int64_t chunk = src.chunk;
  // Heads of one token contiguous on both sides: one row piece per token, else one per head.
  const bool rowsDense = src.headStride == chunk && dst.headStride == chunk;
  const int64_t rowBytes = rowsDense ? heads.count * chunk : chunk;
  const int pieces = rowsDense ? 1 : heads.count;
  const int64_t perBlock = std::max<int64_t>(1, kBlockBytes / (rowBytes * (rowsDense ? 1 : heads.count)));
  const int64_t blocks = (n + perBlock - 1) / perBlock;
  auto span = [&](int64_t i0, int64_t i1, int h) {
    const int64_t srcOff = (h - src.headBase) * src.headStride, dstOff = (h - dst.headBase) * dst.headStride;
    const bool runs = src.tokenStride == rowBytes && dst.tokenStride == rowBytes;
    for (int64_t i = i0; i < i1;) {
      int64_t j = i + 1;
      if (runs) {
        while (j < i1 && sm.at(j) == sm.at(j - 1) + 1 && dm.at(j) == dm.at(j - 1) + 1) ++j;
      }
      copySpan(dst.base + dm.at(i) * dst.tokenStride + dstOff, src.base + sm.at(i) * src.tokenStride + srcOff,
               (j - i) * rowBytes, add);
      i = j;
    }
  };
  auto item = [&](int64_t b, int) {
    const int64_t i0 = b * perBlock, i1 = std::min(n, i0 + perBlock);
    for (int p = 0; p < pieces; ++p) span(i0, i1, heads.first + p);
  };
  if (blocks == 1) {
    item(0, 0);
  } else {
    pool.run(blocks, item, between);
  }
}

}  // namespace

HeadView rowView(const void* base, int numHeads, int headBase, int headDim, size_t elemSize) {
  HeadView v;
  v.base = static_cast<char*>(const_cast<void*>(base));
  v.chunk = static_cast<int64_t>(headDim) * static_cast<int64_t>(elemSize);
  v.headStride = v.chunk;
  v.tokenStride = v.chunk * numHeads;
  v.headBase = headBase;
  return v;
}

HeadView headMajorView(const void* base, int64_t ld, int headBase) {
  HeadView v;
  v.base = static_cast<char*>(const_cast<void*>(base));
  v.chunk = sizeof(float);
  v.tokenStride = sizeof(float);
  v.headStride = static_cast<int64_t>(sizeof(float)) * ld;
  v.headBase = headBase;
  return v;
}

HeadGroup layoutGroup(const AttnShape& s, int nranks, int self) {
  HeadGroup g;
  g.self = self;
  g.total = s.seqLen;
  g.rows.resize(nranks);
  for (int m = 0; m < nranks; ++m) g.rows[m] = localPositions(s, nranks, m);
  g.pos.resize(static_cast<size_t>(s.seqLen));
  for (int64_t i = 0; i < s.seqLen; ++i) g.pos[i] = i;
  g.doc = documentIds(s, g.pos);
  return g;
}

HeadGroup unionGroup(const AttnShape& s, const std::vector<std::vector<int64_t>>& memberPositions, int self) {
  HeadGroup g;
  g.self = self;
  for (const auto& p : memberPositions) g.pos.insert(g.pos.end(), p.begin(), p.end());
  std::sort(g.pos.begin(), g.pos.end());
  g.total = static_cast<int64_t>(g.pos.size());
  g.rows.resize(memberPositions.size());
  for (size_t m = 0; m < memberPositions.size(); ++m) {
    for (int64_t p : memberPositions[m]) {
      g.rows[m].push_back(std::lower_bound(g.pos.begin(), g.pos.end(), p) - g.pos.begin());
    }
  }
  g.doc = documentIds(s, g.pos);
  return g;
}

HeadField rowsField(const void* seq, int seqHeads, void* head, HeadRange mine, int headDim, size_t elemSize,
                    std::vector<HeadRange> ranges) {
  HeadField f;
  f.seq = rowView(seq, seqHeads, 0, headDim, elemSize);
  f.head = rowView(head, mine.count, mine.first, headDim, elemSize);
  f.ranges = std::move(ranges);
  return f;
}

HeadField rowsField(const void* seq, RowStrides seqStrides, int seqHeads, void* head, HeadRange mine, int headDim,
                    size_t elemSize, std::vector<HeadRange> ranges) {
  HeadField f = rowsField(seq, seqHeads, head, mine, headDim, elemSize, std::move(ranges));
  f.seq.tokenStride = tokenStride(seqStrides, seqHeads, headDim) * static_cast<int64_t>(elemSize);
  f.seq.headStride = headStride(seqStrides, headDim) * static_cast<int64_t>(elemSize);
  return f;
}

HeadField lseField(const float* seq, int64_t seqTokens, float* head, int64_t total, HeadRange mine,
                   std::vector<HeadRange> ranges) {
  HeadField f;
  f.seq = headMajorView(seq, seqTokens, 0);
  f.head = headMajorView(head, total, mine.first);
  f.ranges = std::move(ranges);
  f.headMajor = true;
  return f;
}

HeadExchange::HeadExchange(const HeadGroup& g, HeadDir dir, std::vector<HeadField> fields)
    : g_(g), dir_(dir), fields_(std::move(fields)) {
  // fp32-aligned chunks first: reduce parts then start at 4-byte multiples in every message.
  std::stable_sort(fields_.begin(), fields_.end(),
                   [](const HeadField& a, const HeadField& b) { return a.seq.chunk % 4 == 0 && b.seq.chunk % 4 != 0; });
  const int G = g.size();
  sendSize_.assign(G, 0);
  recvSize_.assign(G, 0);
  sendOff_.assign(G, 0);
  recvOff_.assign(G, 0);
  for (int peer = 0; peer < G; ++peer) {
    if (peer == g.self) continue;
    for (const HeadField& f : fields_) {
      sendSize_[peer] += static_cast<size_t>(g.tokens(seqMember(g.self, peer)) *
                                             f.ranges[headMember(g.self, peer)].count * f.seq.chunk);
      recvSize_[peer] += static_cast<size_t>(g.tokens(seqMember(peer, g.self)) *
                                             f.ranges[headMember(peer, g.self)].count * f.seq.chunk);
    }
    sendOff_[peer] = sendTotal_;
    recvOff_[peer] = recvTotal_;
    sendTotal_ += (sendSize_[peer] + 63) / 64 * 64;
    recvTotal_ += (recvSize_[peer] + 63) / 64 * 64;
  }
}

HeadExchange::~HeadExchange() = default;

int HeadExchange::seqMember(int sender, int receiver) const {
  return dir_ == HeadDir::kSeqToHead ? sender : receiver;
}

int HeadExchange::headMember(int sender, int receiver) const {
  return dir_ == HeadDir::kSeqToHead ? receiver : sender;
}

HeadView HeadExchange::messageView(const HeadField& f, char* base, int64_t tokens, HeadRange heads) const {
  HeadView v;
  v.base = base;
  v.chunk = f.seq.chunk;
  v.headBase = heads.first;
  if (f.headMajor) {
    v.tokenStride = v.chunk;
    v.headStride = v.chunk * tokens;
  } else {
    v.headStride = v.chunk;
    v.tokenStride = v.chunk * heads.count;
  }
  return v;
}

attncclResult_t HeadExchange::post(Engine& e, uint32_t tag, char* sendBuf, char* recvBuf, ThreadPool& pool,
                                   const std::function<void()>& between) {
  const int G = g_.size(), me = g_.self;
  const bool toHead = dir_ == HeadDir::kSeqToHead;
  engine_ = &e;
  recvBuf_ = recvBuf;
  size_t nOps = 0;
  for (int p = 0; p < G; ++p) nOps += (sendSize_[p] > 0) + (recvSize_[p] > 0);
  ops_.reset(new OpArray(e, nOps));
  size_t op = 0;
  // Receives first, so eager messages land in place.
  for (int p = 0; p < G; ++p) {
    if (recvSize_[p] > 0) ATTN_CHECK(e.irecv(p, tag, recvBuf + recvOff_[p], recvSize_[p], &(*ops_)[op++]));
  }
  pending_ = true;
  // Pack and send, peers in rank order starting after this member (spreads the load).
  for (int k = 1; k < G; ++k) {
    const int p = (me + k) % G;
    if (sendSize_[p] == 0) continue;
    const int64_t tokens = g_.tokens(seqMember(me, p));
    char* at = sendBuf + sendOff_[p];
    for (const HeadField& f : fields_) {
      const HeadRange heads = f.ranges[headMember(me, p)];
      HeadView msg = messageView(f, at, tokens, heads);
      if (toHead) {
        moveRows(f.seq, TokenMap{nullptr, tokens}, msg, TokenMap{nullptr, tokens}, heads, false, pool, between);
      } else {
        moveRows(f.head, TokenMap{g_.rows[p].data(), tokens}, msg, TokenMap{nullptr, tokens}, heads, false, pool,
                 between);
      }
      at += tokens * heads.count * f.seq.chunk;
    }
    ATTN_CHECK(e.isend(p, tag, sendBuf + sendOff_[p], sendSize_[p], &(*ops_)[op++]));
  }
  // This member's own part, while the messages travel.
  const TokenMap self{nullptr, g_.tokens(me)}, selfRows{g_.rows[me].data(), g_.tokens(me)};
  for (const HeadField& f : fields_) {
    if (toHead) {
      moveRows(f.seq, self, f.head, selfRows, f.ranges[me], false, pool, between);
    } else {
      moveRows(f.head, selfRows, f.seq, self, f.ranges[me], f.reduce, pool, between);
    }
  }
  return attncclSuccess;
}

attncclResult_t HeadExchange::finish(ThreadPool& pool) {
  if (!pending_) return attncclSuccess;
  pending_ = false;
  ATTN_CHECK(engine_->waitAll(*ops_));
  const int G = g_.size(), me = g_.self;
  const bool toHead = dir_ == HeadDir::kSeqToHead;
  for (int p = 0; p < G; ++p) {
    if (recvSize_[p] == 0) continue;
    const int64_t tokens = g_.tokens(seqMember(p, me));
    char* at = recvBuf_ + recvOff_[p];
    for (const HeadField& f : fields_) {
      const HeadRange heads = f.ranges[headMember(p, me)];
      HeadView msg = messageView(f, at, tokens, heads);
      if (toHead) {
        moveRows(msg, TokenMap{nullptr, tokens}, f.head, TokenMap{g_.rows[p].data(), tokens}, heads, false, pool,
                 nullptr);
      } else {
        moveRows(msg, TokenMap{nullptr, tokens}, f.seq, TokenMap{nullptr, tokens}, heads, f.reduce, pool, nullptr);
      }
      at += tokens * heads.count * f.seq.chunk;
    }
  }
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
