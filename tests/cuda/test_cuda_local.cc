// A CUDA communicator of one rank: attention forward and backward on device memory against the
// fp64 reference (tensor-core and generic kernels, every mask, documents, GQA), stream
// semantics (the call returns before its work runs; capture into a CUDA graph and replay),
// MergeStates and HeadAllToAll on device memory, and the device ordinal checks. Every test but
// the ordinal check skips without a GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "cuda/cuda_test_util.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

attncclComm_t deviceComm(int device = 0) {
  attncclUniqueId id;
  if (attncclGetUniqueId(&id) != attncclSuccess) return nullptr;
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.device = device;
  attncclComm_t comm = nullptr;
  if (attncclCommInitRank(&comm, 1, id, 0, &cfg) != attncclSuccess) return nullptr;
  return comm;
}

TEST(CudaLocal, DeviceOrdinalIsChecked) {
  attncclUniqueId id;
  ASSERT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.device = 4096;
  attncclComm_t comm = nullptr;
  EXPECT_EQ(attncclCommInitRank(&comm, 1, id, 0, &cfg), attncclInvalidArgument);
  EXPECT_NE(std::string(attncclGetLastError(nullptr)).find("device is 4096"), std::string::npos)
      << attncclGetLastError(nullptr);
}

void checkWhole(const CaseSpec& spec, bool backward = true) {
  AttnCase c(spec, testSeed());
  GpuDistOptions o;
  o.nranks = 1;
  o.backward = backward;
  EXPECT_EQ(runDistributedGpu(c, o), "");
}

TEST(CudaLocal, TensorCoreShapes) {
  ATTN_REQUIRE_GPU();
  for (attncclDataType_t dt : {attncclBfloat16, attncclFloat16}) {
    for (int D : {64, 128, 40, 96}) {
      CaseSpec a;
      a.seqLen = 333, a.hq = 4, a.hkv = 2, a.dim = D, a.dtype = dt, a.causal = true;
      checkWhole(a);
      CaseSpec b;
      b.seqLen = 257, b.hq = 2, b.hkv = 2, b.dim = D, b.dtype = dt, b.windowLeft = 40, b.windowRight = 7;
      b.docLens = {100, 57, 100};
      checkWhole(b);
    }
  }
}

TEST(CudaLocal, GenericShapes) {
  ATTN_REQUIRE_GPU();
  CaseSpec a;
  a.seqLen = 200, a.hq = 3, a.hkv = 1, a.dim = 64, a.dtype = attncclFloat32, a.causal = true;
  checkWhole(a);
  CaseSpec b;
  b.seqLen = 150, b.hq = 2, b.hkv = 2, b.dim = 256, b.dtype = attncclBfloat16, b.docLens = {75, 75};
  checkWhole(b);
  CaseSpec d;
  d.seqLen = 99, d.hq = 2, d.hkv = 1, d.dim = 12, d.dtype = attncclFloat16, d.windowLeft = 3;
  checkWhole(d);
  CaseSpec e;
  e.seqLen = 1, e.hq = 1, e.hkv = 1, e.dim = 8, e.dtype = attncclBfloat16;
  checkWhole(e);
}

TEST(CudaLocal, LongSequence) {
  ATTN_REQUIRE_GPU();
  CaseSpec a;
  a.seqLen = 2048, a.hq = 2, a.hkv = 1, a.dim = 128, a.dtype = attncclBfloat16, a.causal = true;
  checkWhole(a, /*backward=*/false);
}

// Blocks the stream in a host callback; the attention call must return long before it opens.
void CUDART_CB holdStream(void* arg) { std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(arg))); }

TEST(CudaLocal, CallsReturnBeforeTheirWorkRuns) {
  ATTN_REQUIRE_GPU();
  CaseSpec spec;
  spec.seqLen = 256, spec.hq = 2, spec.hkv = 2, spec.dim = 64, spec.dtype = attncclBfloat16;
  AttnCase c(spec, testSeed());
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  attncclComm_t comm = deviceComm();
  ASSERT_NE(comm, nullptr) << attncclGetLastError(nullptr);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  DeviceBuffer q(c.q().data(), bytesOf(c.q())), k(c.k().data(), bytesOf(c.k())), v(c.v().data(), bytesOf(c.v()));
  DeviceBuffer out(bytesOf(c.q()));
  int holdMs = 500;
  // Warm up (first calls may load modules), then hold the stream.
  ASSERT_EQ(attncclAttnForward(q.get(), k.get(), v.get(), out.get(), nullptr, &c.desc(), attncclAlgoAuto, comm, s),
            attncclSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(s, holdStream, &holdMs), cudaSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(attncclAttnForward(q.get(), k.get(), v.get(), out.get(), nullptr, &c.desc(), attncclAlgoAuto, comm, s),
            attncclSuccess);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, holdMs / 2) << "the call waited for the stream";
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
  (void)cudaStreamDestroy(s);
}

