// Hybrid attention (head all-to-all inside groups, ring across groups), forward and backward,
// against the fp64 reference and the one-rank result: group sizes 2, 3 and 4 over 4, 6 and 8
// ranks, degenerate groups (1, P, and a size that is not a divisor), MHA/GQA/MQA, fewer heads
// than group members, every layout and mask, each dtype, threads and processes, each transport,
// a non-blocking communicator; and the byte counters against the two levels' volume formulas.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/dist_case.h"

using namespace attnccl_test;
using attnccl::test::Mode;

namespace {

using MaskKind = RotationMask;
const auto& kMasks = kRotationMasks;
const auto& kLayouts = kRotationLayouts;
const auto& kDtypes = kRotationDtypes;

CaseSpec makeSpec(int64_t S, int hq, int hkv, int i) { return rotatingSpec(S, hq, hkv, 16, i); }

std::string run(const CaseSpec& spec, uint64_t seed, int P, int G, Mode mode = Mode::kThreads,
                const char* transport = nullptr) {
  AttnCase c(spec, seed);
  DistOptions o;
  o.algo = attncclAlgoHybrid;
  o.nranks = P;
  o.hybridGroupSize = G;
  o.mode = mode;
  o.transport = transport;
  return runDistributed(c, o);
}

// (P, G) x heads x layouts x masks in full, rotating dtype, length and launch mode.
TEST(Hybrid, Matrix) {
  const uint64_t seed = testSeed();
  struct Grid {
    int P, G;
  };
  struct Heads {
    int hq, hkv;
  };
  const Grid grids[] = {{4, 2}, {6, 2}, {6, 3}, {8, 4}, {8, 2}};
  const Heads heads[] = {{4, 4}, {4, 2}, {3, 1}, {8, 2}, {2, 2}, {6, 3}};
  int i = 0;
  for (const Grid& gr : grids) {
    for (const Heads& h : heads) {
      for (int cell = 0; cell < 15; ++cell, ++i) {  // layout x mask
        const int64_t lens[] = {9 * gr.P + 5, 37, gr.P - 1, 50};
        CaseSpec spec = makeSpec(lens[i % 4], h.hq, h.hkv, cell);
        spec.dtype = kDtypes[i % 3];
        // 16-bit storage only with a few tokens per rank: a rank whose every query sees one or two
        // keys has dQ ~ the rounding of O (cancellation in dP - Delta), which a relative-norm
        // tolerance cannot judge; the one-rank result shows the same, so fp32 covers these.
        if (spec.seqLen < 4 * gr.P) spec.dtype = attncclFloat32;
        Mode mode = i % 10 == 3 ? Mode::kProcesses : Mode::kThreads;
        EXPECT_EQ(run(spec, attnccl_test::subSeed(seed, i), gr.P, gr.G, mode), "")
            << "case " << i << " " << seedText(seed);
      }
    }
  }
}

// Every layout x mask at P = 4, G = 2 with K/V heads shared inside a group.
TEST(Hybrid, LayoutsMasks) {
  const uint64_t seed = testSeed();
  int i = 0;
  for (attncclLayout_t layout : kLayouts) {
    for (const MaskKind& m : kMasks) {
      CaseSpec spec;
      spec.seqLen = 58;
      spec.hq = 3;
      spec.hkv = 1;
      spec.dim = 16;
      spec.dtype = kDtypes[i % 3];
      spec.causal = m.causal;
      spec.windowLeft = m.wl;
      spec.windowRight = m.wr;
      spec.layout = layout;
      if (m.docs) spec.docLens = {11, 29, 18};
      EXPECT_EQ(run(spec, attnccl_test::subSeed(seed, 100 + i), 4, 2), "") << m.name << " " << seedText(seed);
      ++i;
    }
  }
}

// Group sizes that degenerate (1 = ring, P = Ulysses, 0 = by node = P here, 4 of 6 -> 3) and
// fewer heads than group members.
TEST(Hybrid, DegenerateGroupsAndFewHeads) {
  const uint64_t seed = testSeed();
  struct Case {
    int P, G, hq, hkv;
  };
  const Case cases[] = {{4, 1, 4, 2}, {4, 4, 4, 2}, {4, 0, 4, 4}, {6, 4, 6, 2}, {5, 2, 5, 5},
                        {8, 4, 3, 1}, {8, 4, 2, 2}, {4, 2, 1, 1}, {6, 3, 2, 1}};
  int i = 0;
  for (const Case& k : cases) {
    CaseSpec spec = makeSpec(7 * k.P + 3, k.hq, k.hkv, i);
    EXPECT_EQ(run(spec, attnccl_test::subSeed(seed, 200 + i), k.P, k.G), "")
        << "P=" << k.P << " G=" << k.G << " " << seedText(seed);
    ++i;
  }
}

TEST(Hybrid, Transports) {
  const uint64_t seed = testSeed();
  int i = 0;
  for (const char* tr : attnccl::test::testTransports()) {
    for (Mode mode : {Mode::kThreads, Mode::kProcesses}) {
      CaseSpec spec = makeSpec(45, 8, 2, i);
      EXPECT_EQ(run(spec, attnccl_test::subSeed(seed, 300 + i), 4, 2, mode, tr), "") << tr << " " << seedText(seed);
      ++i;
    }
  }
}

// Volume per rank (hybrid.cc), full mask and even contiguous tokens so every group holds N
// tokens and every K/V block visits every other group. Member i of G holds q_i / k_i heads, a
// member T = S/P tokens; Pg = P/G groups; es storage size.
//   group level, forward:  sent = recv = sum_{j != i} T (q_j + 2 k_j) D es + T q_i (D es + 4)
//   group level, backward: sent = sum_{j != i} T (q_j (2 D es + 8) + 2 k_j D es) + T (q_i D es + 2 W_i)
//                          (Q, dO, LSE and Delta rows; K, V; then dQ and dK/dV back)
//   ring level (q_i > 0):  forward sent = recv = (Pg - 1) N 2 k_i D es; backward adds
//                          (Pg - 1) N 2 k_i D 4 of dK/dV each way.
TEST(Hybrid, VolumeMatchesFormula) {
  struct Case {
    int P, G, hq, hkv;
  };
  const Case cases[] = {{4, 2, 4, 2}, {8, 4, 8, 2}, {6, 3, 3, 1}, {6, 2, 4, 4}};
  for (const Case& k : cases) {
    CaseSpec spec;
    spec.seqLen = 12 * k.P;
    spec.hq = k.hq;
    spec.hkv = k.hkv;
    spec.dim = 8;
    spec.dtype = attncclBfloat16;
    AttnCase c(spec, testSeed());
    const attncclAttnDesc_t& d = c.desc();
    std::string err = attnccl::test::runRanks(k.P, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
      attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
      cfg.transport = "shm";
      cfg.cpuThreads = 1;
      cfg.hybridGroupSize = k.G;
      attncclComm_t comm = nullptr;
      RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
      const int G = k.G, i = rank % G, Pg = n / G, g = d.numHeadsQ / d.numHeadsKV;
      const uint64_t D = d.headDim, es = 2, T = d.seqLen / n, N = T * G;
      std::vector<int> qf(G), qc(G), kf(G), kc(G);
      for (int m = 0; m < G; ++m) {
        attncclHeadRange(d.numHeadsQ, G, m, &qf[m], &qc[m]);
        kf[m] = qf[m] / g;
        kc[m] = qc[m] ? (qf[m] + qc[m] - 1) / g - kf[m] + 1 : 0;
      }
      auto W = [&](int m) {
        uint64_t w = 0;
        for (int h = kf[m]; h < kf[m] + kc[m]; ++h) {
          int users = 0;
          for (int u = 0; u < G; ++u) users += (qc[u] > 0 && kf[u] <= h && h < kf[u] + kc[u]) ? 1 : 0;
          w += users > 1 ? 4 * D : D * es;
        }
        return w;
      };
      uint64_t fwdS = 0, fwdR = 0, bwdS = 0, bwdR = 0;
      for (int j = 0; j < G; ++j) {
        if (j == i) continue;
        fwdS += T * (qc[j] + 2 * kc[j]) * D * es + T * qc[i] * (D * es + 4);
        fwdR += T * (qc[i] + 2 * kc[i]) * D * es + T * qc[j] * (D * es + 4);
        bwdS += T * (qc[j] * (2 * D * es + 8) + 2 * kc[j] * D * es) + T * (qc[i] * D * es + 2 * W(i));
        bwdR += T * (qc[i] * (2 * D * es + 8) + 2 * kc[i] * D * es) + T * (qc[j] * D * es + 2 * W(j));
      }
      if (qc[i] > 0) {
        const uint64_t kvBlocks = (Pg - 1) * N * 2 * kc[i] * D * es, dkvBlocks = (Pg - 1) * N * 2 * kc[i] * D * 4;
        fwdS += kvBlocks;
        fwdR += kvBlocks;
        bwdS += kvBlocks + dkvBlocks;
        bwdR += kvBlocks + dkvBlocks;
      }
      const int64_t qe = T * d.numHeadsQ * D, ke = T * d.numHeadsKV * D;
      Tensor q = randomTensor(d.dtype, qe, 1), kk = randomTensor(d.dtype, ke, 2), v = randomTensor(d.dtype, ke, 3);
      Tensor out(d.dtype, qe), dq(d.dtype, qe), dk(d.dtype, ke), dv(d.dtype, ke);
      std::vector<float> lse(T * d.numHeadsQ);
      // The first call makes the group views and the scratch: warm up, then measure calls that
      // reuse them.
      RK_OK(attncclAttnForward(q.data(), kk.data(), v.data(), out.data(), lse.data(), &d, attncclAlgoHybrid, comm,
                               nullptr));
      for (int rep = 0; rep < 2; ++rep) {
        for (bool bwd : {false, true}) {
          attncclCommStats_t a = {sizeof(a), 0, 0, 0, 0}, b = {sizeof(b), 0, 0, 0, 0};
          RK_OK(attncclCommGetStats(comm, &a));
          if (!bwd) {
            RK_OK(attncclAttnForward(q.data(), kk.data(), v.data(), out.data(), lse.data(), &d, attncclAlgoHybrid, comm,
                                     nullptr));
          } else {
            RK_OK(attncclAttnBackward(q.data(), kk.data(), v.data(), out.data(), lse.data(), q.data(), dq.data(),
                                      dk.data(), dv.data(), &d, attncclAlgoHybrid, comm, nullptr));
          }
          RK_OK(attncclCommGetStats(comm, &b));
          const uint64_t ws = bwd ? bwdS : fwdS, wr = bwd ? bwdR : fwdR;
          RK_CHECK(b.bytesSent - a.bytesSent == ws && b.bytesRecv - a.bytesRecv == wr,
                   "P=%d G=%d Hq=%d Hkv=%d %s: sent %llu recv %llu, formula %llu / %llu", n, G, d.numHeadsQ,
                   d.numHeadsKV, bwd ? "bwd" : "fwd", static_cast<unsigned long long>(b.bytesSent - a.bytesSent),
                   static_cast<unsigned long long>(b.bytesRecv - a.bytesRecv), static_cast<unsigned long long>(ws),
                   static_cast<unsigned long long>(wr));
        }
      }
      RK_OK(attncclCommDestroy(comm));
      return std::string();
    });
    EXPECT_EQ(err, "") << c.name();
  }
}

