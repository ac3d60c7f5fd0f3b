// AVX2+FMA products on packed keys and values (cpu/packed_gemm.h). Compiled for that target like
// small_gemm_avx2.cc and reached only through packedGemm() after the CPU check; it calls no inline
// function of a shared header for the same reason.
//
// Register blocking (16 ymm registers): a 6 x 16 block of C in 12 accumulators; per k, one
// 16-wide panel row (2 loads) and 6 broadcasts of the row-major operand feed 12 FMAs. The panel
// row is shared by the 6 rows, the broadcast by the 16 columns: 2 + 6 loads per 12 FMAs.
//
//   C[6][16] += A[6][k] * B[k][16]          A: row-major (lda)     B: one panel, [k][16]
//
//   scores: panels outer, 6-row groups inner: the panel ([D][16], 8 KiB at D 128) stays in L1
//           while every row group of the query block reads it.
//   pv:     256-key chunks, D-panels, then row groups: a chunk of a value panel is 16 KiB.
#include <immintrin.h>

#include "attn/cpu/packed_gemm.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

constexpr int kRows = 6;
constexpr int64_t kPvKeys = 256;

// C (M rows at ldc, first `cols` of 16 columns) = alpha * A B (store) or += A B (accumulate).
template <int M, bool Accumulate>
inline void block(const float* a, int64_t lda, const float* b, int64_t K, float alpha, float* c, int64_t ldc,
                  int64_t cols) {
  __m256 lo[M], hi[M];
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) lo[i] = hi[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kPanel), b1 = _mm256_loadu_ps(b + k * kPanel + 8);
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
      const __m256 x = _mm256_broadcast_ss(a + i * lda + k);
      lo[i] = _mm256_fmadd_ps(x, b0, lo[i]);
      hi[i] = _mm256_fmadd_ps(x, b1, hi[i]);
    }
  }
  const __m256 al = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) {
    float* row = c + i * ldc;
    __m256 r0 = _mm256_mul_ps(lo[i], al), r1 = _mm256_mul_ps(hi[i], al);
    if (cols == kPanel) {
      if (Accumulate) {
        r0 = _mm256_add_ps(r0, _mm256_loadu_ps(row));
        r1 = _mm256_add_ps(r1, _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, r0);
      _mm256_storeu_ps(row + 8, r1);
    } else {  // the last panel of a head dimension that is not a multiple of 16
      alignas(32) float t[kPanel];
      _mm256_store_ps(t, r0);
      _mm256_store_ps(t + 8, r1);
      for (int64_t j = 0; j < cols; ++j) row[j] = Accumulate ? row[j] + t[j] : t[j];
    }
  }
}

// All rows of a: groups of 6, then the remainder.
template <bool Accumulate>
void rows(const float* a, int64_t lda, int64_t nr, const float* b, int64_t K, float alpha, float* c, int64_t ldc,
          int64_t cols) {
  int64_t i = 0;
  for (; i + kRows <= nr; i += kRows) block<kRows, Accumulate>(a + i * lda, lda, b, K, alpha, c + i * ldc, ldc, cols);
  switch (nr - i) {
    case 5: block<5, Accumulate>(a + i * lda, lda, b, K, alpha, c + i * ldc, ldc, cols); break;
    case 4: block<4, Accumulate>(a + i * lda, lda, b, K, alpha, c + i * ldc, ldc, cols); break;
    case 3: block<3, Accumulate>(a + i * lda, lda, b, K, alpha, c + i * ldc, ldc, cols); break;
    case 2: block<2, Accumulate>(a + i * lda, lda, b, K, alpha, c + i * ldc, ldc, cols); break;
    case 1: block<1, Accumulate>(a + i * lda, lda, b, K, alpha, c + i * ldc, ldc, cols); break;
    default: break;
  }
}

void packKeys(const float* k, int64_t n, int64_t D, float* out) {
  for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
    float* panel = out + j0 * D;
    const int64_t nj = n - j0 < kPanel ? n - j0 : kPanel;
    for (int64_t d = 0; d < D; ++d) {
      float* dst = panel + d * kPanel;
      int64_t j = 0;
      for (; j < nj; ++j) dst[j] = k[(j0 + j) * D + d];
      for (; j < kPanel; ++j) dst[j] = 0.f;
    }
  }
}

void packValues(const float* v, int64_t n, int64_t D, float* out) {
  const int64_t nPad = panelPad(n);
  for (int64_t c0 = 0; c0 < D; c0 += kPanel) {
    float* panel = out + c0 * nPad;
    const int64_t nc = D - c0 < kPanel ? D - c0 : kPanel;
    for (int64_t j = 0; j < nPad; ++j) {
      float* dst = panel + j * kPanel;
      int64_t c = 0;
      if (j < n)
        for (; c < nc; ++c) dst[c] = v[j * D + c0 + c];
      for (; c < kPanel; ++c) dst[c] = 0.f;
    }
  }
}

void scores(const float* q, int64_t ldq, int64_t nr, const float* kp, int64_t D, int64_t panel0, int64_t npanels,
            float alpha, float* s, int64_t lds) {
  for (int64_t jp = 0; jp < npanels; ++jp)
    rows<false>(q, ldq, nr, kp + (panel0 + jp) * D * kPanel, D, alpha, s + jp * kPanel, lds, kPanel);
}

void pv(const float* p, int64_t ldp, int64_t nr, const float* vp, int64_t nPad, int64_t key0, int64_t nk, int64_t D,
        float alpha, float* o, int64_t ldo) {
  for (int64_t j0 = 0; j0 < nk; j0 += kPvKeys) {
    const int64_t nj = nk - j0 < kPvKeys ? nk - j0 : kPvKeys;
    for (int64_t c0 = 0; c0 < D; c0 += kPanel) {
      const float* b = vp + c0 * nPad + (key0 + j0) * kPanel;
      rows<true>(p + j0, ldp, nr, b, nj, alpha, o + c0, ldo, D - c0 < kPanel ? D - c0 : kPanel);
    }
  }
}

}  // namespace

const PackedGemmOps kAvx2PackedGemm = {"avx2", packKeys, packValues, scores, pv};

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl

#if defined(__clang__)
#pragma clang attribute pop
#endif
