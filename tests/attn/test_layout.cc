// Layouts (attncclAttnLocalTokens), descriptor validation, head ranges and algorithm names: the
// pure parts of the attention API, for any number of ranks.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "attn/desc.h"
#include "attn/layout.h"
#include "attnccl.h"

namespace {

// Piece i of n over length L, as docs/api.md says: sizes as even as possible, the first L mod n
// pieces one longer. Written out independently of attn::evenPiece.
std::vector<int64_t> pieceBounds(int64_t L, int64_t n) {
  std::vector<int64_t> b = {0};
  for (int64_t i = 0; i < n; ++i) b.push_back(b.back() + L / n + (i < L % n ? 1 : 0));
  return b;
}

bool ownedBy(attncclLayout_t layout, int64_t p, int64_t L, int P, int r) {
  if (layout == attncclLayoutStriped) return p % P == r;
  if (layout == attncclLayoutContiguous) {
    std::vector<int64_t> b = pieceBounds(L, P);
    return p >= b[r] && p < b[r + 1];
  }
  std::vector<int64_t> b = pieceBounds(L, 2 * P);
  int r2 = 2 * P - 1 - r;
  return (p >= b[r] && p < b[r + 1]) || (p >= b[r2] && p < b[r2 + 1]);
}

TEST(Layout, LocalTokensPartitionEveryLayout) {
  const std::vector<std::vector<int64_t>> docSets = {{1}, {3}, {7}, {64}, {1000}, {5, 1, 13, 2}, {1, 1, 1}, {17, 300}};
  for (int layout = 0; layout < attncclNumLayouts; ++layout) {
    for (int P : {1, 2, 3, 4, 5, 8}) {
      for (const auto& docs : docSets) {
        std::vector<int64_t> cu = {0};
        for (int64_t len : docs) cu.push_back(cu.back() + len);
        attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
        d.seqLen = cu.back();
        d.numHeadsQ = d.numHeadsKV = 1;
        d.headDim = 8;
        d.layout = static_cast<attncclLayout_t>(layout);
        if (docs.size() > 1) {
          d.numSeqs = static_cast<int64_t>(docs.size());
          d.cuSeqlens = cu.data();
        }
        std::string what = "layout " + std::to_string(layout) + " P " + std::to_string(P) + " S " +
                           std::to_string(d.seqLen) + " docs " + std::to_string(docs.size());
        std::vector<int> owner(d.seqLen, -1);
        for (int r = 0; r < P; ++r) {
          int64_t count = -1;
          ASSERT_EQ(attncclAttnLocalTokens(&d, P, r, &count, nullptr), attncclSuccess) << what;
          std::vector<int64_t> pos(count + 1, -7);
          int64_t n = -1;
          ASSERT_EQ(attncclAttnLocalTokens(&d, P, r, &n, pos.data()), attncclSuccess) << what;
          ASSERT_EQ(n, count) << what;
          EXPECT_EQ(pos[count], -7) << "wrote past numTokens: " << what;
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_TRUE(pos[i] >= 0 && pos[i] < d.seqLen) << what;
            if (i > 0) {
              ASSERT_LT(pos[i - 1], pos[i]) << "not increasing: " << what;
            }
            ASSERT_EQ(owner[pos[i]], -1) << "position " << pos[i] << " on two ranks: " << what;
            owner[pos[i]] = r;
          }
          // Per document, the rank holds exactly what the layout gives it.
          for (size_t doc = 0; doc < docs.size(); ++doc) {
            int64_t mine = 0, expected = 0;
            for (int64_t p = cu[doc]; p < cu[doc + 1]; ++p) {
              bool own = ownedBy(d.layout, p - cu[doc], docs[doc], P, r);
              expected += own;
              if (own) {
                ASSERT_EQ(owner[p], r) << "position " << p << ": " << what;
              }
            }
            for (int64_t i = 0; i < n; ++i) mine += pos[i] >= cu[doc] && pos[i] < cu[doc + 1];
            ASSERT_EQ(mine, expected) << what;
            // As even as possible: at most one token more than the fairest share.
            const int64_t pieces = d.layout == attncclLayoutZigzag ? 2 * P : P;
            const int64_t perPiece = docs[doc] / pieces;
            const int64_t held = d.layout == attncclLayoutZigzag ? 2 : 1;
            EXPECT_GE(mine, held * perPiece) << what;
            EXPECT_LE(mine, held * (perPiece + 1)) << what;
          }
        }
        for (int64_t p = 0; p < d.seqLen; ++p) ASSERT_NE(owner[p], -1) << "position " << p << " unowned: " << what;
      }
    }
  }
}

TEST(Layout, EvenPiece) {
  for (int64_t L : {0, 1, 5, 16, 17}) {
    for (int64_t n : {1, 2, 3, 7, 20}) {
      int64_t prev = 0;
      for (int64_t i = 0; i < n; ++i) {
        int64_t b, e;
        attnccl::attn::evenPiece(L, n, i, &b, &e);
        EXPECT_EQ(b, prev);
        EXPECT_EQ(e - b, L / n + (i < L % n ? 1 : 0)) << L << " " << n << " " << i;
        prev = e;
      }
      EXPECT_EQ(prev, L);
    }
  }
}

