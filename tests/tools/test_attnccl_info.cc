// tools/attnccl-info: the report has its sections and lists every parameter of the registry;
// --env-markdown gives one table row per parameter; README.md carries exactly that table (so the
// documented variables, defaults and help texts cannot drift from src/core/params.cc).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "core/params.h"
#include "support/command.h"

namespace {

using RunResult = attnccl::test::CommandResult;

// Runs the tool with args; env is prepended to the command line (e.g. "VAR=1 ").
RunResult run(const std::string& args, const std::string& env = "") {
  return attnccl::test::runCommand(env + ATTNCCL_INFO_BIN + " " + args);
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

TEST(AttncclInfo, ReportHasEverySection) {
  RunResult r = run("");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* section : {"attnccl 0.", "== Build", "== Transports", "== Devices", "== Topology (hwloc)",
                              "== Parameters"}) {
    EXPECT_TRUE(contains(r.output, section)) << "missing '" << section << "' in:\n" << r.output;
  }
  for (const char* item : {"CUDA ", "MPI ", "NCCL ", "UCX ", "BLAS ", "shm ", "ucx ", "NUMA nodes", "cores "}) {
    EXPECT_TRUE(contains(r.output, item)) << "missing '" << item << "' in:\n" << r.output;
  }
  for (const attnccl::ParamInfo& p : attnccl::allParams()) {
    EXPECT_TRUE(contains(r.output, std::string("  ") + p.name + "\n")) << p.name;
    EXPECT_TRUE(contains(r.output, p.help)) << p.name;
  }
}

TEST(AttncclInfo, ShowsTheCurrentValueOfASetParameter) {
  RunResult r = run("", "ATTNCCL_TIMEOUT_MS=1234 ");
  ASSERT_EQ(r.status, 0) << r.output;
  const char* def = attnccl::allParams()[static_cast<int>(attnccl::Param::TimeoutMs)].defaultValue;
  EXPECT_TRUE(contains(r.output, std::string("default '") + def + "', current '1234' (set in the environment)"))
      << r.output;
}

TEST(AttncclInfo, EnvMarkdownHasOneRowPerParameter) {
  RunResult r = run("--env-markdown");
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream in(r.output);
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    if (line.rfind("| `ATTNCCL_", 0) == 0) ++rows;
  }
  EXPECT_EQ(rows, static_cast<int>(attnccl::allParams().size())) << r.output;
}

TEST(AttncclInfo, ReadmeCarriesTheGeneratedTable) {
  std::ifstream f(ATTNCCL_README);
  ASSERT_TRUE(f) << "cannot read " << ATTNCCL_README;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string readme = ss.str();
  const std::string begin = "<!-- env-table: begin (attnccl-info --env-markdown) -->\n";
  const std::string end = "<!-- env-table: end -->";
  size_t b = readme.find(begin), e = readme.find(end);
  ASSERT_TRUE(b != std::string::npos && e != std::string::npos && e > b) << "README.md lacks the env-table markers";
  std::string table = readme.substr(b + begin.size(), e - b - begin.size());
  RunResult r = run("--env-markdown");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(table, r.output) << "README.md's environment table is out of date with src/core/params.cc; "
                                "replace it with the output of `attnccl-info --env-markdown`";
}

TEST(AttncclInfo, RejectsUnknownFlags) {
  RunResult r = run("--bogus");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.output, "usage:")) << r.output;
}

}  // namespace
