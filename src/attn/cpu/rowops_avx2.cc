// AVX2+FMA+F16C row operations. The whole file is compiled for that target (pragma below) and
// only reached through rowOps() after a run-time check of the CPU, so the rest of the library
// keeps the baseline ISA. It deliberately calls no inline function of a shared header (such as
// core/dtype.h): the linker could keep this file's AVX2 copy of it for the whole program.
#include <immintrin.h>

#include <cstring>

#include "attn/cpu/rowops.h"

// GCC takes a target pragma for the rest of the file; clang has none and gives the functions that
// follow the target attribute instead (popped at the end of the file).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

constexpr float kInf = __builtin_inff();

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 2^x for x <= 0 (up to 127 tolerated); below -126 the result is 0, NaN stays NaN.
// 2^x = 2^n * 2^f with n = round(x), |f| <= 1/2; 2^f by its degree-7 Taylor polynomial
// (relative error < 1e-8 on [-1/2, 1/2], below fp32 rounding).
inline __m256 exp2v(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-126.f);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(lo, x);  // operand order keeps NaN in x
  x = _mm256_min_ps(_mm256_set1_ps(127.f), x);
  __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_sub_ps(x, n);
  __m256 p = _mm256_set1_ps(1.5252733804059841e-05f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.5403530393381608e-04f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-02f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.f));
  __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  __m256 r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  return _mm256_andnot_ps(under, r);
}

inline __m256 loadBf16(const uint16_t* s) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// Round to nearest even like floatToBf16; NaN keeps a quiet NaN.
inline void storeBf16(uint16_t* d, __m256 x) {
  __m256i u = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  r = _mm256_and_si256(_mm256_blendv_epi8(r, nan, isnan), _mm256_set1_epi32(0xffff));
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm256_castsi256_si128(packed));
}

float rowMax(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-kInf);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
  float r = hmax(m);
  for (; j < n; ++j) r = x[j] > r ? x[j] : r;
  return r;
}

float exp2Sub(const float* x, float* y, int64_t n, float m) {
  __m256 mv = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m256 a = exp2v(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv));
    __m256 b = exp2v(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mv));
    _mm256_storeu_ps(y + j, a);
    _mm256_storeu_ps(y + j + 8, b);
    s0 = _mm256_add_ps(s0, a);
    s1 = _mm256_add_ps(s1, b);
  }
  for (; j + 8 <= n; j += 8) {
    __m256 a = exp2v(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv));
    _mm256_storeu_ps(y + j, a);
    s0 = _mm256_add_ps(s0, a);
  }
  float s = hsum(_mm256_add_ps(s0, s1));
  if (j < n) {  // tail through a padded vector
    float buf[8];
    int64_t r = n - j;
    for (int i = 0; i < 8; ++i) buf[i] = i < r ? x[j + i] - m : -kInf;
    __m256 a = exp2v(_mm256_loadu_ps(buf));
    _mm256_storeu_ps(buf, a);
    for (int64_t i = 0; i < r; ++i) {
      y[j + i] = buf[i];
      s += buf[i];
    }
  }
  return s;
}

void scale(float* x, int64_t n, float c) {
  __m256 cv = _mm256_set1_ps(c);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), cv));
  for (; j < n; ++j) x[j] *= c;
}

void add(float* y, const float* x, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_loadu_ps(y + j), _mm256_loadu_ps(x + j)));
  for (; j < n; ++j) y[j] += x[j];
}

float dot(const float* a, const float* b, int64_t n) {
  __m256 s = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s);
  float r = hsum(s);
  for (; j < n; ++j) r += a[j] * b[j];
  return r;
}

void dsoftmax(float* p, float* dp, int64_t n, float delta) {
  __m256 dv = _mm256_set1_ps(delta);
  const __m256 zero = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 g = _mm256_sub_ps(_mm256_loadu_ps(dp + j), dv);
    _mm256_storeu_ps(p + j, _mm256_mul_ps(_mm256_loadu_ps(p + j), g));
    _mm256_storeu_ps(dp + j, zero);
  }
  for (; j < n; ++j) {
    p[j] *= dp[j] - delta;
    dp[j] = 0.f;
  }
}

void toFloat(attncclDataType_t t, const void* src, float* dst, int64_t n) {
  if (t == attncclFloat32) {
    memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  auto cvt = [t](const uint16_t* in) {
    return t == attncclBfloat16 ? loadBf16(in) : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, cvt(s + j));
  if (j < n) {  // tail through a padded vector
    uint16_t in[8] = {0};
    float out[8];
    memcpy(in, s + j, static_cast<size_t>(n - j) * 2);
    _mm256_storeu_ps(out, cvt(in));
    memcpy(dst + j, out, static_cast<size_t>(n - j) * sizeof(float));
  }
}

void fromFloat(attncclDataType_t t, const float* src, void* dst, int64_t n) {
  if (t == attncclFloat32) {
    memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  auto cvt = [t](uint16_t* out, const float* in) {
    __m256 x = _mm256_loadu_ps(in);
    if (t == attncclBfloat16)
      storeBf16(out, x);
    else
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) cvt(d + j, src + j);
  if (j < n) {
    float in[8] = {0};
    uint16_t out[8];
    memcpy(in, src + j, static_cast<size_t>(n - j) * sizeof(float));
    cvt(out, in);
    memcpy(d + j, out, static_cast<size_t>(n - j) * 2);
  }
}

}  // namespace

const RowOps kAvx2RowOps = {Isa::Avx2, "avx2", rowMax, exp2Sub, scale, add, dot, dsoftmax, toFloat, fromFloat};

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl

#if defined(__clang__)
#pragma clang attribute pop
#endif