struct BadDesc {
  const char* what;
  std::function<void(attncclAttnDesc_t&)> mutate;
  const char* message;  // must appear in attncclGetLastError
};

TEST(Layout, InvalidDescriptorsNameFieldAndValue) {
  static const int64_t notStartingAtZero[] = {1, 5, 10};
  static const int64_t notIncreasing[] = {0, 6, 6, 10};
  static const int64_t decreasing[] = {0, 7, 3, 10};
  static const int64_t shortEnd[] = {0, 4, 9};
  static const int64_t longEnd[] = {0, 4, 11};
  const std::vector<BadDesc> table = {
      {"heads not divisible", [](attncclAttnDesc_t& d) { d.numHeadsQ = 6, d.numHeadsKV = 4; }, "numHeadsQ 6"},
      {"numHeadsKV 0", [](attncclAttnDesc_t& d) { d.numHeadsKV = 0; }, "numHeadsKV 0"},
      {"numHeadsQ -1", [](attncclAttnDesc_t& d) { d.numHeadsQ = -1; }, "numHeadsQ -1"},
      {"headDim 0", [](attncclAttnDesc_t& d) { d.headDim = 0; }, "headDim 0"},
      {"headDim 257", [](attncclAttnDesc_t& d) { d.headDim = 257; }, "headDim 257"},
      {"seqLen 0", [](attncclAttnDesc_t& d) { d.seqLen = 0; }, "seqLen 0"},
      {"seqLen -3", [](attncclAttnDesc_t& d) { d.seqLen = -3; }, "seqLen -3"},
      {"dtype int32", [](attncclAttnDesc_t& d) { d.dtype = attncclInt32; }, "dtype 2"},
      {"dtype 99", [](attncclAttnDesc_t& d) { d.dtype = static_cast<attncclDataType_t>(99); }, "dtype 99"},
      {"layout 7", [](attncclAttnDesc_t& d) { d.layout = static_cast<attncclLayout_t>(7); }, "layout 7"},
      {"causal 2", [](attncclAttnDesc_t& d) { d.causal = 2; }, "causal 2"},
      {"windowLeft -2", [](attncclAttnDesc_t& d) { d.windowLeft = -2; }, "windowLeft -2"},
      {"windowRight -5", [](attncclAttnDesc_t& d) { d.windowRight = -5; }, "windowRight -5"},
      {"bad magic", [](attncclAttnDesc_t& d) { d.magic = 0x1234; }, "magic 0x1234"},
      {"small size", [](attncclAttnDesc_t& d) { d.size = 8; }, "size 8"},
      {"cuSeqlens[0] != 0", [](attncclAttnDesc_t& d) { d.numSeqs = 2, d.cuSeqlens = notStartingAtZero; },
       "cuSeqlens[0] is 1"},
      {"cuSeqlens repeats", [](attncclAttnDesc_t& d) { d.numSeqs = 3, d.cuSeqlens = notIncreasing; },
       "cuSeqlens[2] = 6"},
      {"cuSeqlens decreases", [](attncclAttnDesc_t& d) { d.numSeqs = 3, d.cuSeqlens = decreasing; },
       "cuSeqlens[2] = 3"},
      {"cuSeqlens ends early", [](attncclAttnDesc_t& d) { d.numSeqs = 2, d.cuSeqlens = shortEnd; },
       "cuSeqlens[2] = 9"},
      {"cuSeqlens ends late", [](attncclAttnDesc_t& d) { d.numSeqs = 2, d.cuSeqlens = longEnd; },
       "cuSeqlens[2] = 11"},
      {"numSeqs -1", [](attncclAttnDesc_t& d) { d.numSeqs = -1; }, "numSeqs -1"},
  };
  for (const BadDesc& b : table) {
    attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
    d.seqLen = 10;
    d.numHeadsQ = 4;
    d.numHeadsKV = 2;
    d.headDim = 64;
    b.mutate(d);
    int64_t n = 0;
    EXPECT_EQ(attncclAttnLocalTokens(&d, 2, 0, &n, nullptr), attncclInvalidArgument) << b.what;
    std::string msg = attncclGetLastError(nullptr);
    EXPECT_NE(msg.find(b.message), std::string::npos) << b.what << ": message was \"" << msg << "\"";
    attnccl::attn::AttnShape s;
    EXPECT_EQ(attnccl::attn::resolveDesc(&d, &s), attncclInvalidArgument) << b.what;
  }
  int64_t n = 0;
  EXPECT_EQ(attncclAttnLocalTokens(nullptr, 1, 0, &n, nullptr), attncclInvalidArgument);
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.seqLen = 10;
  d.numHeadsQ = d.numHeadsKV = 1;
  d.headDim = 256;
  EXPECT_EQ(attncclAttnLocalTokens(&d, 0, 0, &n, nullptr), attncclInvalidArgument);
  EXPECT_NE(std::string(attncclGetLastError(nullptr)).find("nranks 0"), std::string::npos);
  EXPECT_EQ(attncclAttnLocalTokens(&d, 3, 3, &n, nullptr), attncclInvalidArgument);
  EXPECT_NE(std::string(attncclGetLastError(nullptr)).find("rank 3"), std::string::npos);
  EXPECT_EQ(attncclAttnLocalTokens(&d, 3, 1, nullptr, nullptr), attncclInvalidArgument);
  EXPECT_EQ(attncclAttnLocalTokens(&d, 3, 1, &n, nullptr), attncclSuccess);
  EXPECT_EQ(n, 3);
}

