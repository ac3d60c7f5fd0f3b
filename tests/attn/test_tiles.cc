// The CPU tiles (attn/tile.h) as the distributed executors will use them: query and key blocks
// with non-contiguous global positions (zigzag, striped), K/V split into blocks merged into one
// accumulator, head subsets, queries with nothing visible; plus the mask geometry and the
// helpers (Delta, merge, conversions). Results are checked against the fp64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>

#include "attn/cpu/gemm.h"
#include "attn/cpu/mask.h"
#include "attn/desc.h"
#include "attn/layout.h"
#include "attn/tile.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

using attnccl::ThreadPool;
namespace attn = attnccl::attn;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Relative error of a 16-bit case's output against the fp64 reference of the same inputs, as the
// tiles' path allows. Staged to fp32 (fp16 always, bf16 unless the path multiplies it as bf16),
// only fp32 rounding remains (10x fp32's tolerance).
// Multiplied as bf16 (the default where oneDNN's bf16 matmul is the faster one: AMX, AMD's
// AVX512-BF16), P is rounded to bf16 before O += P V, a relative 2^-9 per element: measured
// 1.0-1.4e-3 in norm on Zen 4, so 4e-3. Merging key blocks one after another is then exact only
// up to the same rounding, since each block's P is rounded against a different running maximum.
double halfOutTolerance(attncclDataType_t dtype) {
  return dtype == attncclBfloat16 && attn::cpu::gemmPath().bf16Native ? 4e-3 : tolerance(attncclFloat32) * 10;
}

// Rows `pos` of a whole-sequence tensor with `width` elements per token.
Tensor gatherRows(const Tensor& t, const std::vector<int64_t>& pos, int64_t width) {
  Tensor r(t.dtype(), static_cast<int64_t>(pos.size()) * width);
  for (size_t i = 0; i < pos.size(); ++i)
    for (int64_t c = 0; c < width; ++c) r.set(static_cast<int64_t>(i) * width + c, t.get(pos[i] * width + c));
  return r;
}

// One rank's share of a case under a layout: positions, documents and its input rows.
struct Shard {
  std::vector<int64_t> pos, doc;
  Tensor q, k, v, dout;
  attn::Tokens tokens() const { return {static_cast<int64_t>(pos.size()), pos.data(), doc.data()}; }
};

std::vector<Shard> shard(AttnCase& c, const attn::AttnShape& s, int P) {
  std::vector<Shard> out(P);
  const int64_t qw = s.numHeadsQ * s.headDim, kw = s.numHeadsKV * s.headDim;
  for (int r = 0; r < P; ++r) {
    Shard& sh = out[r];
    sh.pos = attn::localPositions(s, P, r);
    sh.doc = attn::documentIds(s, sh.pos);
    sh.q = gatherRows(c.q(), sh.pos, qw);
    sh.k = gatherRows(c.k(), sh.pos, kw);
    sh.v = gatherRows(c.v(), sh.pos, kw);
    sh.dout = gatherRows(c.dout(), sh.pos, qw);
  }
  return out;
}

void fillCommon(const attn::AttnShape& s, attn::TileCommon* t) {
  t->dtype = s.dtype;
  t->headDim = s.headDim;
  t->scale = s.scale;
  t->mask = {s.causal, s.windowLeft, s.windowRight};
  t->heads.numQ = s.numHeadsQ;
  t->heads.numKV = s.numHeadsKV;
  t->heads.group = s.group();
}

