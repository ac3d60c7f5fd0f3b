// Smoke test of the attention perf tools (perf/*_attn_perf.cc, perf/kvcache_perf.cc): each runs a small sweep with
// ranks as threads, checks its result against the one-rank result and prints the table; the
// auto tool names the algorithm it chose; bad flags give usage. Timings are not asserted.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/command.h"

namespace {

using attnccl::test::runCommand;
using attnccl::test::words;
using RunResult = attnccl::test::CommandResult;

std::string tool(const std::string& name) { return std::string(PERF_BIN_DIR) + "/" + name; }

// Table rows keyed by column name.
std::vector<std::map<std::string, std::string>> parseTable(const std::string& out) {
  std::istringstream in(out);
  std::string line;
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> w = words(line);
    if (w.empty()) continue;
    if (w[0] == "#") {
      if (w.size() > 1 && (w[1] == "seqlen" || w[1] == "length")) header.assign(w.begin() + 1, w.end());
      continue;
    }
    if (w[0][0] == '#' || header.empty() || w.size() != header.size()) continue;
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < w.size(); ++i) row[header[i]] = w[i];
    rows.push_back(row);
  }
  return rows;
}

class AttnTool : public ::testing::TestWithParam<const char*> {};

TEST_P(AttnTool, SweepsAndChecks) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built (ATTNCCL_BUILD_PERF=OFF)";
  const std::string name = std::string(GetParam()) + "_attn_perf";
  RunResult r = runCommand(tool(name) + " -r 2 -T 1 -b 500 -e 1000 -f 2 -H 4 -K 2 -D 32 -d bf16 -n 1 -w 0");
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = parseTable(r.output);
  ASSERT_EQ(rows.size(), 2u) << r.output;
  for (auto& row : rows) {
    EXPECT_EQ(row["#wrong"], "0") << r.output;
    EXPECT_GT(std::stod(row["fwd_time"]), 0) << r.output;
    EXPECT_GT(std::stod(row["bwd_time"]), 0) << r.output;
    EXPECT_GT(std::stoll(row["fwd_sent"]), 0) << r.output;
    EXPECT_GE(std::stod(row["fwd_balance"]), 1.0) << r.output;
    EXPECT_NE(row["fwd_eff"], "N/A") << r.output;
    if (name == "auto_attn_perf") {
      EXPECT_NE(row["fwd_algo"], "auto") << r.output;
      EXPECT_NE(row["bwd_algo"], "auto") << r.output;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tools, AttnTool, ::testing::Values("ring", "passq", "allgather", "ulysses", "hybrid", "auto"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

TEST(AttnTools, OddRanksWindowContiguousFp32ForwardOnly) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  RunResult r = runCommand(tool("ring_attn_perf") +
                           " -r 3 -T 1 -b 777 -e 777 -H 2 -D 16 -d fp32 -C 1 -W 100 -l contiguous -B fwd -n 1 -w 0 -E 0");
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = parseTable(r.output);
  ASSERT_EQ(rows.size(), 1u) << r.output;
  EXPECT_EQ(rows[0]["#wrong"], "0") << r.output;
  EXPECT_EQ(rows[0]["mask"], "causal-w100") << r.output;
  EXPECT_EQ(rows[0].count("bwd_time"), 0u) << r.output;
  EXPECT_EQ(rows[0]["fwd_eff"], "N/A") << r.output;  // -E 0
}

TEST(AttnTools, BackwardOnlyWritesJson) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  std::string path = ::testing::TempDir() + "/passq_attn_perf_test.json";
  RunResult r = runCommand(tool("passq_attn_perf") + " -r 2 -T 1 -b 512 -e 512 -H 2 -D 16 -d fp16 -C 0 -l striped -B bwd" +
                           " -n 1 -w 0 -J " + path);
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  const std::string json = text.str();
  EXPECT_NE(json.find("\"bwd_time_us\""), std::string::npos) << json;
  EXPECT_EQ(json.find("\"fwd_time_us\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"ok\": true"), std::string::npos) << json;
  std::remove(path.c_str());
}

TEST(AttnTools, BadFlagsGiveUsage) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  RunResult r = runCommand(tool("ring_attn_perf") + " -l diagonal");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("usage:"), std::string::npos) << r.output;
  r = runCommand(tool("ring_attn_perf") + " -H 6 -K 4");
  EXPECT_EQ(r.status, 2) << r.output;
  r = runCommand(tool("ring_attn_perf") + " -d int32");
  EXPECT_EQ(r.status, 2) << r.output;
}

}  // namespace

// kvcache_perf: decode and prefill over a sharded cache, checked against one rank; a decode step
// sends each peer one partial, 32 + Hq (D + 1) 4 bytes (attn/kvcache/attend.cc).
TEST(AttnTools, KvCacheDecodeAndPrefill) {
  if (std::string(PERF_BIN_DIR).empty()) GTEST_SKIP() << "perf tools not built";
  RunResult r = runCommand(tool("kvcache_perf") + " -r 3 -T 1 -b 300 -e 600 -f 2 -H 4 -K 2 -D 16 -C 64 -B 16 -d bf16 -n 2 -w 0");
  ASSERT_EQ(r.status, 0) << r.output;
  auto rows = parseTable(r.output);
  ASSERT_EQ(rows.size(), 2u) << r.output;
  for (auto& row : rows) {
    EXPECT_EQ(row["#wrong"], "0") << r.output;
    EXPECT_GT(std::stod(row["decode"]), 0) << r.output;
    EXPECT_GT(std::stod(row["prefill"]), 0) << r.output;
    EXPECT_EQ(row["sent"], std::to_string(2 * (32 + 4 * 17 * 4))) << r.output;
    EXPECT_GT(std::stoll(row["read"]), 0) << r.output;
  }
  // A window that hides two of the three contiguous shards, fp32, no prefill phase.
  r = runCommand(tool("kvcache_perf") + " -r 3 -T 1 -b 300 -e 300 -H 2 -K 1 -D 8 -C 0 -P contiguous -W 50 -n 1 -w 0");
  ASSERT_EQ(r.status, 0) << r.output;
  rows = parseTable(r.output);
  ASSERT_EQ(rows.size(), 1u) << r.output;
  EXPECT_EQ(rows[0]["#wrong"], "0") << r.output;
  EXPECT_EQ(rows[0].count("prefill"), 0u) << r.output;
  r = runCommand(tool("kvcache_perf") + " -P diagonal");
  EXPECT_EQ(r.status, 2) << r.output;
}
