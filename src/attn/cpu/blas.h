// The GEMM micro-kernel of the CPU tiles: fp32 GEMM through the BLAS the build links
// (OpenBLAS; see src/attn/cpu/README.md for the measurement behind the choice). The BLAS runs
// single-threaded: parallelism comes from our own pool, one GEMM per pool thread at a time, and
// several ranks may run as threads of one process.
#pragma once

#include <cstdint>

namespace attnccl {
namespace attn {
namespace cpu {

// Row-major: C[M][N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T. Leading dimensions
// are row strides in elements. beta = 0 ignores what C held (NaN included).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Whether OpenBLAS runs one of its AVX2 or AVX-512 kernel sets on this CPU. A DYNAMIC_ARCH build
// that does not know the CPU falls back to an old SSE kernel: OpenBLAS 0.3.21 takes an Emerald
// Rapids Xeon for a Prescott and runs sgemm at 1/5 of oneDNN's rate there (README, GEMM layer).
bool blasHasVectorKernel();

// "OpenBLAS 0.3.21 (Zen, ...)": the library and its kernel set, for perf tools and logs.
const char* blasDescription();

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
