// Ranks as separate processes sharing GPU 0: their cuda_ipc windows are opened from IPC handles
// exchanged over the engine, and the flags are written across processes. Ring, pass-Q and
// Ulysses over 2 and 3 ranks, forward and backward against fp64. This program never initialises
// CUDA in its own process (the GPU check runs in a child), so the forked ranks can. Skips
// without a GPU.
#include <gtest/gtest.h>

#include "cuda/cuda_test_util.h"
#include "support/attn_case.h"

namespace attnccl_test {
namespace {

TEST(CudaIpcProcesses, RingPassQAndUlysses) {
  ATTN_REQUIRE_GPU();
  for (attncclAlgo_t algo : {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoUlysses}) {
    for (int P : {2, 3}) {
      CaseSpec a;
      a.seqLen = 333, a.hq = 4, a.hkv = 2, a.dim = 128, a.dtype = attncclBfloat16, a.causal = true;
      a.layout = attncclLayoutZigzag;
      AttnCase c(a, testSeed());
      GpuDistOptions o;
      o.algo = algo;
      o.nranks = P;
      o.mode = attnccl::test::Mode::kProcesses;
      EXPECT_EQ(runDistributedGpu(c, o), "");
    }
  }
}

}  // namespace
}  // namespace attnccl_test