// A non-blocking communicator runs the call (and the making of the group views) on its worker.
TEST(Hybrid, NonBlocking) {
  CaseSpec spec = makeSpec(40, 4, 2, 0);
  AttnCase c(spec, testSeed());
  const attncclAttnDesc_t& d = c.desc();
  const std::vector<double>& want = c.reference().out;
  std::string err = attnccl::test::runRanks(4, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    cfg.cpuThreads = 1;
    cfg.hybridGroupSize = 2;
    attncclComm_t comm = nullptr;
    attncclResult_t r = attncclCommInitRank(&comm, n, id, rank, &cfg);
    RK_CHECK(r == attncclSuccess || r == attncclInProgress, "init: %s", attncclGetErrorString(r));
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    std::vector<int64_t> pos(T);
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
    const int64_t row = static_cast<int64_t>(d.numHeadsQ) * d.headDim, krow = static_cast<int64_t>(d.numHeadsKV) * d.headDim;
    Tensor q(d.dtype, T * row), k(d.dtype, T * krow), v(d.dtype, T * krow), out(d.dtype, T * row);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t e = 0; e < row; ++e) q.set(t * row + e, c.q().get(pos[t] * row + e));
      for (int64_t e = 0; e < krow; ++e) {
        k.set(t * krow + e, c.k().get(pos[t] * krow + e));
        v.set(t * krow + e, c.v().get(pos[t] * krow + e));
      }
    }
    r = attncclAttnForward(q.data(), k.data(), v.data(), out.data(), nullptr, &d, attncclAlgoHybrid, comm, nullptr);
    RK_CHECK(r == attncclSuccess || r == attncclInProgress, "forward: %s", attncclGetErrorString(r));
    attncclResult_t state = attncclInProgress;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (state == attncclInProgress && std::chrono::steady_clock::now() < until) {
      RK_OK(attncclCommGetAsyncError(comm, &state));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    RK_CHECK(state == attncclSuccess, "async state %s: %s", attncclGetErrorString(state), attncclGetLastError(comm));
    std::vector<double> got = out.toDouble(), ref;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t e = 0; e < row; ++e) ref.push_back(want[pos[t] * row + e]);
    double e = relNormError(got, ref);
    RK_CHECK(e <= tolerance(d.dtype), "O relative error %.3g", e);
    RK_OK(attncclCommDestroy(comm));
    return std::string();
  });
  EXPECT_EQ(err, "");
}

}  // namespace

