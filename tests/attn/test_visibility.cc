// attn/visibility.h, the mask rule every part of the library shares: the per-pair rule against a
// transcription of its statement, a query's key range against the pairs, and the block
// classification against the pairs of the block, exhaustively over small sequences (every
// document split, mask and block pair) and on random strided blocks.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "attn/visibility.h"
#include "support/tensors.h"

namespace attnccl_test {
namespace {

namespace attn = attnccl::attn;

struct Mask {
  bool causal = false;
  int64_t windowLeft = -1, windowRight = -1;
};

// The rule as its statement reads, in terms of the distance d = i - j.
bool reference(const Mask& m, int64_t i, int64_t di, int64_t j, int64_t dj) {
  const int64_t d = i - j;
  const bool causalOk = !m.causal || d >= 0;
  const bool leftOk = m.windowLeft < 0 || d <= m.windowLeft;
  const bool rightOk = m.windowRight < 0 || -d <= m.windowRight;
  return di == dj && causalOk && leftOk && rightOk;
}

// Every mask over windows from none to past the sequence.
std::vector<Mask> masksFor(int64_t n) {
  std::vector<Mask> out;
  const int64_t windows[] = {-1, 0, 1, 2, 3, n, std::numeric_limits<int64_t>::max()};
  for (bool causal : {false, true})
    for (int64_t wl : windows)
      for (int64_t wr : windows) out.push_back(Mask{causal, wl, wr});
  return out;
}

// Documents of positions 0..n-1 from a bit mask of boundaries (bit p: a document starts at p+1).
std::vector<int64_t> docsOf(int64_t n, unsigned splits) {
  std::vector<int64_t> doc(n, 0);
  for (int64_t p = 1; p < n; ++p) doc[p] = doc[p - 1] + ((splits >> (p - 1)) & 1u);
  return doc;
}

struct Counts {
  int64_t none = 0, full = 0, partial = 0, blocks = 0;
};

// Classifies queries [q0, q1) against keys [k0, k1) of (pos, doc) and checks it against the
// pairs. exactNone: the positions are consecutive integers in one document, where a block
// without a visible pair is always found (the differences i - j then fill an interval).
void checkBlock(const Mask& m, const std::vector<int64_t>& qp, const std::vector<int64_t>& qd, size_t q0, size_t q1,
                const std::vector<int64_t>& kp, const std::vector<int64_t>& kd, size_t k0, size_t k1, bool exactNone,
                Counts* c) {
  int64_t visible = 0;
  for (size_t i = q0; i < q1; ++i)
    for (size_t j = k0; j < k1; ++j) visible += attn::pairVisible(m, qp[i], qd[i], kp[j], kd[j]);
  const int64_t total = static_cast<int64_t>((q1 - q0) * (k1 - k0));
  const attn::BlockSpan qs{qp[q0], qp[q1 - 1], qd[q0], qd[q1 - 1]};
  const attn::BlockSpan ks{kp[k0], kp[k1 - 1], kd[k0], kd[k1 - 1]};
  const attn::BlockClass cls = attn::classifySpans(m, qs, ks);
  const auto where = [&] {
    return ::testing::Message() << "causal " << m.causal << " wl " << m.windowLeft << " wr " << m.windowRight
                                << " q [" << q0 << ", " << q1 << ") k [" << k0 << ", " << k1 << ") visible "
                                << visible << "/" << total << " class " << cls;
  };
  if (cls == attn::kBlockNone) ASSERT_EQ(visible, 0) << where();
  // Full is exact both ways: every pair visible means the block is classified full.
  ASSERT_EQ(cls == attn::kBlockFull, visible == total) << where();
  if (exactNone) ASSERT_EQ(cls == attn::kBlockNone, visible == 0) << where();
  c->none += cls == attn::kBlockNone;
  c->full += cls == attn::kBlockFull;
  c->partial += cls == attn::kBlockPartial;
  ++c->blocks;
}

TEST(Visibility, PairRuleIsTheStatedRule) {
  const int64_t n = 9;
  int64_t checked = 0;
  for (const Mask& m : masksFor(n))
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t di : {0, 1})
          for (int64_t dj : {0, 1}) {
            ASSERT_EQ(attn::pairVisible(m, i, di, j, dj), reference(m, i, di, j, dj))
                << "causal " << m.causal << " wl " << m.windowLeft << " wr " << m.windowRight << " i " << i << " j "
                << j << " docs " << di << " " << dj;
            ++checked;
          }
  EXPECT_GT(checked, 10000);
}

// The range of each query inside each document it could be given (its own, or a part of it as
// a block of keys covers), every document split of n positions.
TEST(Visibility, KeyRangeHoldsExactlyTheVisibleKeys) {
  const int64_t n = 8;
  int64_t empty = 0, ranges = 0;
  for (const Mask& m : masksFor(n)) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t b = 0; b <= i; ++b) {
        for (int64_t e = i + 1; e <= n; ++e) {  // the document [b, e) holds i
          for (int64_t pb = b; pb < e; ++pb) {
            for (int64_t pe = pb + 1; pe <= e; ++pe) {  // the part of it [pb, pe) some keys cover
              int64_t lo, hi;
              attn::visibleKeyRange(m, i, pb, pe, &lo, &hi);
              ++ranges;
              if (lo >= hi) ++empty;
              for (int64_t j = pb; j < pe; ++j) {
                ASSERT_EQ(reference(m, i, 0, j, 0), j >= lo && j < hi)
                    << "causal " << m.causal << " wl " << m.windowLeft << " wr " << m.windowRight << " i " << i
                    << " part [" << pb << ", " << pe << ") range [" << lo << ", " << hi << ") j " << j;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(empty, 100);
  EXPECT_GT(ranges - empty, 10000);
}

// Every block pair of n consecutive positions, under every document split and mask.
TEST(Visibility, BlockClassesAgreeWithPairsExhaustively) {
  const int64_t n = 7;
  std::vector<int64_t> pos(n);
  for (int64_t p = 0; p < n; ++p) pos[p] = p;
  Counts c;
  for (unsigned splits = 0; splits < (1u << (n - 1)); ++splits) {
    const std::vector<int64_t> doc = docsOf(n, splits);
    for (const Mask& m : masksFor(n))
      for (size_t q0 = 0; q0 < static_cast<size_t>(n); ++q0)
        for (size_t q1 = q0 + 1; q1 <= static_cast<size_t>(n); ++q1)
          for (size_t k0 = 0; k0 < static_cast<size_t>(n); ++k0)
            for (size_t k1 = k0 + 1; k1 <= static_cast<size_t>(n); ++k1) {
              checkBlock(m, pos, doc, q0, q1, pos, doc, k0, k1, splits == 0, &c);
              if (::testing::Test::HasFatalFailure()) return;
            }
  }
  EXPECT_GT(c.none, 1000);
  EXPECT_GT(c.full, 1000);
  EXPECT_GT(c.partial, 1000);
}

// Strided and gapped blocks (striped and zigzag layouts, pieces of documents) at random.
TEST(Visibility, BlockClassesAgreeWithPairsOnRandomBlocks) {
  const uint64_t seed = testSeed();
  std::mt19937_64 rng(seed);
  auto block = [&rng](std::vector<int64_t>* pos, std::vector<int64_t>* doc) {
    pos->clear();
    doc->clear();
    const int n = 1 + static_cast<int>(rng() % 12);
    int64_t p = static_cast<int64_t>(rng() % 30), d = static_cast<int64_t>(rng() % 2);
    for (int i = 0; i < n; ++i) {
      p += 1 + static_cast<int64_t>(rng() % 4);
      if (rng() % 6 == 0) ++d;
      pos->push_back(p);
      doc->push_back(d);
    }
  };
  std::vector<int64_t> qp, qd, kp, kd;
  Counts c;
  for (int iter = 0; iter < 20000; ++iter) {
    block(&qp, &qd);
    block(&kp, &kd);
    Mask m;
    m.causal = rng() % 2 == 0;
    m.windowLeft = rng() % 3 == 0 ? -1 : static_cast<int64_t>(rng() % 25);
    m.windowRight = rng() % 3 == 0 ? -1 : static_cast<int64_t>(rng() % 25);
    checkBlock(m, qp, qd, 0, qp.size(), kp, kd, 0, kp.size(), false, &c);
    ASSERT_FALSE(::testing::Test::HasFatalFailure()) << seedText(seed);
  }
  EXPECT_GT(c.none, 100);
  EXPECT_GT(c.full, 100);
  EXPECT_GT(c.partial, 100);
}

}  // namespace
}  // namespace attnccl_test
