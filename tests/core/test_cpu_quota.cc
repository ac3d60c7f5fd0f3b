// CPU quotas (src/core/cpu_quota.h): the cgroup v2 and v1 texts give ceil(quota / period) cores, no
// quota gives 0, and the topology's core list never exceeds this process's quota; where this
// test may create a cgroup (root, cgroup v1 cpu controller), a process started inside one with
// a one-CPU quota sees exactly one core.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/cpu_quota.h"
#include "core/topology.h"

namespace attnccl {
namespace {

TEST(CpuQuota, CgroupV2CpuMax) {
  EXPECT_EQ(quotaCoresV2("max 100000\n"), 0);
  EXPECT_EQ(quotaCoresV2("200000 100000\n"), 2);
  EXPECT_EQ(quotaCoresV2("150000 100000"), 2);  // 1.5 CPUs of time: two cores run at once
  EXPECT_EQ(quotaCoresV2("50000 100000"), 1);
  EXPECT_EQ(quotaCoresV2("6400000 100000"), 64);
  EXPECT_EQ(quotaCoresV2(""), 0);
  EXPECT_EQ(quotaCoresV2("garbage"), 0);
  EXPECT_EQ(quotaCoresV2("100000 0"), 0);
}

TEST(CpuQuota, CgroupV1CfsQuota) {
  EXPECT_EQ(quotaCoresV1("-1\n", "100000\n"), 0);
  EXPECT_EQ(quotaCoresV1("400000\n", "100000\n"), 4);
  EXPECT_EQ(quotaCoresV1("250000", "100000"), 3);
  EXPECT_EQ(quotaCoresV1("", "100000"), 0);
  EXPECT_EQ(quotaCoresV1("100000", ""), 0);
}

TEST(CpuQuota, TopologyStaysWithinThisProcessQuota) {
  Topology t;
  ASSERT_EQ(Topology::detect(&t), attncclSuccess);
  ASSERT_FALSE(t.cores.empty());
  const int quota = processQuotaCores();
  printf("  this process: %zu core(s), CPU quota %d (0: none); %s\n", t.cores.size(), quota, t.summary.c_str());
  if (quota > 0) EXPECT_LE(t.cores.size(), static_cast<size_t>(quota));
  if (const char* want = getenv("ATTNCCL_TEST_EXPECT_CORES")) {  // set by the next test
    EXPECT_EQ(t.cores.size(), static_cast<size_t>(atoi(want)));
    EXPECT_NE(t.summary.find("CPU quota"), std::string::npos) << t.summary;
  }
}

bool writeText(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

TEST(CpuQuota, AProcessInACgroupWithAOneCpuQuotaSeesOneCore) {
  Topology t;
  ASSERT_EQ(Topology::detect(&t), attncclSuccess);
  if (t.cores.size() < 2) GTEST_SKIP() << "one core: a one-CPU quota changes nothing";
  const std::string dir = "/sys/fs/cgroup/cpu/attnccl-quota-test-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0) {
    GTEST_SKIP() << "cannot create a cgroup (" << dir << ": " << strerror(errno)
                 << "); the parsers above still check the quota arithmetic";
  }
  ASSERT_TRUE(writeText(dir + "/cpu.cfs_period_us", "100000") && writeText(dir + "/cpu.cfs_quota_us", "100000"))
      << "cannot set the quota in " << dir;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // a fresh process (the topology is cached per process) inside the cgroup
    if (!writeText(dir + "/tasks", std::to_string(getpid()))) _exit(3);
    setenv("ATTNCCL_TEST_EXPECT_CORES", "1", 1);
    execl("/proc/self/exe", "test_cpu_quota", "--gtest_filter=CpuQuota.TopologyStaysWithinThisProcessQuota",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  rmdir(dir.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the process in the cgroup saw another core count (status "
                                                              << status << ")";
}

}  // namespace
}  // namespace attnccl
