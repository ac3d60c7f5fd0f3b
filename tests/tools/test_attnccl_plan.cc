// tools/attnccl-plan's measured inter-node link: the file the library writes next to
// ATTNCCL_TUNE_FILE (attn/tune/tuner.h, "<tune file>.internode") round-trips, --inter-link reads
// it into the cluster's link figures and the cost model's interNode link, changes the 2 x 2
// predictions of the algorithms that cross nodes, is overridden by --inter-gbps, and a missing
// or malformed file is an error naming it. Nothing is timed (the h100 preset calibrates nothing).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "attn/tune/tuner.h"
#include "plan/cluster.h"
#include "support/command.h"

namespace {

using attnccl::test::runCommand;

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// A file in the test's temporary directory, removed at the end of the test.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/attnccl-plan-link.XXXXXX";
    const int fd = mkstemp(name);
    if (fd >= 0) close(fd);
    path = name;
    std::ofstream(path) << text;
  }
  ~TempFile() { remove(path.c_str()); }
};

// The forward ms of one algorithm in the plan's table ("  <seqlen> <algo> <fwd_ms> ...").
double fwdMs(const std::string& out, const std::string& algo) {
  const size_t at = out.find(" " + algo + " ");
  if (at == std::string::npos) return -1;
  return atof(out.c_str() + at + algo.size() + 2);
}

const std::string kPlan = std::string(ATTNCCL_PLAN_BIN) + " -p h100-nvlink-ndr -N 2 -R 2 -s 64K";

TEST(AttncclPlanInterLink, FileTheLibraryWritesRoundTrips) {
  TempFile f("");
  ASSERT_TRUE(attnccl::attn::writeInterNodeFile(f.path, attnccl::attn::LinkModel{2.5e6, 30e-6, false}, 4, 2));
  attnccl::attn::LinkModel l;
  std::string err;
  ASSERT_TRUE(attnccl::attn::readInterNodeFile(f.path, &l, &err)) << err;
  EXPECT_DOUBLE_EQ(l.bandwidth, 2.5e6);
  EXPECT_DOUBLE_EQ(l.latency, 30e-6);
}

TEST(AttncclPlanInterLink, ChangesTheModelsLinkFigures) {
  TempFile f("interBandwidth=2.5e+06 interLatency=3e-05 ranks=4 partner=2\n");
  attnccl::plan::ClusterSpec c;
  std::string err;
  ASSERT_TRUE(attnccl::plan::presetCluster("h100-nvlink-ndr", 4, 1, &c, &err)) << err;
  ASSERT_NE(c.interGBps, 0.0025);
  ASSERT_TRUE(attnccl::plan::applyInterNodeFile(f.path, &c, &err)) << err;
  EXPECT_DOUBLE_EQ(c.interGBps, 0.0025);
  EXPECT_DOUBLE_EQ(c.interLatencyUs, 30);
  EXPECT_TRUE(contains(c.source, f.path)) << c.source;
  c.nodes = 2;
  c.ranksPerNode = 2;
  const attnccl::attn::ClusterModel m = c.model();
  EXPECT_DOUBLE_EQ(m.interNode.bandwidth, 2.5e6);
  EXPECT_DOUBLE_EQ(m.interNode.latency, 30e-6);
  EXPECT_DOUBLE_EQ(m.intraNode.bandwidth, 380e9);  // the intra-node link is left alone
}

TEST(AttncclPlanInterLink, OptionIsParsedAndChangesThePredictions) {
  TempFile f("interBandwidth=2.5e+06 interLatency=3e-05 ranks=4 partner=2\n");
  const auto fixed = runCommand(kPlan);
  const auto measured = runCommand(kPlan + " --inter-link " + f.path);
  ASSERT_EQ(fixed.status, 0) << fixed.output;
  ASSERT_EQ(measured.status, 0) << measured.output;
  EXPECT_TRUE(contains(fixed.output, "inter 48 GB/s 5.0 us")) << fixed.output;
  EXPECT_TRUE(contains(measured.output, "inter 0.0025 GB/s 30.0 us")) << measured.output;
  EXPECT_TRUE(contains(measured.output, "inter-node link measured by the library (" + f.path + ")"))
      << measured.output;
  // The ring crosses the nodes every round: a link 19200 x slower makes it far slower.
  const double ringFixed = fwdMs(fixed.output, "ring"), ringMeasured = fwdMs(measured.output, "ring");
  ASSERT_GT(ringFixed, 0) << fixed.output;
  EXPECT_GT(ringMeasured, 10 * ringFixed) << measured.output;
  // A flag still overrides the file's figure.
  const auto flag = runCommand(kPlan + " --inter-link " + f.path + " --inter-gbps 7");
  ASSERT_EQ(flag.status, 0) << flag.output;
  EXPECT_TRUE(contains(flag.output, "inter 7 GB/s 30.0 us")) << flag.output;
}

TEST(AttncclPlanInterLink, MissingOrMalformedFileIsAnErrorNamingIt) {
  const auto missing = runCommand(kPlan + " --inter-link /nonexistent/attnccl.internode");
  EXPECT_EQ(missing.status, 2) << missing.output;
  EXPECT_TRUE(contains(missing.output, "/nonexistent/attnccl.internode")) << missing.output;
  TempFile bad("interBandwidth=-1 interLatency=3e-05\n");
  const auto malformed = runCommand(kPlan + " --inter-link " + bad.path);
  EXPECT_EQ(malformed.status, 2) << malformed.output;
  EXPECT_TRUE(contains(malformed.output, bad.path)) << malformed.output;
  const auto noArg = runCommand(kPlan + " --inter-link");
  EXPECT_EQ(noArg.status, 2) << noArg.output;
}

// this-machine picks up "<ATTNCCL_TUNE_FILE>.internode" by itself. The calibration it also runs
// is timed, but only the link figures (read from the file) are checked.
TEST(AttncclPlanInterLink, ThisMachineReadsTheTuneFilesLink) {
  TempFile tune("");
  std::ofstream(tune.path + ".internode") << "interBandwidth=5e+06 interLatency=4e-05 ranks=4 partner=2\n";
  const auto r = runCommand("ATTNCCL_TUNE_FILE=" + tune.path + " " + ATTNCCL_PLAN_BIN +
                            " -p this-machine -N 2 -R 1 -T 1 -s 1K -H 2 -K 1 -D 32");
  remove((tune.path + ".internode").c_str());
  remove((tune.path + ".1").c_str());  // the calibration's own tune file
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "inter 0.005 GB/s 40.0 us")) << r.output;
}

// The loaded calibration's rule: each round's slowest pool, the best round. A round in which one
// pool ran slow (a transient) does not set the rate; a pool slow in every round (a slower core)
// does.
TEST(AttncclPlanCalibration, LoadedRateIsTheBestRoundsSlowestPool) {
  using attnccl::plan::loadedRate;
  EXPECT_EQ(loadedRate({}), 0.0);
  EXPECT_EQ(loadedRate({{80.0}}), 80.0);
  EXPECT_EQ(loadedRate({{80.0, 70.0}}), 70.0);
  EXPECT_EQ(loadedRate({{50.0, 80.0}, {79.0, 81.0}, {78.0, 45.0}}), 79.0);  // transients in rounds 1, 3
  EXPECT_EQ(loadedRate({{68.0, 80.0}, {69.0, 81.0}, {67.0, 79.0}}), 69.0);  // pool 0 on the slower core
}

}  // namespace
