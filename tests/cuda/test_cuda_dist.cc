// Distributed attention on CUDA communicators whose ranks share GPU 0 as threads of this
// process (the cuda_ipc windows of same-process peers are plain pointers): ring, pass-Q,
// gather-scatter and Ulysses over 2, 3 and 4 ranks, every layout, causal/window/document masks,
// GQA, uneven lengths and ranks without tokens, forward and backward against fp64; the hybrid
// with groups of 2 and 3; graph capture of a distributed call on every rank. Skips without a
// GPU. (Ranks as processes, through CUDA IPC handles: test_cuda_ipc_procs.)
#include <gtest/gtest.h>

#include "cuda/cuda_test_util.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

const attncclAlgo_t kAlgos[] = {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoUlysses};
const attncclLayout_t kLayouts[] = {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped};

TEST(CudaDist, EveryAlgorithmLayoutAndRankCount) {
  ATTN_REQUIRE_GPU();
  for (attncclAlgo_t algo : kAlgos) {
    for (attncclLayout_t layout : kLayouts) {
      for (int P : {2, 3, 4}) {
        CaseSpec a;
        a.seqLen = 300 + 17 * P, a.hq = 4, a.hkv = 2, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
        a.layout = layout;
        AttnCase c(a, testSeed());
        GpuDistOptions o;
        o.algo = algo;
        o.nranks = P;
        EXPECT_EQ(runDistributedGpu(c, o), "");
      }
    }
  }
}

TEST(CudaDist, MasksDocumentsAndDtypes) {
  ATTN_REQUIRE_GPU();
  for (attncclAlgo_t algo : kAlgos) {
    CaseSpec a;
    a.seqLen = 257, a.hq = 2, a.hkv = 1, a.dim = 128, a.dtype = attncclFloat16, a.windowLeft = 50, a.windowRight = 5;
    a.docLens = {100, 57, 100}, a.layout = attncclLayoutZigzag;
    AttnCase ca(a, testSeed());
    GpuDistOptions o;
    o.algo = algo;
    o.nranks = 3;
    EXPECT_EQ(runDistributedGpu(ca, o), "");
    CaseSpec b;
    b.seqLen = 90, b.hq = 3, b.hkv = 3, b.dim = 20, b.dtype = attncclFloat32, b.causal = true;
    b.layout = attncclLayoutStriped;
    AttnCase cb(b, testSeed());
    o.nranks = 2;
    EXPECT_EQ(runDistributedGpu(cb, o), "");
  }
}

TEST(CudaDist, RanksWithoutTokensAndNoLse) {
  ATTN_REQUIRE_GPU();
  CaseSpec a;
  a.seqLen = 3, a.hq = 2, a.hkv = 1, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
  AttnCase c(a, testSeed());
  for (attncclAlgo_t algo : kAlgos) {
    GpuDistOptions o;
    o.algo = algo;
    o.nranks = 4;
    EXPECT_EQ(runDistributedGpu(c, o), "");
    o.lse = false;
    o.backward = false;
    EXPECT_EQ(runDistributedGpu(c, o), "");
  }
}

TEST(CudaDist, RepeatedCallsReuseWindows) {
  ATTN_REQUIRE_GPU();
  // Growing shapes on the same communicators: windows grow, flags keep counting.
  for (int64_t S : {64, 512, 128, 1024}) {
    CaseSpec a;
    a.seqLen = S, a.hq = 2, a.hkv = 2, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
    a.layout = attncclLayoutZigzag;
    AttnCase c(a, testSeed());
    GpuDistOptions o;
    o.nranks = 4;
    EXPECT_EQ(runDistributedGpu(c, o), "");
  }
}

