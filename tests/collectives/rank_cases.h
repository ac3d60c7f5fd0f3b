// The rank configurations the reduction suites (test_allreduce, test_rooted) run on: every
// transport x 1, 2, 3, 4, 5, 8 ranks x threads / processes (one rank only as a thread), and 4
// ranks as 2 processes x 2 threads. `index` rotates the (op, dtype) pairs a case gives its large
// path, so that every op and dtype takes it somewhere.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/ranks.h"

namespace attnccl {
namespace test {

struct RankCase {
  int index;
  int nranks;
  Mode mode;
  const char* transport;
};

inline std::vector<RankCase> rankCases() {
  std::vector<RankCase> v;
  for (const char* t : testTransports())
    for (int n : {1, 2, 3, 4, 5, 8})
      for (Mode m : {Mode::kThreads, Mode::kProcesses})
        if (n > 1 || m == Mode::kThreads) v.push_back({static_cast<int>(v.size()), n, m, t});
  v.push_back({static_cast<int>(v.size()), 4, Mode::kMixed, "shm"});  // 2 processes x 2 threads
  return v;
}

// gtest's name of a case: n<ranks>_<mode>_<transport>.
inline std::string rankCaseName(const testing::TestParamInfo<RankCase>& i) {
  return format("n%d_%s_%s", i.param.nranks, modeName(i.param.mode), i.param.transport);
}

}  // namespace test
}  // namespace attnccl