TEST(Layout, ResolvedDescriptor) {
  const int64_t cu[] = {0, 3, 10};
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.seqLen = 10;
  d.numHeadsQ = 8;
  d.numHeadsKV = 2;
  d.headDim = 64;
  d.numSeqs = 2;
  d.cuSeqlens = cu;
  attnccl::attn::AttnShape s;
  ASSERT_EQ(attnccl::attn::resolveDesc(&d, &s), attncclSuccess);
  EXPECT_FLOAT_EQ(s.scale, 0.125f);
  EXPECT_EQ(s.group(), 4);
  EXPECT_EQ(s.numDocs(), 2);
  EXPECT_EQ(s.docOf(2), 0);
  EXPECT_EQ(s.docOf(3), 1);
  EXPECT_TRUE(s.visible(5, 9));
  EXPECT_FALSE(s.visible(3, 2));
  d.numSeqs = 0;  // cuSeqlens ignored: one document
  ASSERT_EQ(attnccl::attn::resolveDesc(&d, &s), attncclSuccess);
  EXPECT_EQ(s.numDocs(), 1);
  EXPECT_TRUE(s.visible(3, 2));
}

TEST(Layout, HeadRange) {
  for (int H : {1, 3, 8, 32}) {
    for (int P : {1, 2, 3, 5, 8}) {
      int next = 0;
      for (int r = 0; r < P; ++r) {
        int first = -1, count = -1;
        ASSERT_EQ(attncclHeadRange(H, P, r, &first, &count), attncclSuccess);
        EXPECT_EQ(first, next);
        EXPECT_EQ(count, H / P + (r < H % P ? 1 : 0));
        next = first + count;
      }
      EXPECT_EQ(next, H);
    }
  }
  int f, c;
  EXPECT_EQ(attncclHeadRange(0, 2, 0, &f, &c), attncclInvalidArgument);
  EXPECT_EQ(attncclHeadRange(4, 2, 2, &f, &c), attncclInvalidArgument);
  EXPECT_EQ(attncclHeadRange(4, 2, 0, nullptr, &c), attncclInvalidArgument);
}

// The one shape key of the per-shape caches: equal for equal shapes, different when any field
// differs (the scale included: a cached device program carries it).
TEST(Layout, ShapeKeyNamesEveryField) {
  using attnccl::attn::AttnShape;
  using attnccl::attn::shapeKey;
  AttnShape base;
  base.dtype = attncclBfloat16;
  base.seqLen = 100;
  base.numHeadsQ = 8;
  base.numHeadsKV = 2;
  base.headDim = 64;
  base.layout = attncclLayoutZigzag;
  base.scale = 0.125f;
  base.cuSeqlens = {0, 40, 100};
  EXPECT_EQ(shapeKey(base), shapeKey(AttnShape(base)));
  const std::vector<std::function<void(AttnShape&)>> changes = {
      [](AttnShape& s) { s.dtype = attncclFloat16; },
      [](AttnShape& s) { s.seqLen = 101; s.cuSeqlens.back() = 101; },
      [](AttnShape& s) { s.numHeadsQ = 4; },
      [](AttnShape& s) { s.numHeadsKV = 1; },
      [](AttnShape& s) { s.headDim = 32; },
      [](AttnShape& s) { s.layout = attncclLayoutStriped; },
      [](AttnShape& s) { s.causal = true; },
      [](AttnShape& s) { s.windowLeft = 7; },
      [](AttnShape& s) { s.windowRight = 7; },
      [](AttnShape& s) { s.scale = 0.25f; },
      [](AttnShape& s) { s.cuSeqlens = {0, 41, 100}; },
      [](AttnShape& s) { s.cuSeqlens = {0, 100}; },
  };
  for (size_t i = 0; i < changes.size(); ++i) {
    AttnShape s = base;
    changes[i](s);
    EXPECT_NE(shapeKey(s), shapeKey(base)) << "change " << i;
  }
}

TEST(Layout, AlgoNames) {
  EXPECT_STREQ(attncclAlgoName(attncclAlgoAuto), "auto");
  EXPECT_STREQ(attncclAlgoName(attncclAlgoRing), "ring");
  EXPECT_STREQ(attncclAlgoName(attncclAlgoPassQ), "passq");
  EXPECT_STREQ(attncclAlgoName(attncclAlgoAllGather), "allgather");
  EXPECT_STREQ(attncclAlgoName(attncclAlgoUlysses), "ulysses");
  EXPECT_STREQ(attncclAlgoName(attncclAlgoHybrid), "hybrid");
  EXPECT_STREQ(attncclAlgoName(static_cast<attncclAlgo_t>(42)), "unknown");
}

}  // namespace