TEST(CudaDist, CapturedOnEveryRank) {
  ATTN_REQUIRE_GPU();
  CaseSpec a;
  a.seqLen = 400, a.hq = 2, a.hkv = 2, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
  a.layout = attncclLayoutZigzag;
  AttnCase c(a, testSeed());
  const auto& d = c.desc();
  const int64_t qRow = int64_t(d.numHeadsQ) * d.headDim, kRow = int64_t(d.numHeadsKV) * d.headDim;
  std::string err = attnccl::test::runRanks(4, attnccl::test::Mode::kThreads,
                                            [&](int rank, int n, const attncclUniqueId& id) {
    RK_CHECK(cudaSetDevice(0) == cudaSuccess, "cudaSetDevice");
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.device = 0;
    attncclComm_t comm = nullptr;
    RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    std::vector<int64_t> pos(static_cast<size_t>(T));
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
    Tensor q = rowsOfTensor(c.q(), pos, qRow), k = rowsOfTensor(c.k(), pos, kRow), v = rowsOfTensor(c.v(), pos, kRow);
    DeviceBuffer gq(q.data(), bytesOf(q)), gk(k.data(), bytesOf(k)), gv(v.data(), bytesOf(v));
    Tensor out(d.dtype, T * qRow);
    DeviceBuffer gout(bytesOf(out));
    cudaStream_t s;
    RK_CHECK(cudaStreamCreate(&s) == cudaSuccess, "stream");
    cudaGraph_t graph;
    RK_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    RK_OK(attncclAttnForward(gq.get(), gk.get(), gv.get(), gout.get(), nullptr, &d, attncclAlgoRing, comm, s));
    RK_CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess, "end capture: %s", cudaGetErrorString(cudaGetLastError()));
    cudaGraphExec_t exec;
    RK_CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess, "instantiate");
    std::string bad;
    for (int replay = 0; replay < 3; ++replay) {
      gout.poison();
      RK_CHECK(cudaGraphLaunch(exec, s) == cudaSuccess, "launch");
      RK_CHECK(cudaStreamSynchronize(s) == cudaSuccess, "sync: %s", cudaGetErrorString(cudaGetLastError()));
      RK_CHECK(gout.download(out.data()), "download");
      bad += compareSlice("O vs fp64", out.toDouble(), rowsOfRef(c.reference().out, pos, qRow), tolerance(d.dtype),
                          c.reference().out);
    }
    (void)cudaGraphExecDestroy(exec);
    (void)cudaGraphDestroy(graph);
    RK_OK(attncclCommDestroy(comm));
    (void)cudaStreamDestroy(s);
    return bad;
  });
  EXPECT_EQ(err, "");
}

TEST(CudaDist, UlyssesHeadSplits) {
  ATTN_REQUIRE_GPU();
  const int shapes[][3] = {{8, 2, 3}, {4, 1, 4}, {2, 2, 3}, {6, 3, 4}};
  for (const auto& sh : shapes) {
    CaseSpec a;
    a.seqLen = 301, a.hq = sh[0], a.hkv = sh[1], a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
    a.layout = attncclLayoutStriped, a.docLens = {150, 151};
    AttnCase c(a, testSeed());
    GpuDistOptions o;
    o.algo = attncclAlgoUlysses;
    o.nranks = sh[2];
    EXPECT_EQ(runDistributedGpu(c, o), "");
  }
}

TEST(CudaDist, HybridGroups) {
  ATTN_REQUIRE_GPU();
  const int shapes[][4] = {{4, 2, 4, 2}, {8, 2, 4, 2}, {3, 3, 6, 3}, {2, 1, 6, 3}};  // hq hkv P G
  for (const auto& sh : shapes) {
    for (attncclLayout_t layout : kLayouts) {
      CaseSpec a;
      a.seqLen = 299, a.hq = sh[0], a.hkv = sh[1], a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
      a.layout = layout, a.docLens = {100, 199};
      AttnCase c(a, testSeed());
      GpuDistOptions o;
      o.algo = attncclAlgoHybrid;
      o.nranks = sh[2];
      o.hybridGroupSize = sh[3];
      EXPECT_EQ(runDistributedGpu(c, o), "");
    }
  }
}

}  // namespace
}  // namespace attnccl_test
