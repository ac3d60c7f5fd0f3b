// Single-rank attention (attn/local.h) against the fp64 reference: forward and backward over a
// covering set of lengths, head counts (MHA, GQA, MQA), head dims, dtypes and every mask kind,
// with fresh seeded inputs and poisoned outputs. Both row-operation ISAs are exercised.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <thread>

#include "attn/cpu/rowops.h"
#include "attn/desc.h"
#include "attn/local.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

using attnccl::ThreadPool;
namespace attn = attnccl::attn;

struct LocalResult {
  Tensor out;
  std::vector<float> lse;
};

LocalResult runForward(AttnCase& c, ThreadPool& pool) {
  attn::AttnShape s;
  EXPECT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  LocalResult r;
  r.out = Tensor(s.dtype, c.q().numel());
  poison(r.out);
  r.lse.resize(static_cast<size_t>(s.numHeadsQ * s.seqLen));
  poison(r.lse);
  attn::FwdTensors t{c.q().data(), c.k().data(), c.v().data(), r.out.data(), r.lse.data()};
  EXPECT_EQ(attn::localForward(s, t, pool), attncclSuccess);
  return r;
}

void checkForward(AttnCase& c, const LocalResult& r) {
  const RefForward& ref = c.reference();
  EXPECT_LE(relNormError(r.out.toDouble(), ref.out), tolerance(c.spec().dtype)) << c.name();
  EXPECT_LE(maxAbsError(toDouble(r.lse), ref.lse), kLseTolerance) << c.name();
}

void checkBackward(AttnCase& c, const LocalResult& fwd, ThreadPool& pool) {
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  Tensor dq(s.dtype, c.q().numel()), dk(s.dtype, c.k().numel()), dv(s.dtype, c.v().numel());
  poison(dq);
  poison(dk);
  poison(dv);
  attn::BwdTensors t{c.q().data(), c.k().data(), c.v().data(), fwd.out.data(), fwd.lse.data(),
                     c.dout().data(), dq.data(), dk.data(), dv.data()};
  ASSERT_EQ(attn::localBackward(s, t, pool), attncclSuccess);
  const RefGrads& g = c.referenceGrads();
  // Backward consumes O rounded to the storage dtype, so allow twice the dtype's tolerance
  // for the 16-bit formats (fp32 keeps its own).
  double tol = tolerance(s.dtype) * (s.dtype == attncclFloat32 ? 1 : 2);
  EXPECT_LE(relNormError(dq.toDouble(), g.dq), tol) << "dq " << c.name();
  EXPECT_LE(relNormError(dk.toDouble(), g.dk), tol) << "dk " << c.name();
  EXPECT_LE(relNormError(dv.toDouble(), g.dv), tol) << "dv " << c.name();
}

CaseSpec spec(int64_t S, int hq, int hkv, int d, attncclDataType_t t) {
  CaseSpec c;
  c.seqLen = S;
  c.hq = hq;
  c.hkv = hkv;
  c.dim = d;
  c.dtype = t;
  return c;
}

CaseSpec masked(CaseSpec c, bool causal, int64_t wl, int64_t wr, std::vector<int64_t> docs = {}) {
  c.causal = causal;
  c.windowLeft = wl;
  c.windowRight = wr;
  c.docLens = std::move(docs);
  return c;
}

// A covering set: every length, head pair, head dim, dtype and mask kind appears, not the cross
// product. The long cases keep the head dims the tiles are tuned for.
std::vector<CaseSpec> forwardCases() {
  return {
      masked(spec(1, 4, 4, 8, attncclFloat32), true, -1, -1),
      masked(spec(1, 3, 1, 256, attncclBfloat16), false, 0, 0),
      masked(spec(33, 2, 1, 1, attncclFloat32), true, -1, -1, {13, 20}),
      masked(spec(7, 3, 1, 40, attncclBfloat16), false, -1, -1),
      masked(spec(7, 8, 2, 8, attncclFloat16), true, 2, -1),
      masked(spec(61, 4, 2, 64, attncclFloat16), true, -1, -1),
      masked(spec(61, 4, 4, 256, attncclBfloat16), true, 7, -1, {20, 1, 40}),
      masked(spec(61, 8, 2, 40, attncclFloat32), false, -1, -1, {30, 31}),
      masked(spec(128, 8, 2, 128, attncclFloat32), false, 16, 0),
      masked(spec(128, 3, 1, 8, attncclFloat32), false, 5, 3),
      masked(spec(100, 8, 2, 40, attncclFloat16), false, -1, 4, {50, 25, 25}),
      masked(spec(128, 4, 4, 64, attncclFloat32), true, -1, 9),
      masked(spec(1000, 4, 2, 64, attncclFloat32), true, -1, -1),
      masked(spec(1000, 3, 1, 128, attncclBfloat16), false, -1, -1),
      masked(spec(700, 4, 2, 64, attncclFloat32), true, 200, -1, {300, 1, 399}),
      masked(spec(1000, 8, 2, 8, attncclFloat16), false, 100, 100, {600, 400}),
  };
}

TEST(LocalAttention, ForwardMatchesReference) {
  ThreadPool pool(2);
  uint64_t seed = testSeed();
  int i = 0;
  for (const CaseSpec& cs : forwardCases()) {
    AttnCase c(cs, subSeed(seed, i++));
    checkForward(c, runForward(c, pool));
  }
}

TEST(LocalAttention, ForwardExplicitScale) {
  ThreadPool pool(2);
  CaseSpec cs = masked(spec(61, 4, 2, 64, attncclFloat32), true, -1, -1);
  cs.scale = 0.37f;
  AttnCase c(cs, testSeed());
  checkForward(c, runForward(c, pool));
}

