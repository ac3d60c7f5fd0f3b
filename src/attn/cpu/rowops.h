// Vectorised row operations of the CPU tiles (softmax pieces, dtype conversion, small
// reductions), selected once at run time by the CPU's instruction sets: an AVX2+FMA+F16C
// version, an AVX-512 one and a portable one. The GEMM-shaped work does not live here: it goes through the BLAS
// (cpu/blas.h).
#pragma once

#include <cstdint>

#include "attnccl.h"

namespace attnccl {
namespace attn {
namespace cpu {

// Ordered: a cap at one ISA allows those before it.
enum class Isa { Generic, Avx2, Avx512 };

// The highest ISA the environment allows: ATTNCCL_CPU_ISA=generic|avx2|avx512 (unset: avx512,
// i.e. whatever the CPU has). It caps the row operations and, through cpu/gemm.h, oneDNN (at
// AVX2 for generic/avx2), so the lower paths stay testable on bigger machines.
Isa isaCap();
// The CPU is an AMD one (cpuid vendor "AuthenticAMD"): its AVX512-BF16 dot product runs at twice
// the fp32 FMA rate (Zen 5), while on Intel without AMX oneDNN's bf16 matmul is slower than its
// fp32 one (measured: cpu/README.md); cpu/gemm.cc chooses the bf16 path by it.
bool cpuIsAmd();

struct RowOps {
  Isa isa;
  const char* name;
  // max of x[0..n), -inf when n == 0.
  float (*rowMax)(const float* x, int64_t n);
  // y[j] = 2^(x[j] - m) for j < n (x = -inf gives 0); returns the sum of y. y may be x.
  float (*exp2Sub)(const float* x, float* y, int64_t n, float m);
  // x[j] *= c.
  void (*scale)(float* x, int64_t n, float c);
  // y[j] += x[j].
  void (*add)(float* y, const float* x, int64_t n);
  // sum of a[j] * b[j], accumulated in fp32.
  float (*dot)(const float* a, const float* b, int64_t n);
  // p[j] = p[j] * (dp[j] - delta) (dS of the backward tile), then dp[j] = 0: the tiles keep
  // their GEMM output buffers zeroed so the BLAS can accumulate (beta = 1) instead of running
  // its separate clearing pass over C.
  void (*dsoftmax)(float* p, float* dp, int64_t n, float delta);
  // Storage dtype (fp32, bf16, fp16) <-> fp32, n elements.
  void (*toFloat)(attncclDataType_t t, const void* src, float* dst, int64_t n);
  void (*fromFloat)(attncclDataType_t t, const float* src, void* dst, int64_t n);
};

// The best implementation this CPU supports within isaCap() (or the one forced by forceIsa).
const RowOps& rowOps();
// The implementation for an ISA; nullptr when the CPU lacks it.
const RowOps* rowOpsFor(Isa isa);
// Selects the implementation used by rowOps() (tests run both); returns false when unsupported.
bool forceIsa(Isa isa);

// Per-ISA tables (rowops_generic.cc, rowops_avx2.cc, rowops_avx512.cc).
extern const RowOps kGenericRowOps;
extern const RowOps kAvx2RowOps;
extern const RowOps kAvx512RowOps;

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