// Every rank's queries against every rank's keys, as a ring would run them, then backward the
// same way; the scattered results must match the whole-sequence reference.
void runSharded(const CaseSpec& cs, int P, uint64_t seed) {
  AttnCase c(cs, seed);
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  ThreadPool pool(2);
  std::vector<Shard> sh = shard(c, s, P);
  const int64_t D = s.headDim, qw = s.numHeadsQ * D, kw = s.numHeadsKV * D, S = s.seqLen;
  std::vector<double> out(S * qw), lse(s.numHeadsQ * S);
  std::vector<double> dq(S * qw), dk(S * kw), dv(S * kw);
  std::vector<std::vector<float>> o(P), l(P), gdq(P), gdk(P), gdv(P), delta(P);
  std::vector<Tensor> oStore(P);
  for (int r = 0; r < P; ++r) {
    const int64_t n = static_cast<int64_t>(sh[r].pos.size());
    o[r].resize(n * qw);
    l[r].resize(s.numHeadsQ * n);
    poison(o[r]);
    poison(l[r]);
    attn::clearAccumulator(o[r].data(), n, s.numHeadsQ, s.headDim, qw, l[r].data(), n);
    for (int step = 0; step < P; ++step) {
      const Shard& kv = sh[(r - step + P) % P];
      attn::FwdTileArgs a;
      fillCommon(s, &a);
      a.q = sh[r].q.data();
      a.ldq = qw;
      a.qTok = sh[r].tokens();
      a.k = kv.k.data();
      a.v = kv.v.data();
      a.ldkv = kw;
      a.kTok = kv.tokens();
      a.o = o[r].data();
      a.ldo = qw;
      a.lse = l[r].data();
      a.ldlse = n;
      // The hook is the executors' transport progress: it must only ever run on this thread.
      const std::thread::id caller = std::this_thread::get_id();
      bool elsewhere = false;
      attn::fwdTile(a, pool, [&] { elsewhere |= std::this_thread::get_id() != caller; });
      EXPECT_FALSE(elsewhere) << "the between hook ran on a pool thread";
    }
    oStore[r] = Tensor(s.dtype, n * qw);
    attn::storeRows(s.dtype, o[r].data(), qw, oStore[r].data(), qw, n, qw, pool);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t e = 0; e < qw; ++e) out[sh[r].pos[i] * qw + e] = o[r][i * qw + e];
      for (int h = 0; h < s.numHeadsQ; ++h) lse[h * S + sh[r].pos[i]] = l[r][h * n + i];
    }
  }
  const RefForward& ref = c.reference();
  EXPECT_LE(relNormError(out, ref.out), s.dtype == attncclFloat32 ? tolerance(attncclFloat32) : halfOutTolerance(s.dtype))
      << "P=" << P << " " << c.name() << " (" << attn::cpu::gemmPathName(attn::cpu::gemmPath()) << ")";
  EXPECT_LE(maxAbsError(lse, ref.lse), kLseTolerance) << "P=" << P << " " << c.name();

  for (int r = 0; r < P; ++r) {
    const int64_t n = static_cast<int64_t>(sh[r].pos.size());
    delta[r].resize(s.numHeadsQ * n);
    attn::computeDelta(s.dtype, oStore[r].data(), sh[r].dout.data(), n, s.numHeadsQ, D, qw, delta[r].data(), n, pool);
    gdq[r].assign(n * qw, 0.f);
    gdk[r].assign(n * kw, 0.f);
    gdv[r].assign(n * kw, 0.f);
  }
  for (int r = 0; r < P; ++r) {
    const int64_t n = static_cast<int64_t>(sh[r].pos.size());
    for (int step = 0; step < P; ++step) {
      const int r2 = (r + step) % P;
      attn::BwdTileArgs a;
      fillCommon(s, &a);
      a.q = sh[r].q.data();
      a.dout = sh[r].dout.data();
      a.ldq = qw;
      a.qTok = sh[r].tokens();
      a.k = sh[r2].k.data();
      a.v = sh[r2].v.data();
      a.ldkv = kw;
      a.kTok = sh[r2].tokens();
      a.lse = l[r].data();
      a.delta = delta[r].data();
      a.ldlse = n;
      a.dq = gdq[r].data();
      a.lddq = qw;
      a.dk = gdk[r2].data();
      a.dv = gdv[r2].data();
      a.lddkv = kw;
      attn::bwdTile(a, pool);
    }
  }
  for (int r = 0; r < P; ++r) {
    for (size_t i = 0; i < sh[r].pos.size(); ++i) {
      const int64_t p = sh[r].pos[i];
      for (int64_t e = 0; e < qw; ++e) dq[p * qw + e] = gdq[r][i * qw + e];
      for (int64_t e = 0; e < kw; ++e) {
        dk[p * kw + e] = gdk[r][i * kw + e];
        dv[p * kw + e] = gdv[r][i * kw + e];
      }
    }
  }
  const RefGrads& g = c.referenceGrads();
  const double tol = tolerance(s.dtype) * (s.dtype == attncclFloat32 ? 1 : 2);
  EXPECT_LE(relNormError(dq, g.dq), tol) << "dq P=" << P << " " << c.name();
  EXPECT_LE(relNormError(dk, g.dk), tol) << "dk P=" << P << " " << c.name();
  EXPECT_LE(relNormError(dv, g.dv), tol) << "dv P=" << P << " " << c.name();
}