TEST(LocalAttention, ForwardPortableRowOps) {
  ASSERT_TRUE(attn::cpu::forceIsa(attn::cpu::Isa::Generic));
  ThreadPool pool(2);
  uint64_t seed = testSeed();
  for (const CaseSpec& cs : {masked(spec(61, 4, 2, 40, attncclBfloat16), true, 7, -1, {20, 41}),
                             masked(spec(130, 3, 1, 64, attncclFloat16), false, -1, -1),
                             masked(spec(200, 4, 4, 128, attncclFloat32), true, -1, -1)}) {
    AttnCase c(cs, seed++);
    LocalResult r = runForward(c, pool);
    checkForward(c, r);
    checkBackward(c, r, pool);
  }
  attn::cpu::forceIsa(attn::cpu::rowOpsFor(attn::cpu::Isa::Avx2) ? attn::cpu::Isa::Avx2 : attn::cpu::Isa::Generic);
}

std::vector<CaseSpec> backwardCases() {
  return {
      masked(spec(1, 4, 4, 8, attncclFloat32), true, -1, -1),
      masked(spec(7, 3, 1, 40, attncclBfloat16), false, -1, -1),
      masked(spec(7, 8, 2, 256, attncclFloat32), true, 2, 1),
      masked(spec(40, 2, 2, 1, attncclFloat32), false, -1, -1, {25, 15}),
      masked(spec(61, 4, 2, 64, attncclFloat16), true, -1, -1),
      masked(spec(61, 4, 4, 8, attncclFloat32), false, -1, -1, {20, 1, 40}),
      masked(spec(128, 8, 2, 128, attncclFloat32), true, 30, -1, {64, 64}),
      masked(spec(128, 3, 1, 40, attncclBfloat16), false, 5, 3),
      masked(spec(300, 4, 2, 64, attncclFloat32), false, -1, 20, {100, 200}),
      masked(spec(1000, 4, 2, 64, attncclFloat32), true, -1, -1),
  };
}

TEST(LocalAttention, BackwardMatchesReference) {
  ThreadPool pool(2);
  uint64_t seed = testSeed();
  int i = 0;
  for (const CaseSpec& cs : backwardCases()) {
    AttnCase c(cs, subSeed(seed, 100 + i++));
    LocalResult r = runForward(c, pool);
    checkForward(c, r);
    checkBackward(c, r, pool);
  }
}

TEST(LocalAttention, SingleThreadPoolGivesSameAnswer) {
  ThreadPool one(1), two(2);
  AttnCase c(masked(spec(300, 4, 2, 64, attncclFloat32), true, -1, -1), testSeed());
  LocalResult a = runForward(c, one), b = runForward(c, two);
  // Forward items do not share rows: the result does not depend on the thread count.
  EXPECT_EQ(a.out.toDouble(), b.out.toDouble()) << c.name();
  EXPECT_EQ(a.lse, b.lse) << c.name();
}

// Ranks may run as threads of one process, each with its own pool, all calling the BLAS at once.
TEST(LocalAttention, ConcurrentCallersWithOwnPools) {
  uint64_t seed = testSeed();
  std::vector<std::unique_ptr<AttnCase>> cases;
  for (int r = 0; r < 4; ++r)
    cases.emplace_back(new AttnCase(masked(spec(200 + 37 * r, 4, 2, 64, r % 2 ? attncclBfloat16 : attncclFloat32),
                                           r % 2 == 0, -1, -1),
                                    subSeed(seed, r)));
  std::vector<LocalResult> results(cases.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < cases.size(); ++r) {
    threads.emplace_back([&, r] {
      ThreadPool pool(2);
      for (int rep = 0; rep < 3; ++rep) results[r] = runForward(*cases[r], pool);
    });
  }
  for (auto& t : threads) t.join();
  for (size_t r = 0; r < cases.size(); ++r) checkForward(*cases[r], results[r]);
}

// Central differences of the fp64 reference forward check both the reference backward and the
// library's backward on tiny shapes.
TEST(LocalAttention, FiniteDifferenceGradients) {
  ThreadPool pool(2);
  uint64_t seed = testSeed();
  for (const CaseSpec& cs : {masked(spec(5, 2, 1, 3, attncclFloat32), true, -1, -1, {3, 2}),
                             masked(spec(6, 2, 2, 4, attncclFloat32), false, 2, 1)}) {
    AttnCase c(cs, seed++);
    std::vector<double> q = c.q().toDouble(), k = c.k().toDouble(), v = c.v().toDouble(),
                        dout = c.dout().toDouble();
    auto loss = [&]() {
      RefForward f = refForward(c.desc(), q, k, v);
      double s = 0;
      for (size_t i = 0; i < f.out.size(); ++i) s += f.out[i] * dout[i];
      return s;
    };
    auto numeric = [&](std::vector<double>& x) {
      std::vector<double> g(x.size());
      const double eps = 1e-6;
      for (size_t i = 0; i < x.size(); ++i) {
        double keep = x[i];
        x[i] = keep + eps;
        double up = loss();
        x[i] = keep - eps;
        double down = loss();
        x[i] = keep;
        g[i] = (up - down) / (2 * eps);
      }
      return g;
    };
    std::vector<double> nq = numeric(q), nk = numeric(k), nv = numeric(v);
    const RefGrads& g = c.referenceGrads();
    EXPECT_LE(relNormError(g.dq, nq), 1e-7) << c.name();
    EXPECT_LE(relNormError(g.dk, nk), 1e-7) << c.name();
    EXPECT_LE(relNormError(g.dv, nv), 1e-7) << c.name();
    LocalResult r = runForward(c, pool);
    checkBackward(c, r, pool);
  }
}

}  // namespace
}  // namespace attnccl_test
