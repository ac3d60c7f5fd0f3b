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
#include "attn/local_cases.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

using attnccl::ThreadPool;
namespace attn = attnccl::attn;

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
  for (attn::cpu::Isa isa : {attn::cpu::Isa::Avx512, attn::cpu::Isa::Avx2, attn::cpu::Isa::Generic})
    if (isa <= attn::cpu::isaCap() && attn::cpu::forceIsa(isa)) break;  // back to the default
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
