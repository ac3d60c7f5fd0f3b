// The row operations of the CPU tiles: the AVX2 and AVX-512 implementations against the portable one and
// against libm, every length around the vector width, every 16-bit pattern for conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "attn/cpu/rowops.h"
#include "core/dtype.h"
#include "support/tensors.h"

namespace attnccl_test {
namespace {

namespace cpu = attnccl::attn::cpu;

const cpu::RowOps* avx2() { return cpu::rowOpsFor(cpu::Isa::Avx2); }
const cpu::RowOps* avx512() { return cpu::rowOpsFor(cpu::Isa::Avx512); }

bool sameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  uint32_t x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  return x == y;
}

TEST(RowOps, Exp2SubAccuracy) {
  for (const cpu::RowOps* ops : {&cpu::kGenericRowOps, avx2(), avx512()}) {
    if (!ops) continue;
    uint64_t seed = testSeed();
    for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 33, 200}) {
      std::vector<float> x = randomFloats(n, seed + n, -140.f, 0.f);
      if (n > 3) {
        x[1] = -std::numeric_limits<float>::infinity();
        x[2] = 0.f;
        x[3] = -126.5f;
      }
      std::vector<float> y(n, -1.f);
      const float m = 0.25f;
      float sum = ops->exp2Sub(x.data(), y.data(), n, m);
      std::vector<float> inPlace = x;
      EXPECT_EQ(ops->exp2Sub(inPlace.data(), inPlace.data(), n, m), sum);
      EXPECT_EQ(inPlace, y);
      double want = 0;
      for (int64_t j = 0; j < n; ++j) {
        double e = std::exp2(static_cast<double>(x[j]) - m);
        want += e;
        if (x[j] - m < -126) {
          ASSERT_LE(y[j], 1e-37) << ops->name << " x=" << x[j];
        } else {
          ASSERT_NEAR(y[j], e, 3e-7 * e) << ops->name << " x=" << x[j] << " " << seedText(seed);
        }
      }
      EXPECT_NEAR(sum, want, 1e-6 * want + 1e-30) << ops->name;
    }
  }
}

void matchesPortable(const cpu::RowOps& a) {
  const cpu::RowOps& g = cpu::kGenericRowOps;
  uint64_t seed = testSeed();
  for (int64_t n = 0; n <= 41; ++n) {
    std::vector<float> x = randomFloats(n, seed + n, -3, 3), y = randomFloats(n, seed + 100 + n, -3, 3);
    EXPECT_EQ(g.rowMax(x.data(), n), a.rowMax(x.data(), n)) << n;
    // The two sum in different orders: each may be off by about n * eps * sum |x_j y_j| (a fixed absolute
    // bound failed once on a sum near 47, 1.1e-5 apart, well within float rounding).
    double magnitude = 0;
    for (int64_t j = 0; j < n; ++j) magnitude += std::fabs(static_cast<double>(x[j]) * y[j]);
    const double dotTolerance = 2.0 * (n + 1) * std::numeric_limits<float>::epsilon() * magnitude + 1e-30;
    EXPECT_NEAR(g.dot(x.data(), y.data(), n), a.dot(x.data(), y.data(), n), dotTolerance) << n << " " << seedText(seed);
    std::vector<float> s1 = x, s2 = x;
    g.scale(s1.data(), n, 0.37f);
    a.scale(s2.data(), n, 0.37f);
    EXPECT_EQ(s1, s2);
    g.add(s1.data(), y.data(), n);
    a.add(s2.data(), y.data(), n);
    EXPECT_EQ(s1, s2);
    std::vector<float> y1 = y, y2 = y;
    g.dsoftmax(s1.data(), y1.data(), n, 0.5f);
    a.dsoftmax(s2.data(), y2.data(), n, 0.5f);
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_NEAR(s1[j], s2[j], 1e-6) << n;
      EXPECT_EQ(y1[j], 0.f);
      EXPECT_EQ(y2[j], 0.f);
    }
  }
}

void conversionsFromHalf(const cpu::RowOps& ops) {
  std::vector<uint16_t> all(65536 + 5);  // odd length: the tail path too
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (attncclDataType_t t : {attncclBfloat16, attncclFloat16}) {
    std::vector<float> g(all.size()), a(all.size());
    cpu::kGenericRowOps.toFloat(t, all.data(), g.data(), static_cast<int64_t>(all.size()));
    ops.toFloat(t, all.data(), a.data(), static_cast<int64_t>(all.size()));
    for (size_t i = 0; i < all.size(); ++i) ASSERT_TRUE(sameFloat(g[i], a[i])) << attnccl::dtypeName(t) << " " << i;
  }
}

void conversionsToHalf(const cpu::RowOps& ops) {
  uint64_t seed = testSeed();
  std::mt19937_64 rng(seed);
  std::vector<float> x(100003);
  for (auto& f : x) {
    uint32_t u = static_cast<uint32_t>(rng());
    // Mostly values in the 16-bit formats' ranges, with ties, subnormals and specials mixed in.
    if (rng() % 2) u = (u & 0x8fffffffu) | 0x38000000u;
    memcpy(&f, &u, 4);
  }
  const float specials[] = {0.f, -0.f, 65504.f, 65520.f, 6.0e-8f, 1.0f + 1.0f / 2048, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < sizeof(specials) / sizeof(float); ++i) x[i] = specials[i];
  for (attncclDataType_t t : {attncclBfloat16, attncclFloat16}) {
    std::vector<uint16_t> g(x.size()), a(x.size());
    cpu::kGenericRowOps.fromFloat(t, x.data(), g.data(), static_cast<int64_t>(x.size()));
    ops.fromFloat(t, x.data(), a.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      float fg = t == attncclBfloat16 ? attnccl::bf16ToFloat(g[i]) : attnccl::fp16ToFloat(g[i]);
      float fa = t == attncclBfloat16 ? attnccl::bf16ToFloat(a[i]) : attnccl::fp16ToFloat(a[i]);
      ASSERT_TRUE(sameFloat(fg, fa)) << attnccl::dtypeName(t) << " x=" << x[i] << " " << seedText(seed);
    }
  }
}

TEST(RowOps, Avx2MatchesPortable) {
  if (!avx2()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU";
  matchesPortable(*avx2());
}
TEST(RowOps, ConversionsFromHalfEveryPattern) {
  if (!avx2()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU";
  conversionsFromHalf(*avx2());
}
TEST(RowOps, ConversionsToHalfRoundLikeScalar) {
  if (!avx2()) GTEST_SKIP() << "no AVX2+FMA+F16C on this CPU";
  conversionsToHalf(*avx2());
}

// The AVX-512 path (rowops_avx512.cc) where the CPU has it.
TEST(RowOps, Avx512MatchesPortable) {
  if (!avx512()) GTEST_SKIP() << "no AVX-512 F/BW/VL/DQ on this CPU";
  matchesPortable(*avx512());
}
TEST(RowOps, Avx512ConversionsFromHalfEveryPattern) {
  if (!avx512()) GTEST_SKIP() << "no AVX-512 F/BW/VL/DQ on this CPU";
  conversionsFromHalf(*avx512());
}
TEST(RowOps, Avx512ConversionsToHalfRoundLikeScalar) {
  if (!avx512()) GTEST_SKIP() << "no AVX-512 F/BW/VL/DQ on this CPU";
  conversionsToHalf(*avx512());
}

}  // namespace
}  // namespace attnccl_test
