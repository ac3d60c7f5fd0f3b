// attncclCommInitNccl (include/attnccl_nccl.h): an attnccl communicator from an NCCL
// communicator, NCCL carrying only the rendezvous. Needs a GPU: where cudaGetDeviceCount finds
// none, every test skips and says so. With one GPU the 1-rank case runs (NCCL refuses two ranks
// on one device); with two or more, ranks as threads of this process, one per GPU, and a
// collective over the new communicator checks that the ranks really are connected.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "attnccl_nccl.h"

namespace {

// Number of CUDA devices, or 0 with *why set.
int gpuCount(std::string* why) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    *why = std::string("no usable GPU (cudaGetDeviceCount: ") + cudaGetErrorString(err) + ")";
    return 0;
  }
  if (n == 0) *why = "no GPU (cudaGetDeviceCount returned 0)";
  return n;
}

TEST(NcclBootstrap, OneRank) {
  std::string why;
  if (gpuCount(&why) < 1) GTEST_SKIP() << why << "; attncclCommInitNccl needs a GPU machine";
  ncclComm_t nccl;
  int dev = 0;
  ASSERT_EQ(ncclCommInitAll(&nccl, 1, &dev), ncclSuccess);
  attncclComm_t comm = nullptr;
  ASSERT_EQ(attncclCommInitNccl(&comm, nccl, nullptr), attncclSuccess) << attncclGetLastError(nullptr);
  int n = 0, r = -1;
  EXPECT_EQ(attncclCommCount(comm, &n), attncclSuccess);
  EXPECT_EQ(attncclCommUserRank(comm, &r), attncclSuccess);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(r, 0);
  // The NCCL communicator is no longer needed by attnccl.
  EXPECT_EQ(ncclCommDestroy(nccl), ncclSuccess);
  float in[4] = {1, 2, 3, 4}, out[4] = {0, 0, 0, 0};
  EXPECT_EQ(attncclAllGather(in, out, 4, attncclFloat32, comm, nullptr), attncclSuccess);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], in[i]);
  EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
}

TEST(NcclBootstrap, RejectsNullArguments) {
  std::string why;
  if (gpuCount(&why) < 1) GTEST_SKIP() << why << "; attncclCommInitNccl needs a GPU machine";
  ncclComm_t nccl;
  int dev = 0;
  ASSERT_EQ(ncclCommInitAll(&nccl, 1, &dev), ncclSuccess);
  EXPECT_EQ(attncclCommInitNccl(nullptr, nccl, nullptr), attncclInvalidArgument);
  attncclComm_t comm = nullptr;
  EXPECT_EQ(attncclCommInitNccl(&comm, nullptr, nullptr), attncclInvalidArgument);
  EXPECT_EQ(ncclCommDestroy(nccl), ncclSuccess);
}

TEST(NcclBootstrap, RanksAsThreadsOnePerGpu) {
  std::string why;
  int gpus = gpuCount(&why);
  if (gpus < 2) {
    GTEST_SKIP() << (gpus == 0 ? why : "one GPU") << "; this case needs 2 GPUs (NCCL allows one rank per GPU)";
  }
  const int n = gpus < 4 ? gpus : 4;
  std::vector<int> devs(n);
  for (int i = 0; i < n; ++i) devs[i] = i;
  std::vector<ncclComm_t> nccl(n);
  ASSERT_EQ(ncclCommInitAll(nccl.data(), n, devs.data()), ncclSuccess);

  std::vector<attncclResult_t> res(n, attncclInternalError);
  std::vector<int> ranks(n, -1), counts(n, 0);
  std::vector<std::vector<int>> gathered(n, std::vector<int>(n, -1));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      attncclComm_t comm = nullptr;
      res[i] = attncclCommInitNccl(&comm, nccl[i], nullptr);
      if (res[i] != attncclSuccess) return;
      attncclCommUserRank(comm, &ranks[i]);
      attncclCommCount(comm, &counts[i]);
      int mine = 100 + ranks[i];
      res[i] = attncclAllGather(&mine, gathered[i].data(), 1, attncclInt32, comm, nullptr);
      attncclCommDestroy(comm);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(res[i], attncclSuccess) << "thread " << i;
    int nr = -1;
    ncclCommUserRank(nccl[i], &nr);
    EXPECT_EQ(ranks[i], nr) << "attnccl rank must equal the NCCL rank";
    EXPECT_EQ(counts[i], n);
    for (int r = 0; r < n; ++r) EXPECT_EQ(gathered[i][r], 100 + r) << "thread " << i << " slot " << r;
    ncclCommDestroy(nccl[i]);
  }
}

}  // namespace
