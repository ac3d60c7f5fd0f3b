// Smoke test of the building-block perf tools: each runs a small sweep with ranks as threads,
// checks every element and prints an nccl-tests-like table; a bad flag gives usage and a
// non-zero exit. Timings are not asserted (benchmarks are not unit tests).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/command.h"

namespace {

using attnccl::test::runCommand;
using attnccl::test::words;
using RunResult = attnccl::test::CommandResult;

std::string tool(const char* name) { return std::string(PERF_BIN_DIR) + "/" + name; }

class PerfTool : public ::testing::TestWithParam<const char*> {};

// Runs `command` (a 1K-64K sweep, x4) and expects 4 rows, each with 0 wrong elements.
void expectCheckedSweep(const std::string& command) {
  RunResult r = runCommand(command);
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream in(r.output);
  std::string line;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> w = words(line);
    if (w.empty()) continue;
    if (w[0] == "#") {
      for (const std::string& x : w) {
        if (x == "#wrong") header = w;
      }
      continue;
    }
    if (w[0][0] != '#') rows.push_back(w);
  }
  ASSERT_FALSE(header.empty()) << "no column header\n" << r.output;
  size_t wrongCol = 0, sizeCol = 0;
  for (size_t i = 1; i < header.size(); ++i) {
    if (header[i] == "#wrong") wrongCol = i - 1;  // rows have no leading '#'
    if (header[i] == "size") sizeCol = i - 1;
  }
  ASSERT_EQ(rows.size(), 4u) << r.output;  // 1K, 4K, 16K, 64K
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), header.size() - 1) << r.output;
    EXPECT_EQ(row[wrongCol], "0") << r.output;
    EXPECT_GT(std::stoll(row[sizeCol]), 0) << r.output;
  }
  EXPECT_NE(r.output.find("# Avg bus bandwidth"), std::string::npos) << r.output;
}

TEST_P(PerfTool, SweepsAndChecksEveryElement) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built (ATTNCCL_BUILD_PERF=OFF)";
  expectCheckedSweep(tool(GetParam()) + " -r 3 -b 1K -e 64K -f 4 -n 2 -w 1 -c 1");
}

// -I 1: one buffer per rank, holding this rank's send data before the call. A call that wrote
// nothing leaves every receiving rank's own codes there, which the check counts as wrong.
TEST(PerfTools, InPlaceRunsAreChecked) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  for (const char* name : {"broadcast_perf", "all_reduce_perf"}) {
    expectCheckedSweep(tool(name) + " -r 3 -b 1K -e 64K -f 4 -n 2 -w 1 -c 1 -I 1");
    RunResult r = runCommand(tool(name) + " -r 2 -b 1K -e 1K -n 1 -w 0 -I 1");
    EXPECT_NE(r.output.find("# in place (sendbuff = recvbuff)"), std::string::npos) << r.output;
  }
  // Collectives whose buffers differ in size have no in-place mode here.
  RunResult r = runCommand(tool("allgather_perf") + " -r 2 -b 1K -e 1K -I 1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("usage:"), std::string::npos) << r.output;
}

// -A N: the buffers start N bytes past a page boundary, as a large malloc'ed block does (16),
// and the results are still checked element by element; the header says so.
TEST(PerfTools, OffsetBuffersAreChecked) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  for (const char* name : {"sendrecv_perf", "alltoall_perf", "broadcast_perf"}) {
    expectCheckedSweep(tool(name) + " -r 3 -b 1K -e 64K -f 4 -n 2 -w 1 -c 1 -A 16");
  }
  RunResult r = runCommand(tool("allgather_perf") + " -r 2 -b 1K -e 1K -n 1 -w 0 -A 24");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("buffers malloc + 24 bytes"), std::string::npos) << r.output;
  r = runCommand(tool("allgather_perf") + " -r 2 -b 1K -e 1K -A 3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("-A '3'"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Tools, PerfTool,
                         ::testing::Values("sendrecv_perf", "oneway_perf", "allgather_perf", "reduce_scatter_perf",
                                           "alltoall_perf", "all_reduce_perf", "broadcast_perf"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST(PerfTools, BadFlagGivesUsageAndFails) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  RunResult r = runCommand(tool("allgather_perf") + " -Q 1");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("usage:"), std::string::npos) << r.output;
  r = runCommand(tool("sendrecv_perf") + " -b lots");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("-b 'lots'"), std::string::npos) << r.output;
}

TEST(PerfTools, WritesJsonRows) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  std::string path = ::testing::TempDir() + "/sendrecv_perf_test.json";
  RunResult r = runCommand(tool("sendrecv_perf") + " -r 2 -b 1K -e 4K -f 2 -n 1 -w 0 -J " + path);
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  std::string json = text.str();
  size_t rows = 0;
  for (size_t at = json.find("\"size_bytes\""); at != std::string::npos; at = json.find("\"size_bytes\"", at + 1)) ++rows;
  EXPECT_EQ(rows, 3u) << json;  // 1K, 2K, 4K
  EXPECT_NE(json.find("\"ok\": true"), std::string::npos) << json;
  std::remove(path.c_str());
}

}  // namespace