CaseSpec caseOf(int64_t S, int hq, int hkv, int d, attncclDataType_t t, attncclLayout_t layout, bool causal,
                int64_t wl, int64_t wr, std::vector<int64_t> docs) {
  CaseSpec c;
  c.seqLen = S;
  c.hq = hq;
  c.hkv = hkv;
  c.dim = d;
  c.dtype = t;
  c.layout = layout;
  c.causal = causal;
  c.windowLeft = wl;
  c.windowRight = wr;
  c.docLens = std::move(docs);
  return c;
}

TEST(Tiles, StripedPositionsAcrossRanks) {
  uint64_t seed = testSeed();
  runSharded(caseOf(301, 4, 2, 64, attncclFloat32, attncclLayoutStriped, true, -1, -1, {}), 4, seed);
  runSharded(caseOf(200, 3, 1, 40, attncclBfloat16, attncclLayoutStriped, true, 33, -1, {90, 1, 109}), 3, seed + 1);
  runSharded(caseOf(150, 4, 4, 8, attncclFloat32, attncclLayoutStriped, false, 10, 5, {}), 5, seed + 2);
}

TEST(Tiles, ZigzagAndContiguousAcrossRanks) {
  uint64_t seed = testSeed();
  runSharded(caseOf(1100, 4, 2, 128, attncclFloat32, attncclLayoutZigzag, true, -1, -1, {}), 2, seed);
  runSharded(caseOf(97, 8, 2, 64, attncclFloat16, attncclLayoutZigzag, true, -1, -1, {40, 57}), 3, seed + 1);
  runSharded(caseOf(61, 4, 4, 40, attncclFloat32, attncclLayoutContiguous, false, -1, 3, {20, 41}), 8, seed + 2);
  runSharded(caseOf(5, 3, 1, 8, attncclFloat32, attncclLayoutContiguous, true, -1, -1, {}), 8, seed + 3);
}

// K/V cut into uneven blocks merged one after another into the same accumulator equals one call
// over the whole K/V (up to fp32 rounding; with bf16 products, up to P's rounding to bf16), and so
// does merging separate partials.
void checkSplitKeyBlocks(uint64_t seed) {
  AttnCase c(caseOf(700, 4, 2, 64, attncclBfloat16, attncclLayoutContiguous, true, 300, -1, {500, 200}), seed);
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  ThreadPool pool(2);
  const int64_t S = s.seqLen, qw = s.numHeadsQ * s.headDim, kw = s.numHeadsKV * s.headDim;
  std::vector<int64_t> pos(S), doc;
  for (int64_t i = 0; i < S; ++i) pos[i] = i;
  doc = attn::documentIds(s, pos);
  auto run = [&](int64_t k0, int64_t k1, float* o, float* lse) {
    attn::FwdTileArgs a;
    fillCommon(s, &a);
    a.q = c.q().data();
    a.ldq = qw;
    a.qTok = {S, pos.data(), doc.data()};
    const size_t esz = 2;
    a.k = static_cast<const char*>(c.k().data()) + k0 * kw * esz;
    a.v = static_cast<const char*>(c.v().data()) + k0 * kw * esz;
    a.ldkv = kw;
    a.kTok = {k1 - k0, pos.data() + k0, doc.data() + k0};
    a.o = o;
    a.ldo = qw;
    a.lse = lse;
    a.ldlse = S;
    attn::fwdTile(a, pool);
  };
  std::vector<float> one(S * qw), oneLse(s.numHeadsQ * S), acc(S * qw), accLse(s.numHeadsQ * S);
  attn::clearAccumulator(one.data(), S, s.numHeadsQ, s.headDim, qw, oneLse.data(), S);
  run(0, S, one.data(), oneLse.data());
  const std::vector<int64_t> cuts = {0, 1, 100, 101, 613, 650, S};
  poison(acc);
  attn::clearAccumulator(acc.data(), S, s.numHeadsQ, s.headDim, qw, accLse.data(), S);
  for (size_t i = cuts.size() - 1; i > 0; --i) run(cuts[i - 1], cuts[i], acc.data(), accLse.data());
  // fp32 products: the same sums in another order. bf16 products: P rounded per block (above).
  const bool bf16Products = attn::cpu::gemmPath().bf16Native;
  const double mergeTol = bf16Products ? halfOutTolerance(attncclBfloat16) : 1e-6;
  const std::string path = " (" + attn::cpu::gemmPathName(attn::cpu::gemmPath()) + ")";
  EXPECT_LE(relNormError(toDouble(acc), toDouble(one)), mergeTol) << c.name() << path;
  EXPECT_LE(maxAbsError(toDouble(accLse), toDouble(oneLse)), 1e-5) << c.name();

  // Separate partials, merged with mergeAccumulators.
  std::vector<float> part(S * qw), partLse(s.numHeadsQ * S);
  attn::clearAccumulator(acc.data(), S, s.numHeadsQ, s.headDim, qw, accLse.data(), S);
  for (size_t i = 1; i < cuts.size(); ++i) {
    attn::clearAccumulator(part.data(), S, s.numHeadsQ, s.headDim, qw, partLse.data(), S);
    run(cuts[i - 1], cuts[i], part.data(), partLse.data());
    attn::mergeAccumulators(acc.data(), accLse.data(), part.data(), partLse.data(), S, s.numHeadsQ, s.headDim, qw,
                            S, pool);
  }
  EXPECT_LE(relNormError(toDouble(acc), toDouble(one)), mergeTol) << c.name() << path;
  EXPECT_LE(maxAbsError(toDouble(accLse), toDouble(oneLse)), 1e-5) << c.name() << path;
  EXPECT_LE(relNormError(toDouble(one), c.reference().out), bf16Products ? halfOutTolerance(attncclBfloat16) : 1e-5)
      << c.name() << path;
}

