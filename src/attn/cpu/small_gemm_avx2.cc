// AVX2+FMA small products (cpu/small_gemm.h). Compiled for that target like rowops_avx2.cc and
// reached only through smallGemm() after the CPU check; it calls no inline function of a shared
// header for the same reason as that file.
//
// Register blocking (16 ymm registers):
//   scores: 4 query rows x 2 keys = 8 accumulators; per 8 elements of D, 2 key loads and 4 query
//           loads feed 8 FMAs. Each key row is read once per group of 4 query rows.
//   pv:     4 query rows x 16 columns of D = 8 accumulators held across the whole key block;
//           per key, 2 value loads and 4 broadcasts of p feed 8 FMAs.
#include <immintrin.h>

#include "attn/cpu/small_gemm.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

// Key/value elements widened to fp32: 8 at a time, or one (the D % 8 tail).
struct F32 {
  using T = float;
  static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float one(const float* p) { return *p; }
};
struct Bf16 {
  using T = uint16_t;
  static __m256 load8(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static float one(const uint16_t* p) {
    const uint32_t u = static_cast<uint32_t>(*p) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};
struct Fp16 {
  using T = uint16_t;
  static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float one(const uint16_t* p) { return _cvtsh_ss(*p); }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// R query rows (R <= 4) against nk keys.
template <class E, int R>
void scoresRows(const float* q, const typename E::T* k, int64_t ldk, int64_t nk, int64_t D, float alpha, float* s,
                int64_t lds) {
  const int64_t D8 = D & ~int64_t{7};
  int64_t j = 0;
  for (; j + 2 <= nk; j += 2) {
    const typename E::T* k0 = k + j * ldk;
    const typename E::T* k1 = k0 + ldk;
    __m256 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D8; d += 8) {
      const __m256 x0 = E::load8(k0 + d), x1 = E::load8(k1 + d);
      for (int r = 0; r < R; ++r) {
        const __m256 qv = _mm256_loadu_ps(q + r * D + d);
        a0[r] = _mm256_fmadd_ps(qv, x0, a0[r]);
        a1[r] = _mm256_fmadd_ps(qv, x1, a1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float t0 = hsum(a0[r]), t1 = hsum(a1[r]);
      for (int64_t d = D8; d < D; ++d) {
        t0 += q[r * D + d] * E::one(k0 + d);
        t1 += q[r * D + d] * E::one(k1 + d);
      }
      s[r * lds + j] = alpha * t0;
      s[r * lds + j + 1] = alpha * t1;
    }
  }
  if (j < nk) {
    const typename E::T* k0 = k + j * ldk;
    __m256 a0[R];
    for (int r = 0; r < R; ++r) a0[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D8; d += 8) {
      const __m256 x0 = E::load8(k0 + d);
      for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), x0, a0[r]);
    }
    for (int r = 0; r < R; ++r) {
      float t0 = hsum(a0[r]);
      for (int64_t d = D8; d < D; ++d) t0 += q[r * D + d] * E::one(k0 + d);
      s[r * lds + j] = alpha * t0;
    }
  }
}

template <class E>
void scoresAll(const float* q, int64_t nq, const typename E::T* k, int64_t ldk, int64_t nk, int64_t D, float alpha,
               float* s, int64_t lds) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) scoresRows<E, 4>(q + i * D, k, ldk, nk, D, alpha, s + i * lds, lds);
  switch (nq - i) {
    case 3: scoresRows<E, 3>(q + i * D, k, ldk, nk, D, alpha, s + i * lds, lds); break;
    case 2: scoresRows<E, 2>(q + i * D, k, ldk, nk, D, alpha, s + i * lds, lds); break;
    case 1: scoresRows<E, 1>(q + i * D, k, ldk, nk, D, alpha, s + i * lds, lds); break;
    default: break;
  }
}