TEST(CudaLocal, CapturedInACudaGraph) {
  ATTN_REQUIRE_GPU();
  CaseSpec spec;
  spec.seqLen = 300, spec.hq = 2, spec.hkv = 1, spec.dim = 64, spec.dtype = attncclFloat16, spec.causal = true;
  spec.docLens = {120, 180};
  AttnCase c(spec, testSeed());
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  attncclComm_t comm = deviceComm();
  ASSERT_NE(comm, nullptr) << attncclGetLastError(nullptr);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  const auto& d = c.desc();
  const int64_t S = d.seqLen;
  DeviceBuffer q(c.q().data(), bytesOf(c.q())), k(c.k().data(), bytesOf(c.k())), v(c.v().data(), bytesOf(c.v()));
  DeviceBuffer dout(c.dout().data(), bytesOf(c.dout()));
  DeviceBuffer out(bytesOf(c.q())), lse(static_cast<size_t>(S * d.numHeadsQ) * 4);
  DeviceBuffer dq(bytesOf(c.q())), dk(bytesOf(c.k())), dv(bytesOf(c.v()));
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(attncclAttnForward(q.get(), k.get(), v.get(), out.get(), lse.f(), &d, attncclAlgoAuto, comm, s),
            attncclSuccess);
  ASSERT_EQ(attncclAttnBackward(q.get(), k.get(), v.get(), out.get(), lse.f(), dout.get(), dq.get(), dk.get(),
                                dv.get(), &d, attncclAlgoAuto, comm, s),
            attncclSuccess);
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    out.poison();
    dq.poison();
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    Tensor o(d.dtype, S * d.numHeadsQ * d.headDim), g(d.dtype, S * d.numHeadsQ * d.headDim);
    ASSERT_TRUE(out.download(o.data()) && dq.download(g.data()));
    EXPECT_LE(relNormError(o.toDouble(), c.reference().out), tolerance(d.dtype)) << c.name();
    EXPECT_LE(relNormError(g.toDouble(), c.referenceGrads().dq), tolerance(d.dtype)) << c.name();
  }
  (void)cudaGraphExecDestroy(exec);
  (void)cudaGraphDestroy(graph);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
  (void)cudaStreamDestroy(s);
}

TEST(CudaLocal, MergeStatesOnDevice) {
  ATTN_REQUIRE_GPU();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  attncclComm_t comm = deviceComm();
  ASSERT_NE(comm, nullptr) << attncclGetLastError(nullptr);
  const int64_t tokens = 37;
  const int H = 3, D = 40;
  for (attncclDataType_t dt : {attncclFloat32, attncclBfloat16}) {
    Tensor a = randomTensor(dt, tokens * H * D, testSeed()), b = randomTensor(dt, tokens * H * D, testSeed() + 1);
    std::vector<float> la = randomFloats(tokens * H, testSeed() + 2, -3, 3);
    std::vector<float> lb = randomFloats(tokens * H, testSeed() + 3, -3, 3);
    la[5] = -INFINITY;  // A empty
    lb[7] = -INFINITY;  // B empty
    std::vector<double> wantO = a.toDouble(), wantL = toDouble(la);
    refMergeStates(wantO, wantL, b.toDouble(), toDouble(lb), tokens, H, D);
    DeviceBuffer ga(a.data(), bytesOf(a)), gb(b.data(), bytesOf(b)), gla(la.data(), la.size() * 4),
        glb(lb.data(), lb.size() * 4);
    ASSERT_EQ(attncclMergeStates(ga.get(), gla.f(), gb.get(), glb.f(), tokens, H, D, dt, comm, nullptr),
              attncclSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ASSERT_TRUE(ga.download(a.data()) && gla.download(la.data()));
    EXPECT_LE(relNormError(a.toDouble(), wantO), tolerance(dt));
    EXPECT_LE(maxAbsError(toDouble(la), wantL), 1e-5);
  }
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
}

TEST(CudaLocal, HeadAllToAllOfOneRankCopies) {
  ATTN_REQUIRE_GPU();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  attncclComm_t comm = deviceComm();
  ASSERT_NE(comm, nullptr) << attncclGetLastError(nullptr);
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.dtype = attncclBfloat16;
  d.seqLen = 50;
  d.numHeadsQ = d.numHeadsKV = 4;
  d.headDim = 16;
  Tensor in = randomTensor(d.dtype, 50 * 4 * 16, testSeed());
  Tensor got(d.dtype, in.numel());
  DeviceBuffer gin(in.data(), bytesOf(in)), gout(bytesOf(in));
  ASSERT_EQ(attncclHeadAllToAll(gin.get(), gout.get(), 4, attncclSeqToHead, &d, comm, nullptr), attncclSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(gout.download(got.data()));
  EXPECT_EQ(relNormError(got.toDouble(), in.toDouble()), 0.0);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
}

TEST(CudaLocal, BuildingBlocksSayNotSupported) {
  ATTN_REQUIRE_GPU();
  attncclComm_t comm = deviceComm();
  ASSERT_NE(comm, nullptr) << attncclGetLastError(nullptr);
  DeviceBuffer b(64);
  EXPECT_EQ(attncclAllGather(b.get(), b.get(), 4, attncclFloat32, comm, nullptr), attncclNotSupported);
  EXPECT_NE(std::string(attncclGetLastError(nullptr)).find("CUDA communicator"), std::string::npos);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
}

}  // namespace
}  // namespace attnccl_test
