// attncclHeadAllToAll: exact placement (every element carries a code of its global position,
// head and index, compared bit for bit), seq->head->seq round trip, uneven head splits and fewer
// heads than ranks, every layout with documents, each dtype, lengths shorter than the rank
// count, threads and processes, each transport; byte counters against the formula
// (seq->head: sent = sum_{j != r} T_r H_j D es, received = sum_{j != r} T_j H_r D es); and the
// argument checks.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "support/ranks.h"
#include "support/tensors.h"

using attnccl::test::Mode;
using attnccl::test::format;

namespace {

struct Spec {
  int P = 2;
  int numHeads = 4;
  int64_t seqLen = 20;
  int headDim = 8;
  attncclDataType_t dtype = attncclFloat32;
  attncclLayout_t layout = attncclLayoutContiguous;
  bool docs = false;
  Mode mode = Mode::kThreads;
  const char* transport = nullptr;
};

size_t elemSize(attncclDataType_t t) { return t == attncclFloat32 ? 4 : 2; }

// The bits element (pos, head, d) carries: a mix of the three, truncated to the element size.
uint32_t code(int64_t pos, int head, int d) {
  uint64_t x = static_cast<uint64_t>(pos) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(head) * 0xC2B2AE3D27D4EB4Full ^
               static_cast<uint64_t>(d) * 0x165667B19E3779F9ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return static_cast<uint32_t>(x >> 32);
}

void put(std::vector<unsigned char>& buf, int64_t index, size_t es, uint32_t v) {
  memcpy(buf.data() + index * es, &v, es);  // little endian: the low bytes
}

// Rows of positions pos[] with heads [first, first+count) of numHeads, coded.
std::vector<unsigned char> coded(const std::vector<int64_t>& pos, int first, int count, int D, size_t es) {
  std::vector<unsigned char> b(pos.size() * count * D * es + 1);
  for (size_t t = 0; t < pos.size(); ++t)
    for (int h = 0; h < count; ++h)
      for (int d = 0; d < D; ++d) put(b, (static_cast<int64_t>(t) * count + h) * D + d, es, code(pos[t], first + h, d));
  return b;
}

std::string firstDiff(const std::vector<unsigned char>& got, const std::vector<unsigned char>& want, size_t bytes,
                      size_t es, const char* what) {
  for (size_t i = 0; i < bytes; i += es) {
    if (memcmp(got.data() + i, want.data() + i, es) != 0) return format("%s: element %zu differs; ", what, i / es);
  }
  return "";
}

attncclAttnDesc_t descOf(const Spec& s, std::vector<int64_t>& cu) {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.dtype = s.dtype;
  d.seqLen = s.seqLen;
  d.numHeadsQ = 1;  // ignored by attncclHeadAllToAll
  d.numHeadsKV = 1;
  d.headDim = s.headDim;
  d.layout = s.layout;
  if (s.docs && s.seqLen >= 3) {
    cu = {0, s.seqLen / 3, s.seqLen / 3 + s.seqLen / 2, s.seqLen};
    d.numSeqs = 3;
    d.cuSeqlens = cu.data();
  }
  return d;
}

// Seq->head places every element exactly, head->seq of the coded head side gives the coded
// sequence side, and the round trip of the placed output returns the input.
std::string placement(const Spec& s) {
  std::vector<int64_t> cu;
  const attncclAttnDesc_t d = descOf(s, cu);
  const size_t es = elemSize(s.dtype);
  const int H = s.numHeads, D = s.headDim;
  return attnccl::test::runRanks(s.P, s.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(attnccl::test::initComm(&comm, rank, n, id, s.transport));
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    std::vector<int64_t> pos(T), all(s.seqLen);
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
    for (int64_t i = 0; i < s.seqLen; ++i) all[i] = i;
    int first = 0, count = 0;
    RK_OK(attncclHeadRange(H, n, rank, &first, &count));
    const size_t seqBytes = T * H * D * es, headBytes = (count ? s.seqLen : 0) * count * D * es;
    std::vector<unsigned char> seqIn = coded(pos, 0, H, D, es), headWant = coded(all, first, count, D, es);
    std::vector<unsigned char> headOut(headBytes + 1, 0xA5), seqBack(seqBytes + 1, 0x5A), seqOut(seqBytes + 1, 0x3C);
    std::string bad;
    attncclCommStats_t a = {sizeof(a), 0, 0, 0, 0}, b = {sizeof(b), 0, 0, 0, 0};
    RK_OK(attncclCommGetStats(comm, &a));
    RK_OK(attncclHeadAllToAll(T ? seqIn.data() : nullptr, headBytes ? headOut.data() : nullptr, H, attncclSeqToHead,
                              &d, comm, nullptr));
    RK_OK(attncclCommGetStats(comm, &b));
    bad += firstDiff(headOut, headWant, headBytes, es, "seq->head placement");
    // Volume: this rank's tokens of every other rank's heads out, all others' tokens of mine in.
    uint64_t wantSent = 0, wantRecv = 0;
    for (int j = 0; j < n; ++j) {
      if (j == rank) continue;
      int fj, cj;
      int64_t Tj;
      RK_OK(attncclHeadRange(H, n, j, &fj, &cj));
      RK_OK(attncclAttnLocalTokens(&d, n, j, &Tj, nullptr));
      wantSent += T * cj * D * es;
      wantRecv += Tj * count * D * es;
    }
    if (b.bytesSent - a.bytesSent != wantSent || b.bytesRecv - a.bytesRecv != wantRecv) {
      bad += format("bytes sent %llu recv %llu, formula %llu / %llu; ",
                    static_cast<unsigned long long>(b.bytesSent - a.bytesSent),
                    static_cast<unsigned long long>(b.bytesRecv - a.bytesRecv),
                    static_cast<unsigned long long>(wantSent), static_cast<unsigned long long>(wantRecv));
    }
    // Head->seq of the placed output: the round trip.
    RK_OK(attncclHeadAllToAll(headBytes ? headOut.data() : nullptr, T ? seqBack.data() : nullptr, H, attncclHeadToSeq,
                              &d, comm, nullptr));
    bad += firstDiff(seqBack, seqIn, seqBytes, es, "round trip");
    // Head->seq of an independently coded head side.
    RK_OK(attncclHeadAllToAll(headBytes ? headWant.data() : nullptr, T ? seqOut.data() : nullptr, H, attncclHeadToSeq,
                              &d, comm, nullptr));
    bad += firstDiff(seqOut, seqIn, seqBytes, es, "head->seq placement");
    RK_OK(attncclCommDestroy(comm));
    return bad;
  });
}

