// The multi-rank GPU executor's programs (src/attn/program/dev_program.h), run by the CPU
// interpreter (tests/support/dev_interp.h) for ring, pass-Q and gather-scatter schedules over
// 2-4 ranks, every layout and mask: forward and backward results against the fp64 reference,
// under random interleavings of all ranks' streams, with the happens-before checker looking
// for unordered accesses and deadlocks. Also checks that the checker notices a missing wait.
#include <gtest/gtest.h>

#include <random>

#include "attn/algos/algos.h"
#include "attn/algos/registry.h"
#include "attn/desc.h"
#include "attn/program/dev_program.h"
#include "attn/program/dev_ulysses.h"
#include "attn/layout.h"
#include "attn/plan.h"
#include "support/attn_case.h"
#include "support/dev_interp.h"

namespace attnccl_test {
namespace {

namespace attn = attnccl::attn;
namespace gpu = attnccl::attn::gpu;

// A token-schedule algorithm's schedule, from its row of the table (as the CUDA executor
// takes it).
attn::Schedule scheduleOf(attncclAlgo_t algo, const attn::Problem& p, bool backward) {
  return attn::findAlgorithm(algo)->schedule(p, backward);
}

std::vector<gpu::DevProgram> programsOf(const attn::Problem& p, const attn::Schedule& s);

int gHybridGroup = 2;  // group size of the hybrid programs

// The programs of every rank for an algorithm (Ulysses and the hybrid have their own builders).
std::vector<gpu::DevProgram> programsFor(attncclAlgo_t algo, const attn::Problem& p, bool backward) {
  std::vector<gpu::DevProgram> progs;
  if (algo == attncclAlgoUlysses) {
    for (int r = 0; r < p.nranks; ++r) progs.push_back(gpu::buildUlyssesProgram(p, backward, r));
    return progs;
  }
  if (algo == attncclAlgoHybrid) {
    for (int r = 0; r < p.nranks; ++r) progs.push_back(gpu::buildHybridProgram(p, backward, r, gHybridGroup));
    return progs;
  }
  return programsOf(p, scheduleOf(algo, p, backward));
}

std::vector<gpu::DevProgram> programsOf(const attn::Problem& p, const attn::Schedule& s) {
  std::vector<attn::Plan> plans;
  for (int r = 0; r < p.nranks; ++r) plans.push_back(attn::compilePlan(p, s, r));
  std::vector<gpu::DevProgram> progs;
  for (int r = 0; r < p.nranks; ++r) progs.push_back(gpu::buildProgram(p, s, plans, r));
  return progs;
}

Tensor rowsOf(const Tensor& whole, const std::vector<int64_t>& pos, int64_t width) {
  Tensor t(whole.dtype(), static_cast<int64_t>(pos.size()) * width);
  for (size_t i = 0; i < pos.size(); ++i)
    for (int64_t e = 0; e < width; ++e) t.set(static_cast<int64_t>(i) * width + e, whole.get(pos[i] * width + e));
  return t;
}

std::vector<double> rowsOf(const std::vector<double>& whole, const std::vector<int64_t>& pos, int64_t width) {
  std::vector<double> out;
  for (int64_t p : pos)
    for (int64_t e = 0; e < width; ++e) out.push_back(whole[p * width + e]);
  return out;
}

struct RankData {
  std::vector<int64_t> pos;
  Tensor q, k, v, dout, out, dq, dk, dv;
  std::vector<float> lse;
};

// Runs forward then backward of a case on P ranks through the interpreter and compares.
void runCase(const CaseSpec& spec, int P, attncclAlgo_t algo, uint64_t interleaving) {
  AttnCase c(spec, testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  const attn::Problem p = attn::Problem::fromLayout(s, P);
  const int64_t qw = int64_t(s.numHeadsQ) * s.headDim, kw = int64_t(s.numHeadsKV) * s.headDim;
  std::vector<RankData> rd(P);
  std::vector<InterpTensors> t(P);
  for (int r = 0; r < P; ++r) {
    RankData& d = rd[r];
    d.pos = p.tokens[r].pos;
    const int64_t T = static_cast<int64_t>(d.pos.size());
    d.q = rowsOf(c.q(), d.pos, qw);
    d.k = rowsOf(c.k(), d.pos, kw);
    d.v = rowsOf(c.v(), d.pos, kw);
    d.dout = rowsOf(c.dout(), d.pos, qw);
    d.out = Tensor(s.dtype, T * qw);
    d.dq = Tensor(s.dtype, T * qw);
    d.dk = Tensor(s.dtype, T * kw);
    d.dv = Tensor(s.dtype, T * kw);
    d.lse.assign(static_cast<size_t>(T * s.numHeadsQ), 0.f);
    poison(d.out);
    poison(d.lse);
    poison(d.dq);
    poison(d.dk);
    poison(d.dv);
    t[r] = InterpTensors{d.q.data(), d.k.data(), d.v.data(), d.dout.data(), d.out.data(), d.lse.data(),
                         d.dq.data(), d.dk.data(), d.dv.data()};
  }
  const std::string name = c.name() + " " + attncclAlgoName(algo) + " P=" + std::to_string(P) +
                           " interleaving " + std::to_string(interleaving);
  DevInterpreter interp(P);
  ASSERT_EQ(interp.run(p, programsFor(algo, p, false), t, interleaving), "") << name;
  const RefForward& ref = c.reference();
  const double tol = tolerance(s.dtype);
  for (int r = 0; r < P; ++r) {
    EXPECT_LE(relNormError(rd[r].out.toDouble(), rowsOf(ref.out, rd[r].pos, qw)), tol) << name << " O rank " << r;
  }
  ASSERT_EQ(interp.run(p, programsFor(algo, p, true), t, interleaving + 1), "") << name;
  const RefGrads& g = c.referenceGrads();
  for (int r = 0; r < P; ++r) {
    EXPECT_LE(relNormError(rd[r].dq.toDouble(), rowsOf(g.dq, rd[r].pos, qw)), tol) << name << " dQ rank " << r;
    EXPECT_LE(relNormError(rd[r].dk.toDouble(), rowsOf(g.dk, rd[r].pos, kw)), tol) << name << " dK rank " << r;
    EXPECT_LE(relNormError(rd[r].dv.toDouble(), rowsOf(g.dv, rd[r].pos, kw)), tol) << name << " dV rank " << r;
  }
}

TEST(DevProgram, EveryAlgorithmLayoutAndMask) {
  const attncclAlgo_t algos[] = {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoUlysses};
  const attncclLayout_t layouts[] = {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped};
  std::mt19937_64 rng(testSeed());
  for (attncclAlgo_t algo : algos) {
    for (attncclLayout_t layout : layouts) {
      for (int P : {2, 3, 4}) {
        CaseSpec a;
        a.seqLen = 37 + 5 * P, a.hq = 4, a.hkv = 2, a.dim = 8, a.causal = true, a.layout = layout;
        runCase(a, P, algo, rng());
        CaseSpec b;
        b.seqLen = 29, b.hq = 2, b.hkv = 1, b.dim = 12, b.windowLeft = 6, b.windowRight = 2, b.layout = layout;
        b.docLens = {11, 18};
        runCase(b, P, algo, rng());
      }
    }
  }
}

TEST(DevProgram, SixteenBitStorageAndManyInterleavings) {
  std::mt19937_64 rng(testSeed());
  CaseSpec a;
  a.seqLen = 50, a.hq = 2, a.hkv = 2, a.dim = 16, a.dtype = attncclBfloat16, a.causal = true;
  a.layout = attncclLayoutZigzag;
  for (int i = 0; i < 10; ++i) runCase(a, 4, attncclAlgoRing, rng());
  for (int i = 0; i < 5; ++i) runCase(a, 3, attncclAlgoPassQ, rng());
}

// Ulysses' head splits: GQA with K/V heads shared by members (their dK/dV summed), MQA, fewer
// Q heads than ranks (members without heads), odd head counts.
TEST(DevProgram, UlyssesHeadSplits) {
  std::mt19937_64 rng(testSeed());
  const int shapes[][3] = {{8, 2, 3}, {4, 1, 4}, {2, 2, 3}, {6, 3, 4}, {5, 5, 2}};
  for (const auto& sh : shapes) {
    for (attncclLayout_t layout : {attncclLayoutZigzag, attncclLayoutStriped}) {
      CaseSpec a;
      a.seqLen = 41, a.hq = sh[0], a.hkv = sh[1], a.dim = 8, a.causal = true, a.layout = layout;
      a.docLens = {17, 24};
      runCase(a, sh[2], attncclAlgoUlysses, rng());
    }
  }
}

// The hybrid: head exchange inside groups of G ranks around the ring across groups (embedded).
TEST(DevProgram, HybridGroups) {
  std::mt19937_64 rng(testSeed());
  const int shapes[][4] = {{4, 2, 4, 2}, {8, 2, 4, 2}, {3, 3, 6, 3}, {6, 2, 6, 2}, {2, 1, 6, 3}};  // hq hkv P G
  for (const auto& sh : shapes) {
    gHybridGroup = sh[3];
    for (attncclLayout_t layout : {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped}) {
      CaseSpec a;
      a.seqLen = 47, a.hq = sh[0], a.hkv = sh[1], a.dim = 8, a.causal = true, a.layout = layout;
      a.docLens = {20, 27};
      runCase(a, sh[2], attncclAlgoHybrid, rng());
    }
    CaseSpec b;
    b.seqLen = 5, b.hq = sh[0], b.hkv = sh[1], b.dim = 8, b.windowLeft = 2;
    runCase(b, sh[2], attncclAlgoHybrid, rng());
  }
  gHybridGroup = 2;
}

TEST(DevProgram, RanksWithoutTokens) {
  CaseSpec a;
  a.seqLen = 3, a.hq = 2, a.hkv = 1, a.dim = 8, a.causal = true, a.layout = attncclLayoutContiguous;
  runCase(a, 4, attncclAlgoRing, 7);
  runCase(a, 4, attncclAlgoPassQ, 8);
  runCase(a, 4, attncclAlgoAllGather, 9);
  runCase(a, 4, attncclAlgoUlysses, 10);
}

// The checker notices missing synchronisation: without any one data wait a receiver reads a slot
// unordered with its sender's copy; without ready waits a sender overwrites a slot that the
// receiver still reads (some ready waits are implied by earlier ones, e.g. in the first rounds,
// so only the existence of necessary ones is asserted). The broken program runs as the second
// call, since ready waits also guard slots that the previous call still reads.
TEST(DevProgram, MissingWaitIsCaught) {
  CaseSpec a;
  a.seqLen = 24, a.hq = 2, a.hkv = 2, a.dim = 8, a.causal = true, a.layout = attncclLayoutZigzag;
  AttnCase c(a, testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  const int P = 4;
  const attn::Problem p = attn::Problem::fromLayout(s, P);
  const std::vector<gpu::DevProgram> good = programsOf(p, attn::ringSchedule(p, false));
  const int64_t qw = int64_t(s.numHeadsQ) * s.headDim, kw = int64_t(s.numHeadsKV) * s.headDim;
  std::vector<RankData> rd(P);
  std::vector<InterpTensors> t(P);
  for (int r = 0; r < P; ++r) {
    rd[r].pos = p.tokens[r].pos;
    const int64_t T = static_cast<int64_t>(rd[r].pos.size());
    rd[r].q = rowsOf(c.q(), rd[r].pos, qw);
    rd[r].k = rowsOf(c.k(), rd[r].pos, kw);
    rd[r].v = rowsOf(c.v(), rd[r].pos, kw);
    rd[r].out = Tensor(s.dtype, T * qw);
    rd[r].lse.assign(static_cast<size_t>(T * s.numHeadsQ), 0.f);
    t[r] = InterpTensors{rd[r].q.data(), rd[r].k.data(), rd[r].v.data(), nullptr, rd[r].out.data(), rd[r].lse.data()};
  }
  int dataWaits = 0, readyCaught = 0;
  for (size_t i = 0; i < good[1].ops.size(); ++i) {
    const auto* w = std::get_if<gpu::WaitFlagOp>(&good[1].ops[i].body);
    if (w == nullptr) continue;
    std::vector<gpu::DevProgram> bad = good;
    bad[1].ops.erase(bad[1].ops.begin() + static_cast<long>(i));
    bool caught = false;
    for (uint64_t seed = 0; seed < 20 && !caught; ++seed) {
      DevInterpreter interp(P);
      ASSERT_EQ(interp.run(p, good, t, seed + 100), "");
      caught = !interp.run(p, bad, t, seed).empty();
    }
    if (w->kind == 0) {
      EXPECT_TRUE(caught) << "removing '" << gpu::describe(good[1].ops[i]) << "' went unnoticed";
      ++dataWaits;
    } else {
      readyCaught += caught;
    }
  }
  EXPECT_GT(dataWaits, 0);
  EXPECT_GT(readyCaught, 0);
}

}  // namespace
}  // namespace attnccl_test