TEST(Tiles, SplitKeyBlocksMergeToOneCall) {
  const uint64_t seed = testSeed();
  checkSplitKeyBlocks(seed);
  // Where the default multiplies bf16 as bf16, the staged path must still merge to fp32 rounding.
  const attn::cpu::GemmPath def = attn::cpu::gemmPath();
  if (!def.bf16Native) return;
  attn::cpu::GemmPath staged = def;
  staged.bf16Native = false;
  ASSERT_TRUE(attn::cpu::forceGemmPath(staged));
  checkSplitKeyBlocks(seed);
  attn::cpu::forceGemmPath(def);
}

// Deterministic backward (BwdTileArgs::deterministic): several threads adding many key blocks'
// dQ contributions give the same bits on every run, and the right gradients.
TEST(Tiles, DeterministicBackwardIsBitIdentical) {
  AttnCase c(caseOf(700, 4, 2, 64, attncclFloat32, attncclLayoutContiguous, true, -1, -1, {450, 250}), testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  ThreadPool pool(4);  // blocks shrink to feed 4 threads: 11 key blocks add into each dQ block
  const int64_t S = s.seqLen, qw = s.numHeadsQ * s.headDim, kw = s.numHeadsKV * s.headDim;
  std::vector<int64_t> pos(S);
  for (int64_t i = 0; i < S; ++i) pos[i] = i;
  std::vector<int64_t> doc = attn::documentIds(s, pos);
  std::vector<float> o(S * qw), lse(s.numHeadsQ * S), delta(s.numHeadsQ * S);
  attn::clearAccumulator(o.data(), S, s.numHeadsQ, s.headDim, qw, lse.data(), S);
  attn::FwdTileArgs f;
  fillCommon(s, &f);
  f.q = c.q().data();
  f.ldq = qw;
  f.qTok = {S, pos.data(), doc.data()};
  f.k = c.k().data();
  f.v = c.v().data();
  f.ldkv = kw;
  f.kTok = f.qTok;
  f.o = o.data();
  f.ldo = qw;
  f.lse = lse.data();
  f.ldlse = S;
  attn::fwdTile(f, pool);
  attn::computeDelta(s.dtype, o.data(), c.dout().data(), S, s.numHeadsQ, s.headDim, qw, delta.data(), S, pool);
  std::vector<float> first;
  for (int run = 0; run < 4; ++run) {
    std::vector<float> dq(S * qw, 0.f), dk(S * kw, 0.f), dv(S * kw, 0.f);
    attn::BwdTileArgs a;
    fillCommon(s, &a);
    a.q = c.q().data();
    a.dout = c.dout().data();
    a.ldq = qw;
    a.qTok = f.qTok;
    a.k = c.k().data();
    a.v = c.v().data();
    a.ldkv = kw;
    a.kTok = f.qTok;
    a.lse = lse.data();
    a.delta = delta.data();
    a.ldlse = S;
    a.dq = dq.data();
    a.lddq = qw;
    a.dk = dk.data();
    a.dv = dv.data();
    a.lddkv = kw;
    a.deterministic = true;
    attn::bwdTile(a, pool);
    if (run == 0) {
      const RefGrads& g = c.referenceGrads();
      EXPECT_LE(relNormError(toDouble(dq), g.dq), tolerance(attncclFloat32)) << c.name();
      EXPECT_LE(relNormError(toDouble(dk), g.dk), tolerance(attncclFloat32)) << c.name();
      EXPECT_LE(relNormError(toDouble(dv), g.dv), tolerance(attncclFloat32)) << c.name();
      first = dq;
    } else {
      ASSERT_EQ(0, std::memcmp(first.data(), dq.data(), first.size() * sizeof(float))) << "run " << run;
    }
  }
}

// Queries that see none of the block's keys leave the accumulator as it was: O = 0, LSE = -inf.
TEST(Tiles, NothingVisibleLeavesAccumulatorEmpty) {
  attn::AttnShape s;
  CaseSpec cs = caseOf(64, 2, 1, 16, attncclFloat32, attncclLayoutContiguous, true, -1, -1, {});
  AttnCase c(cs, testSeed());
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  ThreadPool pool(2);
  // Queries at positions 0..31 against keys at 32..63 under a causal mask: nothing visible.
  std::vector<int64_t> qpos(32), kpos(32), doc(32, 0);
  for (int i = 0; i < 32; ++i) {
    qpos[i] = i;
    kpos[i] = 32 + i;
  }
  const int64_t qw = 2 * 16, kw = 16;
  std::vector<float> o(32 * qw), lse(2 * 32);
  attn::clearAccumulator(o.data(), 32, 2, 16, qw, lse.data(), 32);
  attn::FwdTileArgs a;
  fillCommon(s, &a);
  a.q = c.q().data();
  a.ldq = qw;
  a.qTok = {32, qpos.data(), doc.data()};
  a.k = static_cast<const float*>(c.k().data()) + 32 * kw;
  a.v = static_cast<const float*>(c.v().data()) + 32 * kw;
  a.ldkv = kw;
  a.kTok = {32, kpos.data(), doc.data()};
  a.o = o.data();
  a.ldo = qw;
  a.lse = lse.data();
  a.ldlse = 32;
  attn::fwdTile(a, pool);
  for (float x : o) ASSERT_EQ(x, 0.f);
  for (float x : lse) ASSERT_EQ(x, -kInf);
  // Backward over the same pair adds nothing.
  std::vector<float> delta(64, 1.f), dq(32 * qw, 0.f), dk(32 * kw, 0.f), dv(32 * kw, 0.f);
  attn::BwdTileArgs b;
  fillCommon(s, &b);
  b.q = a.q;
  b.dout = c.dout().data();
  b.ldq = qw;
  b.qTok = a.qTok;
  b.k = a.k;
  b.v = a.v;
  b.ldkv = kw;
  b.kTok = a.kTok;
  b.lse = lse.data();
  b.delta = delta.data();
  b.ldlse = 32;
  b.dq = dq.data();
  b.lddq = qw;
  b.dk = dk.data();
  b.dv = dv.data();
  b.lddkv = kw;
  attn::bwdTile(b, pool);
  for (float x : dq) ASSERT_EQ(x, 0.f);
  for (float x : dk) ASSERT_EQ(x, 0.f);
  for (float x : dv) ASSERT_EQ(x, 0.f);
}

// A tile over a subset of heads (as head-sharded executors run it): query heads 2..3 of 4 with
// their key/value head 1 of 2.
TEST(Tiles, HeadSubset) {
  AttnCase c(caseOf(90, 4, 2, 24, attncclFloat32, attncclLayoutContiguous, true, -1, -1, {}), testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  ThreadPool pool(2);
  const int64_t S = 90, D = 24, qw = 4 * D, kw = 2 * D;
  std::vector<int64_t> pos(S), doc(S, 0);
  for (int64_t i = 0; i < S; ++i) pos[i] = i;
  std::vector<float> o(S * 2 * D), lse(2 * S);
  attn::clearAccumulator(o.data(), S, 2, D, 2 * D, lse.data(), S);
  attn::FwdTileArgs a;
  fillCommon(s, &a);
  a.heads = {2, 1, 2, 1, 2};
  a.q = static_cast<const float*>(c.q().data()) + 2 * D;
  a.ldq = qw;
  a.qTok = {S, pos.data(), doc.data()};
  a.k = static_cast<const float*>(c.k().data()) + D;
  a.v = static_cast<const float*>(c.v().data()) + D;
  a.ldkv = kw;
  a.kTok = a.qTok;
  a.o = o.data();
  a.ldo = 2 * D;
  a.lse = lse.data();
  a.ldlse = S;
  attn::fwdTile(a, pool);
  const RefForward& ref = c.reference();
  std::vector<double> want, wantLse;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t e = 0; e < 2 * D; ++e) want.push_back(ref.out[i * qw + 2 * D + e]);
  for (int h = 2; h < 4; ++h)
    for (int64_t i = 0; i < S; ++i) wantLse.push_back(ref.lse[h * S + i]);
  EXPECT_LE(relNormError(toDouble(o), want), 1e-5) << c.name();
  EXPECT_LE(maxAbsError(toDouble(lse), wantLse), kLseTolerance) << c.name();
}

// Row strides wider than the rows (padded tensors, sub-views) and a head subset, forward and
// backward: query heads 2..5 of 6 with their kv heads 1..2 of 3 (group 2), every tensor padded.
TEST(Tiles, PaddedStridesAndHeadSubsetBackward) {
  for (attncclDataType_t dt : {attncclFloat32, attncclFloat16}) {
    AttnCase c(caseOf(150, 6, 3, 24, dt, attncclLayoutContiguous, true, 60, -1, {70, 80}), testSeed());
    attn::AttnShape s;
    ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
    ThreadPool pool(2);
    const int64_t S = 150, D = 24, qw = 6 * D, kw = 3 * D;
    const int nq = 4, nkv = 2;
    const int64_t ldq = nq * D + 8, ldkv = nkv * D + 5, ldo = nq * D + 3, ldlse = S + 7, lddq = nq * D + 1,
                  lddkv = nkv * D + 9;
    std::vector<int64_t> pos(S);
    for (int64_t i = 0; i < S; ++i) pos[i] = i;
    std::vector<int64_t> doc = attn::documentIds(s, pos);
    // Padded copies holding only the subset's heads; the padding is NaN and must stay unread.
    auto padded = [&](const Tensor& src, int64_t width, int first, int count, int64_t ld) {
      Tensor t(dt, S * ld);
      poison(t);
      for (int64_t i = 0; i < S; ++i)
        for (int64_t e = 0; e < count * D; ++e) t.set(i * ld + e, src.get(i * width + first * D + e));
      return t;
    };
    Tensor q = padded(c.q(), qw, 2, nq, ldq), dout = padded(c.dout(), qw, 2, nq, ldq);
    Tensor k = padded(c.k(), kw, 1, nkv, ldkv), v = padded(c.v(), kw, 1, nkv, ldkv);
    std::vector<float> o(S * ldo), lse(nq * ldlse);
    poison(o);
    poison(lse);
    attn::clearAccumulator(o.data(), S, nq, D, ldo, lse.data(), ldlse);
    attn::FwdTileArgs a;
    fillCommon(s, &a);
    a.heads = {nq, nkv, 2, 1, 2};
    a.q = q.data();
    a.ldq = ldq;
    a.qTok = {S, pos.data(), doc.data()};
    a.k = k.data();
    a.v = v.data();
    a.ldkv = ldkv;
    a.kTok = a.qTok;
    a.o = o.data();
    a.ldo = ldo;
    a.lse = lse.data();
    a.ldlse = ldlse;
    attn::fwdTile(a, pool);
    const RefForward& ref = c.reference();
    std::vector<double> gotO, wantO, gotL, wantL;
    for (int64_t i = 0; i < S; ++i)
      for (int64_t e = 0; e < nq * D; ++e) {
        gotO.push_back(o[i * ldo + e]);
        wantO.push_back(ref.out[i * qw + 2 * D + e]);
      }
    for (int h = 0; h < nq; ++h)
      for (int64_t i = 0; i < S; ++i) {
        gotL.push_back(lse[h * ldlse + i]);
        wantL.push_back(ref.lse[(2 + h) * S + i]);
      }
    EXPECT_LE(relNormError(gotO, wantO), 1e-5) << c.name();
    EXPECT_LE(maxAbsError(gotL, wantL), kLseTolerance) << c.name();

    // Backward over the same subset, with O stored in the dtype (padded like q).
    Tensor oStore(dt, S * ldq);
    poison(oStore);
    attn::storeRows(dt, o.data(), ldo, oStore.data(), ldq, S, nq * D, pool);
    std::vector<float> delta(nq * ldlse), dq(S * lddq, 0.f), dk(S * lddkv, 0.f), dv(S * lddkv, 0.f);
    attn::computeDelta(dt, oStore.data(), dout.data(), S, nq, D, ldq, delta.data(), ldlse, pool);
    attn::BwdTileArgs b;
    fillCommon(s, &b);
    b.heads = a.heads;
    b.q = q.data();
    b.dout = dout.data();
    b.ldq = ldq;
    b.qTok = a.qTok;
    b.k = k.data();
    b.v = v.data();
    b.ldkv = ldkv;
    b.kTok = a.kTok;
    b.lse = lse.data();
    b.delta = delta.data();
    b.ldlse = ldlse;
    b.dq = dq.data();
    b.lddq = lddq;
    b.dk = dk.data();
    b.dv = dv.data();
    b.lddkv = lddkv;
    attn::bwdTile(b, pool);
    // The reference gradients of the subset: dq of heads 2..5; dk/dv of kv heads 1..2 get
    // contributions only from query heads 2..5, which are all of theirs (group 2).
    const RefGrads& g = c.referenceGrads();
    std::vector<double> gq, wq, gk, wk, gv, wv;
    for (int64_t i = 0; i < S; ++i) {
      for (int64_t e = 0; e < nq * D; ++e) {
        gq.push_back(dq[i * lddq + e]);
        wq.push_back(g.dq[i * qw + 2 * D + e]);
      }
      for (int64_t e = 0; e < nkv * D; ++e) {
        gk.push_back(dk[i * lddkv + e]);
        wk.push_back(g.dk[i * kw + D + e]);
        gv.push_back(dv[i * lddkv + e]);
        wv.push_back(g.dv[i * kw + D + e]);
      }
    }
    const double tol = dt == attncclFloat32 ? 1e-5 : 2 * tolerance(dt);
    EXPECT_LE(relNormError(gq, wq), tol) << c.name();
    EXPECT_LE(relNormError(gk, wk), tol) << c.name();
    EXPECT_LE(relNormError(gv, wv), tol) << c.name();
    // Padding of the outputs untouched.
    for (int64_t i = 0; i < S; ++i) {
      for (int64_t e = nq * D; e < lddq; ++e) ASSERT_EQ(dq[i * lddq + e], 0.f);
      for (int64_t e = nkv * D; e < lddkv; ++e) ASSERT_EQ(dk[i * lddkv + e], 0.f);
    }
  }
}

// The block geometry against the visibility rule itself, on random increasing positions.
TEST(Tiles, MaskGeometryMatchesVisibility) {
  uint64_t seed = testSeed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    attn::AttnShape s;
    s.seqLen = 200;
    s.cuSeqlens = {0};
    while (s.cuSeqlens.back() < s.seqLen)
      s.cuSeqlens.push_back(std::min<int64_t>(s.seqLen, s.cuSeqlens.back() + 1 + rng() % 120));
    s.causal = rng() % 2;
    s.windowLeft = rng() % 3 ? -1 : static_cast<int64_t>(rng() % 40);
    s.windowRight = rng() % 3 ? -1 : static_cast<int64_t>(rng() % 40);
    if (trial % 50 == 0) s.windowLeft = s.windowRight = std::numeric_limits<int64_t>::max();  // no overflow
    auto pick = [&](int64_t n) {
      std::vector<int64_t> p;
      int64_t stride = 1 + rng() % 4, at = rng() % 50;
      for (int64_t i = 0; i < n && at < s.seqLen; ++i, at += stride) p.push_back(at);
      return p;
    };
    std::vector<int64_t> qp = pick(1 + rng() % 40), kp = pick(1 + rng() % 40);
    std::vector<int64_t> qd = attn::documentIds(s, qp), kd = attn::documentIds(s, kp);
    attn::Tokens q{static_cast<int64_t>(qp.size()), qp.data(), qd.data()};
    attn::Tokens k{static_cast<int64_t>(kp.size()), kp.data(), kd.data()};
    attn::MaskSpec m{s.causal, s.windowLeft, s.windowRight};
    attn::cpu::BlockKind kind = attn::cpu::classifyBlock(m, q, 0, q.n, k, 0, k.n);
    std::vector<int64_t> lo(q.n), hi(q.n);
    attn::cpu::visibleRanges(m, q, 0, q.n, k, 0, k.n, lo.data(), hi.data());
    int64_t visible = 0;
    for (int64_t i = 0; i < q.n; ++i) {
      for (int64_t j = 0; j < k.n; ++j) {
        bool vis = s.visible(qp[i], kp[j]);
        visible += vis;
        ASSERT_EQ(vis, j >= lo[i] && j < hi[i]) << "trial " << trial << " i " << i << " j " << j << " " << seedText(seed);
      }
    }
    if (kind == attn::cpu::BlockKind::None) {
      ASSERT_EQ(visible, 0) << seedText(seed);
    }
    if (kind == attn::cpu::BlockKind::Full) {
      ASSERT_EQ(visible, q.n * k.n) << seedText(seed);
    }
  }
}