TEST(HeadAllToAll, PlacementMatrix) {
  const attncclLayout_t layouts[] = {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped};
  const attncclDataType_t dtypes[] = {attncclFloat32, attncclBfloat16, attncclFloat16};
  int i = 0;
  for (int P : {2, 3, 4, 5, 8}) {
    for (int H : {1, 2, 3, 5, 8, 12}) {
      Spec s;
      s.P = P;
      s.numHeads = H;
      const int64_t lens[] = {13 * P + 3, 31, std::max(1, P - 1), 1};
      s.seqLen = lens[i % 4];
      s.headDim = i % 3 == 0 ? 1 : 8 + (i % 5);
      s.dtype = dtypes[i % 3];
      s.layout = layouts[(i / 2) % 3];
      s.docs = i % 4 == 1;
      s.mode = i % 6 == 5 ? Mode::kProcesses : Mode::kThreads;
      EXPECT_EQ(placement(s), "") << "P=" << P << " H=" << H << " S=" << s.seqLen << " D=" << s.headDim
                                  << " layout " << s.layout;
      ++i;
    }
  }
}

TEST(HeadAllToAll, Transports) {
  for (const char* tr : attnccl::test::testTransports()) {
    for (Mode mode : {Mode::kThreads, Mode::kProcesses, Mode::kMixed}) {
      Spec s;
      s.P = 4;
      s.numHeads = 6;
      s.seqLen = 301;
      s.headDim = 64;
      s.dtype = attncclBfloat16;
      s.layout = attncclLayoutZigzag;
      s.docs = true;
      s.mode = mode;
      s.transport = tr;
      EXPECT_EQ(placement(s), "") << tr << " " << attnccl::test::modeName(mode);
    }
  }
}

TEST(HeadAllToAll, Arguments) {
  std::string err = attnccl::test::runRanks(2, Mode::kThreads, [](int rank, int n, const attncclUniqueId& id) {
    attncclComm_t comm = nullptr;
    RK_SUB(attnccl::test::initComm(&comm, rank, n, id));
    attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
    d.dtype = attncclFloat32;
    d.seqLen = 8;
    d.numHeadsQ = 1;
    d.numHeadsKV = 1;
    d.headDim = 4;
    std::vector<float> buf(8 * 2 * 4 * 2);
    RK_EXPECT_RESULT(attncclHeadAllToAll(buf.data(), buf.data(), 2, 7, &d, comm, nullptr), attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclHeadAllToAll(buf.data(), buf.data(), 0, attncclSeqToHead, &d, comm, nullptr),
                     attncclInvalidArgument);
    RK_EXPECT_RESULT(attncclHeadAllToAll(buf.data(), nullptr, 2, attncclSeqToHead, &d, comm, nullptr),
                     attncclInvalidArgument);
    // in and out overlapping (the exchange is not in place).
    RK_EXPECT_RESULT(attncclHeadAllToAll(buf.data(), buf.data() + 4, 2, attncclSeqToHead, &d, comm, nullptr),
                     attncclInvalidArgument);
    RK_OK(attncclCommDestroy(comm));
    return std::string();
  });
  EXPECT_EQ(err, "");
}

}  // namespace
