// AVX2+F16C kernels of reduceInOrder for the floating-point types (fp32, fp64, fp16, bf16).
//
//   for each block of 4 vectors (32 fp32/fp16/bf16 or 16 fp64 elements):
//     a = load(s0); a = op(a, load(s1)); ...; a = op(a, load(s{n-1}))   (registers only)
//     store(out, fin(a))
//
// The same per-element sequence of IEEE operations as the generic tiles (reduce.cc), in the same
// source order, so the bits are those of the generic path: a rank with AVX2 and one without
// agree. Compared with the generic tiles the accumulator never leaves the registers (no L1 tile
// written back per source) and 8 lanes work at once; measured in perf/RESULTS.md ("AllReduce
// and Broadcast"). The 16-bit formats are widened to fp32 on load and rounded once on store:
//   fp16: F16C (vcvtph2ps exact; vcvtps2ph round-to-nearest-even, then NaN lanes set to the
//         generic path's canonical sign|0x7e00)
//   bf16: shift on load; the generic rounding (add 0x7fff + lsb, NaN -> | 0x40) on store
// Max/Min propagate NaN as the generic maxOf/minOf: take b where b > a (ordered) or b is NaN.
//
// The kernels are compiled for that target (pragma below) and reached only after a run-time check of
// the CPU (cpuHasAvx2F16c), so the rest of the library keeps the baseline ISA. It calls no
// inline function of a shared header: the linker could keep this file's AVX2 copy of it.
#include <cpuid.h>
#include <immintrin.h>

#include <cstdint>

#include "collectives/reduce_simd.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#endif

namespace attnccl {
namespace {

// Storage formats: 8 elements per fp32 vector (F32, F16, BF16) or 4 per fp64 vector (F64).
struct F32 {
  using S = float;
  using V = __m256;
  static constexpr size_t kLanes = 8;
  static V load(const S* p) { return _mm256_loadu_ps(p); }
  static void store(S* p, V v) { _mm256_storeu_ps(p, v); }
};
struct F64 {
  using S = double;
  using V = __m256d;
  static constexpr size_t kLanes = 4;
  static V load(const S* p) { return _mm256_loadu_pd(p); }
  static void store(S* p, V v) { _mm256_storeu_pd(p, v); }
};
struct F16 {
  using S = uint16_t;
  using V = __m256;
  static constexpr size_t kLanes = 8;
  static V load(const S* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static void store(S* p, V v) {
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // NaN lanes: sign | 0x7e00, as floatToFp16.
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    __m256i sign = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(v), 16), _mm256_set1_epi32(0x8000));
    __m256i canon = _mm256_or_si256(sign, _mm256_set1_epi32(0x7e00));
    __m256i canon16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(canon, canon), 0xd8);
    __m256i nan32 = _mm256_castps_si256(nan);
    __m256i nan16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(nan32, nan32), 0xd8);
    h = _mm_blendv_epi8(h, _mm256_castsi256_si128(canon16), _mm256_castsi256_si128(nan16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
  }
};
struct BF16 {
  using S = uint16_t;
  using V = __m256;
  static constexpr size_t kLanes = 8;
  static V load(const S* p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static void store(S* p, V v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));  // both non-negative
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    rounded = _mm256_blendv_epi8(rounded, quiet, nan);
    // 32 -> 16 bits (every value fits in 0..0xffff, so the unsigned saturation keeps it).
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(rounded, rounded), 0xd8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
};

// Operations on fp32 and fp64 vectors.
struct VSum {
  __m256 operator()(__m256 a, __m256 b) const { return _mm256_add_ps(a, b); }
  __m256d operator()(__m256d a, __m256d b) const { return _mm256_add_pd(a, b); }
};
struct VProd {
  __m256 operator()(__m256 a, __m256 b) const { return _mm256_mul_ps(a, b); }
  __m256d operator()(__m256d a, __m256d b) const { return _mm256_mul_pd(a, b); }
};
struct VMax {
  __m256 operator()(__m256 a, __m256 b) const {
    return _mm256_blendv_ps(a, b, _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q)));
  }
  __m256d operator()(__m256d a, __m256d b) const {
    return _mm256_blendv_pd(a, b, _mm256_or_pd(_mm256_cmp_pd(b, a, _CMP_GT_OQ), _mm256_cmp_pd(b, b, _CMP_UNORD_Q)));
  }
};
struct VMin {
  __m256 operator()(__m256 a, __m256 b) const {
    return _mm256_blendv_ps(a, b, _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_LT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q)));
  }
  __m256d operator()(__m256d a, __m256d b) const {
    return _mm256_blendv_pd(a, b, _mm256_or_pd(_mm256_cmp_pd(b, a, _CMP_LT_OQ), _mm256_cmp_pd(b, b, _CMP_UNORD_Q)));
  }
};

