// AVX-512 (F, BW, VL, DQ) + FMA + F16C row operations: the AVX2 file's algorithms on 16 lanes,
// tails through masked loads and stores. Compiled for that target (pragma below) and only reached
// through rowOps() after a run-time check of the CPU; like rowops_avx2.cc it calls no inline
// function of a shared header, so no AVX-512 copy of one can leak into the rest of the program.
#include <immintrin.h>

#include <cstring>

#include "attn/cpu/rowops.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
// GCC 12's own AVX-512 intrinsics (their _mm512_undefined_* operands) trip this warning.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

constexpr float kInf = __builtin_inff();

inline __mmask16 tailMask(int64_t r) { return static_cast<__mmask16>((1u << r) - 1u); }

// 2^x as in rowops_avx2.cc: x <= 0 (up to 127 tolerated), below -126 gives 0, NaN stays NaN;
// 2^f on |f| <= 1/2 by the same degree-7 polynomial.
inline __m512 exp2v(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-126.f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_max_ps(lo, x);  // operand order keeps NaN in x
  x = _mm512_min_ps(_mm512_set1_ps(127.f), x);
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5252733804059841e-05f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381608e-04f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  const __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
  const __m512 r = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), r);
}

inline __m512 widenBf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// Round to nearest even like floatToBf16; NaN keeps a quiet NaN.
inline __m256i narrowBf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i nan = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), nan);
  return _mm512_cvtepi32_epi16(_mm512_and_si512(r, _mm512_set1_epi32(0xffff)));
}

float rowMax(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-kInf);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
  if (j < n) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-kInf), tailMask(n - j), x + j));
  return _mm512_reduce_max_ps(m);
}

float exp2Sub(const float* x, float* y, int64_t n, float m) {
  const __m512 mv = _mm512_set1_ps(m);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m512 a = exp2v(_mm512_sub_ps(_mm512_loadu_ps(x + j), mv));
    const __m512 b = exp2v(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), mv));
    _mm512_storeu_ps(y + j, a);
    _mm512_storeu_ps(y + j + 16, b);
    s0 = _mm512_add_ps(s0, a);
    s1 = _mm512_add_ps(s1, b);
  }
  for (; j + 16 <= n; j += 16) {
    const __m512 a = exp2v(_mm512_sub_ps(_mm512_loadu_ps(x + j), mv));
    _mm512_storeu_ps(y + j, a);
    s0 = _mm512_add_ps(s0, a);
  }
  if (j < n) {  // masked lanes read -inf: 2^-inf = 0 adds nothing
    const __mmask16 k = tailMask(n - j);
    const __m512 a = exp2v(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-kInf), k, x + j), mv));
    _mm512_mask_storeu_ps(y + j, k, a);
    s1 = _mm512_add_ps(s1, a);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void scale(float* x, int64_t n, float c) {
  const __m512 cv = _mm512_set1_ps(c);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), cv));
  if (j < n) {
    const __mmask16 k = tailMask(n - j);
    _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), cv));
  }
}

void add(float* y, const float* x, int64_t n) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, _mm512_add_ps(_mm512_loadu_ps(y + j), _mm512_loadu_ps(x + j)));
  if (j < n) {
    const __mmask16 k = tailMask(n - j);
    _mm512_mask_storeu_ps(y + j, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, y + j), _mm512_maskz_loadu_ps(k, x + j)));
  }
}

float dot(const float* a, const float* b, int64_t n) {
  __m512 s = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s);
  if (j < n) {
    const __mmask16 k = tailMask(n - j);
    s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + j), _mm512_maskz_loadu_ps(k, b + j), s);
  }
  return _mm512_reduce_add_ps(s);
}

void dsoftmax(float* p, float* dp, int64_t n, float delta) {
  const __m512 dv = _mm512_set1_ps(delta);
  const __m512 zero = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 g = _mm512_sub_ps(_mm512_loadu_ps(dp + j), dv);
    _mm512_storeu_ps(p + j, _mm512_mul_ps(_mm512_loadu_ps(p + j), g));
    _mm512_storeu_ps(dp + j, zero);
  }
  if (j < n) {
    const __mmask16 k = tailMask(n - j);
    const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + j), dv);
    _mm512_mask_storeu_ps(p + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), g));
    _mm512_mask_storeu_ps(dp + j, k, zero);
  }
}

void toFloat(attncclDataType_t t, const void* src, float* dst, int64_t n) {
  if (t == attncclFloat32) {
    memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  auto cvt = [t](__m256i h) { return t == attncclBfloat16 ? widenBf16(h) : _mm512_cvtph_ps(h); };
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(dst + j, cvt(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + j))));
  if (j < n) {
    const __mmask16 k = tailMask(n - j);
    _mm512_mask_storeu_ps(dst + j, k, cvt(_mm256_maskz_loadu_epi16(k, s + j)));
  }
}

void fromFloat(attncclDataType_t t, const float* src, void* dst, int64_t n) {
  if (t == attncclFloat32) {
    memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  auto cvt = [t](__m512 x) {
    return t == attncclBfloat16 ? narrowBf16(x) : _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  };
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + j), cvt(_mm512_loadu_ps(src + j)));
  if (j < n) {
    const __mmask16 k = tailMask(n - j);
    _mm256_mask_storeu_epi16(d + j, k, cvt(_mm512_maskz_loadu_ps(k, src + j)));
  }
}

}  // namespace

const RowOps kAvx512RowOps = {Isa::Avx512, "avx512", rowMax, exp2Sub, scale, add, dot, dsoftmax, toFloat, fromFloat};

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl

#if defined(__clang__)
#pragma clang attribute pop
#endif
