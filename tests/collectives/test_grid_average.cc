// The SP x DP grid recipe: a gradient averaged over a grid of S sequence-parallel x D
// data-parallel ranks in one pass.
//
//   world rank w = d * S + s        SP group: same d (S ranks)   DP group: same s (D ranks)
//
//        s=0  s=1  s=2
//   d=0   0    1    2      two steps: avg over each SP row, then avg over each DP column
//   d=1   3    4    5      one pass:  attncclAllReduce(avg) over the world communicator
//
// The two give the same average (the mean of means of equal-sized groups is the mean), and the
// one pass moves fewer bytes per rank: 2 (SD-1)/(SD) N instead of 2 (S-1)/S N + 2 (D-1)/D N
// (both through the bandwidth-optimal path of a large N). The test builds the grid with
// attncclCommSplit, runs both, compares the results (exact for integers chosen so every
// division is exact, within tolerance for fp32) and the bytes that attncclCommGetStats counts.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "comm/comm.h"
#include "support/ranks.h"

using namespace attnccl;
using namespace attnccl::test;

namespace {

uint64_t sentBytes(attncclComm_t comm) {
  attncclCommStats_t st;
  st.size = sizeof(st);
  if (attncclCommGetStats(comm, &st) != attncclSuccess) return 0;
  return st.bytesSent;
}

// Both averages of a gradient of `count` elements of T; returns "" or the failure.
template <typename T>
std::string compareAverages(attncclComm_t world, attncclComm_t sp, attncclComm_t dp, int w, int S, int D, size_t count,
                            attncclDataType_t t, uint64_t* oneBytes, uint64_t* twoBytes) {
  std::vector<T> grad(count), one(count), two(count);
  for (size_t i = 0; i < count; ++i) {
    // Integers: multiples of S*D, so every average of the two steps divides exactly.
    const int64_t k = static_cast<int64_t>((i * 7 + static_cast<size_t>(w) * 13) % 23) - 11;
    grad[i] = std::is_integral<T>::value ? static_cast<T>(k * S * D)
                                         : static_cast<T>(0.37 * k + 0.001 * static_cast<double>(w));
  }
  uint64_t b0 = sentBytes(world);
  RK_OK(attncclAllReduce(grad.data(), one.data(), count, t, attncclAvg, world, nullptr));
  *oneBytes = sentBytes(world) - b0;
  const uint64_t s0 = sentBytes(sp), d0 = sentBytes(dp);
  RK_OK(attncclAllReduce(grad.data(), two.data(), count, t, attncclAvg, sp, nullptr));
  RK_OK(attncclAllReduce(two.data(), two.data(), count, t, attncclAvg, dp, nullptr));
  *twoBytes = (sentBytes(sp) - s0) + (sentBytes(dp) - d0);
  for (size_t i = 0; i < count; ++i) {
    if (std::is_integral<T>::value) {
      RK_CHECK(one[i] == two[i], "[%zu] one pass %lld, two steps %lld", i, static_cast<long long>(one[i]),
               static_cast<long long>(two[i]));
    } else {
      const double a = static_cast<double>(one[i]), b = static_cast<double>(two[i]);
      RK_CHECK(std::fabs(a - b) <= 1e-5 * std::max(1.0, std::fabs(a)), "[%zu] one pass %.9g, two steps %.9g", i, a, b);
    }
  }
  return "";
}

struct Grid {
  int S, D;
};

class GridAverage : public testing::TestWithParam<Grid> {};

TEST_P(GridAverage, OnePassEqualsTwoStepsAndMovesFewerBytes) {
  const Grid g = GetParam();
  const int W = g.S * g.D;
  // Divisible by every group size, and large enough for the bandwidth-optimal path.
  const size_t count = 60 * 4096;
  std::string err = runRanks(W, Mode::kThreads, [&](int w, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t world = nullptr, sp = nullptr, dp = nullptr;
    RK_SUB(initComm(&world, w, n, id, "shm"));
    const int s = w % g.S, d = w / g.S;
    RK_OK(attncclCommSplit(world, d, s, &sp, nullptr));
    RK_OK(attncclCommSplit(world, s, d, &dp, nullptr));
    uint64_t one = 0, two = 0;
    RK_SUB(compareAverages<int32_t>(world, sp, dp, w, g.S, g.D, count, attncclInt32, &one, &two));
    RK_SUB(compareAverages<float>(world, sp, dp, w, g.S, g.D, count, attncclFloat32, &one, &two));
    // Bytes of the fp32 run: each phase of the large path sends (P-1) segments of N/P.
    const uint64_t bytes = count * sizeof(float);
    const uint64_t wantOne = 2 * (W - 1) * (bytes / W);
    const uint64_t wantTwo = 2 * (g.S - 1) * (bytes / g.S) + 2 * (g.D - 1) * (bytes / g.D);
    RK_CHECK(one < two, "one pass sent %llu bytes, two steps %llu", static_cast<unsigned long long>(one),
             static_cast<unsigned long long>(two));
    if (!world->engine.checksums()) {  // checksum trailers add bytes of their own
      RK_CHECK(one == wantOne, "one pass sent %llu bytes, expected %llu", static_cast<unsigned long long>(one),
               static_cast<unsigned long long>(wantOne));
      RK_CHECK(two == wantTwo, "two steps sent %llu bytes, expected %llu", static_cast<unsigned long long>(two),
               static_cast<unsigned long long>(wantTwo));
    }
    RK_OK(attncclCommDestroy(dp));
    RK_OK(attncclCommDestroy(sp));
    RK_OK(attncclCommDestroy(world));
    return "";
  });
  EXPECT_EQ(err, "");
}

INSTANTIATE_TEST_SUITE_P(Grids, GridAverage, testing::Values(Grid{2, 2}, Grid{2, 3}, Grid{3, 2}),
                         [](const testing::TestParamInfo<Grid>& i) {
                           return format("sp%d_dp%d", i.param.S, i.param.D);
                         });

}  // namespace