TEST(Tiles, MergeAccumulatorsMatchesReference) {
  uint64_t seed = testSeed();
  ThreadPool pool(2);
  const int64_t T = 150;
  const int H = 3, D = 20;
  std::vector<float> o = randomFloats(T * H * D, subSeed(seed, 0), -1, 1), ob = randomFloats(T * H * D, subSeed(seed, 1), -1, 1);
  std::vector<float> l = randomFloats(H * T, subSeed(seed, 2), -5, 30), lb = randomFloats(H * T, subSeed(seed, 3), -5, 30);
  for (int64_t i = 0; i < H * T; i += 7) l[i] = -kInf;
  for (int64_t i = 0; i < H * T; i += 5) lb[i] = -kInf;
  std::vector<double> ro = toDouble(o), rl = toDouble(l);
  refMergeStates(ro, rl, toDouble(ob), toDouble(lb), T, H, D);
  attn::mergeAccumulators(o.data(), l.data(), ob.data(), lb.data(), T, H, D, H * D, T, pool);
  EXPECT_LE(relNormError(toDouble(o), ro), 1e-6) << seedText(seed);
  EXPECT_LE(maxAbsError(toDouble(l), rl), 1e-5) << seedText(seed);
}

TEST(Tiles, DeltaAndRowConversions) {
  uint64_t seed = testSeed();
  ThreadPool pool(2);
  const int64_t T = 77;
  const int H = 3, D = 40;
  for (attncclDataType_t t : {attncclFloat32, attncclBfloat16, attncclFloat16}) {
    Tensor o = randomTensor(t, T * H * D, subSeed(seed, 0)), d = randomTensor(t, T * H * D, subSeed(seed, 1));
    std::vector<float> delta(H * T);
    attn::computeDelta(t, o.data(), d.data(), T, H, D, H * D, delta.data(), T, pool);
    std::vector<double> want(H * T, 0.0);
    for (int64_t i = 0; i < T; ++i)
      for (int h = 0; h < H; ++h)
        for (int c = 0; c < D; ++c) want[h * T + i] += o.get((i * H + h) * D + c) * d.get((i * H + h) * D + c);
    EXPECT_LE(relNormError(toDouble(delta), want), 1e-6) << seedText(seed);
    // loadRows then storeRows is the identity on stored values.
    std::vector<float> f(T * H * D);
    attn::loadRows(t, o.data(), H * D, f.data(), H * D, T, H * D, pool);
    Tensor back(t, T * H * D);
    poison(back);
    attn::storeRows(t, f.data(), H * D, back.data(), H * D, T, H * D, pool);
    EXPECT_EQ(back.toDouble(), o.toDouble());
  }
}

}  // namespace
}  // namespace attnccl_test