inline __m256 divideBy(__m256 v, int n) { return _mm256_div_ps(v, _mm256_set1_ps(static_cast<float>(n))); }
inline __m256d divideBy(__m256d v, int n) { return _mm256_div_pd(v, _mm256_set1_pd(static_cast<double>(n))); }

constexpr size_t kUnroll = 4;

template <typename T, typename Op>
size_t blocks(void* outv, const void* const* srcs, int n, size_t count, Op op, bool avg, int divisor) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr size_t kStep = kUnroll * T::kLanes;
  S* out = static_cast<S*>(outv);
  const S* s0 = static_cast<const S*>(srcs[0]);
  size_t i = 0;
  for (; i + kStep <= count; i += kStep) {
    V a[kUnroll];
    for (size_t u = 0; u < kUnroll; ++u) a[u] = T::load(s0 + i + u * T::kLanes);
    for (int p = 1; p < n; ++p) {
      const S* sp = static_cast<const S*>(srcs[p]) + i;
      for (size_t u = 0; u < kUnroll; ++u) a[u] = op(a[u], T::load(sp + u * T::kLanes));
    }
    if (avg) {
      for (size_t u = 0; u < kUnroll; ++u) a[u] = divideBy(a[u], divisor);
    }
    // Every source's block was read above: out may alias any of them.
    for (size_t u = 0; u < kUnroll; ++u) T::store(out + i + u * T::kLanes, a[u]);
  }
  return i;
}

template <typename T>
size_t byOp(void* out, const void* const* srcs, int n, size_t count, attncclRedOp_t op, int divisor) {
  switch (op) {
    case attncclSum: return blocks<T>(out, srcs, n, count, VSum(), false, divisor);
    case attncclAvg: return blocks<T>(out, srcs, n, count, VSum(), true, divisor);
    case attncclProd: return blocks<T>(out, srcs, n, count, VProd(), false, divisor);
    case attncclMax: return blocks<T>(out, srcs, n, count, VMax(), false, divisor);
    case attncclMin: return blocks<T>(out, srcs, n, count, VMin(), false, divisor);
    default: return 0;
  }
}

}  // namespace

size_t reduceAvx2(void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                  int divisor) {
  switch (t) {
    case attncclFloat32: return byOp<F32>(out, srcs, n, count, op, divisor);
    case attncclFloat64: return byOp<F64>(out, srcs, n, count, op, divisor);
    case attncclFloat16: return byOp<F16>(out, srcs, n, count, op, divisor);
    case attncclBfloat16: return byOp<BF16>(out, srcs, n, count, op, divisor);
    default: return 0;
  }
}

}  // namespace attnccl

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace attnccl {

// Outside the target region: runs on any CPU. Asked once: cpuid traps to the hypervisor in a VM
// (measured: 2% of an all-reduce's CPU time when every reduction asked).
bool cpuHasAvx2F16c() {
  static const bool has = [] {
    __builtin_cpu_init();
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && f16c;
  }();
  return has;
}

}  // namespace attnccl
