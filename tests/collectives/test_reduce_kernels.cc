// The AVX2 reduction kernels (src/collectives/reduce_avx2.cc) against the generic tiles, bit for
// bit: every floating-point type and op, 2-5 sources, counts around the 4-vector block (tails),
// in place, and inputs full of NaN, infinities, signed zeros, subnormals and values that round
// at the 16-bit formats' ties. Ranks with and without AVX2 must agree, and a rank's results
// must not depend on where a block boundary falls. One case also checks the SIMD sum against an
// fp64 reference on exactly representable inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "collectives/reduce.h"
#include "collectives/reduce_simd.h"
#include "core/dtype.h"

using namespace attnccl;

namespace {

bool haveSimd() { return cpuHasAvx2F16c(); }

bool isNan(const char* at, attncclDataType_t t) {
  uint64_t u = 0;
  memcpy(&u, at, dtypeSize(t));
  switch (t) {
    case attncclFloat32: return (u & 0x7fffffffu) > 0x7f800000u;
    case attncclFloat64: return (u & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
    case attncclFloat16: return (u & 0x7fffu) > 0x7c00u;
    default: return (u & 0x7fffu) > 0x7f80u;
  }
}

// Index of the first element whose bits differ, or -1. Where two NaN operands meet, which one
// survives (its sign and payload) is the instruction's operand order, which a compiler may swap
// in the generic loop (a + b commutes): a NaN result on both sides counts as equal. Every rank of
// a job runs the same code, so its ranks still agree bit for bit.
long firstDifference(const std::vector<char>& a, const std::vector<char>& b, attncclDataType_t t) {
  const size_t sz = dtypeSize(t);
  for (size_t i = 0; i * sz < a.size(); ++i) {
    if (memcmp(a.data() + i * sz, b.data() + i * sz, sz) == 0) continue;
    if (isNan(a.data() + i * sz, t) && isNan(b.data() + i * sz, t)) continue;
    return static_cast<long>(i);
  }
  return -1;
}

// Random bit patterns with a bias towards special values of the type.
void fillSpecial(std::vector<char>& buf, attncclDataType_t t, std::mt19937_64& rng) {
  const size_t sz = dtypeSize(t), count = buf.size() / sz;
  for (size_t i = 0; i < count; ++i) {
    const uint64_t r = rng();
    const int kind = static_cast<int>(r % 8);
    char* at = buf.data() + i * sz;
    if (t == attncclFloat32 || t == attncclFloat64) {
      double v;
      switch (kind) {
        case 0: v = NAN; break;
        case 1: v = (r & 16) ? INFINITY : -INFINITY; break;
        case 2: v = (r & 16) ? 0.0 : -0.0; break;
        case 3: v = std::ldexp(1.0, -140) * static_cast<double>(r >> 40); break;  // fp32 subnormal
        default: v = std::ldexp(static_cast<double>(static_cast<int64_t>(r >> 11) - (1ll << 52)), -48);
      }
      if (t == attncclFloat32) {
        const float f = static_cast<float>(v);
        memcpy(at, &f, 4);
      } else {
        memcpy(at, &v, 8);
      }
    } else {
      // 16-bit formats: any pattern (NaNs with payloads, subnormals, infinities) half the time.
      uint16_t h = static_cast<uint16_t>(r >> 20);
      if (kind >= 4) h = t == attncclFloat16 ? floatToFp16(static_cast<float>(static_cast<int>(r % 2001) - 1000) / 64.0f)
                                             : floatToBf16(static_cast<float>(static_cast<int>(r % 2001) - 1000) / 64.0f);
      memcpy(at, &h, 2);
    }
  }
}

const attncclDataType_t kTypes[] = {attncclFloat32, attncclFloat64, attncclFloat16, attncclBfloat16};
const attncclRedOp_t kOps[] = {attncclSum, attncclProd, attncclMax, attncclMin, attncclAvg};

TEST(ReduceKernels, SimdMatchesGenericBitForBit) {
  if (!haveSimd()) GTEST_SKIP() << "this CPU has no AVX2+F16C: the SIMD kernels never run";
  std::mt19937_64 rng(7);
  const size_t counts[] = {1, 15, 16, 31, 32, 33, 95, 257, 4099};
  for (attncclDataType_t t : kTypes) {
    const size_t sz = dtypeSize(t);
    for (attncclRedOp_t op : kOps) {
      for (int n = 2; n <= 5; ++n) {
        for (size_t count : counts) {
          std::vector<std::vector<char>> src(n, std::vector<char>(count * sz));
          for (auto& s : src) fillSpecial(s, t, rng);
          std::vector<const void*> ptrs(n);
          for (int p = 0; p < n; ++p) ptrs[p] = src[p].data();
          std::vector<char> simd(count * sz, 0x5a), generic(count * sz, 0x3c);
          reduceInOrderWith(true, simd.data(), ptrs.data(), n, count, t, op, n);
          reduceInOrderWith(false, generic.data(), ptrs.data(), n, count, t, op, n);
          ASSERT_EQ(-1, firstDifference(simd, generic, t))
              << "type " << t << " op " << redOpName(op) << " n " << n << " count " << count;
          // In place: the output is source 1 (as an in-place all-reduce passes the user buffer).
          std::vector<char> inPlace = src[1];
          ptrs[1] = inPlace.data();
          reduceInOrderWith(true, inPlace.data(), ptrs.data(), n, count, t, op, n);
          ASSERT_EQ(-1, firstDifference(inPlace, generic, t))
              << "in place: type " << t << " op " << redOpName(op) << " n " << n << " count " << count;
        }
      }
    }
  }
}

// Every 16-bit pattern (NaN payloads, subnormals, infinities) as source 0 against random
// patterns: the loads' widening, every op in fp32 and the stores' rounding of the results (ties,
// overflow to infinity, NaN canonicalisation) agree with the generic path.
TEST(ReduceKernels, SixteenBitLoadsAndStoresMatchTheGenericPath) {
  if (!haveSimd()) GTEST_SKIP() << "this CPU has no AVX2+F16C: the SIMD kernels never run";
  std::mt19937_64 rng(11);
  for (attncclDataType_t t : {attncclFloat16, attncclBfloat16}) {
    const size_t count = 1 << 16;  // every 16-bit pattern as an input
    std::vector<uint16_t> a(count), b(count);
    for (size_t i = 0; i < count; ++i) a[i] = static_cast<uint16_t>(i);
    for (size_t i = 0; i < count; ++i) b[i] = static_cast<uint16_t>(rng());
    const void* ptrs[2] = {a.data(), b.data()};
    for (attncclRedOp_t op : kOps) {
      std::vector<char> simd(count * 2, 1), generic(count * 2, 2);
      reduceInOrderWith(true, simd.data(), ptrs, 2, count, t, op, 2);
      reduceInOrderWith(false, generic.data(), ptrs, 2, count, t, op, 2);
      ASSERT_EQ(-1, firstDifference(simd, generic, t)) << "type " << t << " op " << redOpName(op);
    }
  }
}

TEST(ReduceKernels, SimdSumMatchesAnFp64Reference) {
  if (!haveSimd()) GTEST_SKIP() << "this CPU has no AVX2+F16C: the SIMD kernels never run";
  const int n = 4;
  const size_t count = 1000;
  std::vector<std::vector<float>> src(n, std::vector<float>(count));
  for (int p = 0; p < n; ++p) {
    for (size_t i = 0; i < count; ++i) src[p][i] = static_cast<float>((static_cast<int>(i * 7 + p * 13) % 257) - 128);
  }
  const void* ptrs[n] = {src[0].data(), src[1].data(), src[2].data(), src[3].data()};
  std::vector<float> out(count, NAN);
  reduceInOrderWith(true, out.data(), ptrs, n, count, attncclFloat32, attncclSum, n);
  for (size_t i = 0; i < count; ++i) {
    double ref = 0;
    for (int p = 0; p < n; ++p) ref += static_cast<double>(src[p][i]);
    ASSERT_EQ(ref, static_cast<double>(out[i])) << "element " << i;
  }
}

}  // namespace