// attncclCommAbort of a communicator whose hybrid call waits inside one of its group views (rank
// 3 never makes the call) ends the call promptly instead of leaving it to the timeout.
TEST(Hybrid, AbortEndsViewWaits) {
  CaseSpec spec = makeSpec(40, 4, 2, 1);
  AttnCase c(spec, testSeed());
  const attncclAttnDesc_t& d = c.desc();
  std::string err = attnccl::test::runRanks(4, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.cpuThreads = 1;
    cfg.hybridGroupSize = 2;
    cfg.timeoutMs = 60000;
    attncclComm_t comm = nullptr;
    RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    const int64_t qe = T * d.numHeadsQ * d.headDim, ke = T * d.numHeadsKV * d.headDim;
    Tensor q = randomTensor(d.dtype, qe, 1), k = randomTensor(d.dtype, ke, 2), v = randomTensor(d.dtype, ke, 3);
    Tensor out(d.dtype, qe);
    auto forward = [&] {
      return attncclAttnForward(q.data(), k.data(), v.data(), out.data(), nullptr, &d, attncclAlgoHybrid, comm, nullptr);
    };
    RK_OK(forward());  // makes the group views
    using Clock = std::chrono::steady_clock;
    if (rank == 3) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3000));
      RK_OK(attncclCommAbort(comm));
      return std::string();
    }
    attncclResult_t r = attncclSuccess;
    std::thread call([&] { r = forward(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto t0 = Clock::now();
    RK_OK(attncclCommAbort(comm));
    call.join();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    RK_CHECK(r != attncclSuccess, "the call succeeded although rank 3 never made it");
    RK_CHECK(s < 2.0, "abort took %.2f s", s);
    return std::string();
  });
  EXPECT_EQ(err, "");
}