void scores(const float* q, int64_t nq, const float* k, int64_t ldk, int64_t nk, int64_t D, float alpha, float* s,
            int64_t lds) {
  scoresAll<F32>(q, nq, k, ldk, nk, D, alpha, s, lds);
}

void scores16(attncclDataType_t t, const float* q, int64_t nq, const uint16_t* k, int64_t ldk, int64_t nk, int64_t D,
              float alpha, float* s, int64_t lds) {
  if (t == attncclBfloat16) scoresAll<Bf16>(q, nq, k, ldk, nk, D, alpha, s, lds);
  else scoresAll<Fp16>(q, nq, k, ldk, nk, D, alpha, s, lds);
}

// R query rows (R <= 4): o[r][:] += sum_j p[r][j] v[j][:].
template <class E, int R>
void pvRows(const float* p, int64_t ldp, const typename E::T* v, int64_t ldv, int64_t nk, int64_t D, float* o) {
  int64_t d = 0;
  for (; d + 16 <= D; d += 16) {
    __m256 a0[R], a1[R];
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm256_loadu_ps(o + r * D + d);
      a1[r] = _mm256_loadu_ps(o + r * D + d + 8);
    }
    for (int64_t j = 0; j < nk; ++j) {
      const typename E::T* vj = v + j * ldv + d;
      const __m256 x0 = E::load8(vj), x1 = E::load8(vj + 8);
      for (int r = 0; r < R; ++r) {
        const __m256 w = _mm256_broadcast_ss(p + r * ldp + j);
        a0[r] = _mm256_fmadd_ps(w, x0, a0[r]);
        a1[r] = _mm256_fmadd_ps(w, x1, a1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(o + r * D + d, a0[r]);
      _mm256_storeu_ps(o + r * D + d + 8, a1[r]);
    }
  }
  for (; d + 8 <= D; d += 8) {
    __m256 a0[R];
    for (int r = 0; r < R; ++r) a0[r] = _mm256_loadu_ps(o + r * D + d);
    for (int64_t j = 0; j < nk; ++j) {
      const __m256 x0 = E::load8(v + j * ldv + d);
      for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + r * ldp + j), x0, a0[r]);
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(o + r * D + d, a0[r]);
  }
  for (; d < D; ++d)
    for (int r = 0; r < R; ++r) {
      float acc = o[r * D + d];
      for (int64_t j = 0; j < nk; ++j) acc += p[r * ldp + j] * E::one(v + j * ldv + d);
      o[r * D + d] = acc;
    }
}

template <class E>
void pvAll(const float* p, int64_t ldp, int64_t nq, const typename E::T* v, int64_t ldv, int64_t nk, int64_t D,
           float* o) {
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4) pvRows<E, 4>(p + i * ldp, ldp, v, ldv, nk, D, o + i * D);
  switch (nq - i) {
    case 3: pvRows<E, 3>(p + i * ldp, ldp, v, ldv, nk, D, o + i * D); break;
    case 2: pvRows<E, 2>(p + i * ldp, ldp, v, ldv, nk, D, o + i * D); break;
    case 1: pvRows<E, 1>(p + i * ldp, ldp, v, ldv, nk, D, o + i * D); break;
    default: break;
  }
}

void pv(const float* p, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk, int64_t D, float* o) {
  pvAll<F32>(p, ldp, nq, v, ldv, nk, D, o);
}

void pv16(attncclDataType_t t, const float* p, int64_t ldp, int64_t nq, const uint16_t* v, int64_t ldv, int64_t nk,
          int64_t D, float* o) {
  if (t == attncclBfloat16) pvAll<Bf16>(p, ldp, nq, v, ldv, nk, D, o);
  else pvAll<Fp16>(p, ldp, nq, v, ldv, nk, D, o);
}

}  // namespace

const SmallGemmOps kAvx2SmallGemm = {"avx2", scores, pv, scores16, pv16};

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl

#if defined(__clang__)
#pragma clang attribute pop
#endif
