#include "attn/cpu/blas.h"

#include <cblas.h>

#include <cctype>
#include <cstdio>
#include <mutex>
#include <string>

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

// OpenBLAS's own thread count is process-wide. Our pool threads each call it with small
// matrices, so its threads would only oversubscribe the cores: pin it to one thread once.
// (Programs that also use OpenBLAS directly get the single-threaded setting too; documented
// in the README.)
void ensureSerial() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

}  // namespace

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  ensureSerial();
  if (K <= 0) {  // the BLAS would scale C by beta; keep the same meaning (beta = 0 clears)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

bool blasHasVectorKernel() {
  static const bool vector = [] {
    std::string core = openblas_get_corename();
    for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // OpenBLAS's x86-64 kernel sets with AVX2 FMA or AVX-512 GEMM kernels.
    for (const char* k : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"})
      if (core == k) return true;
    return false;
  }();
  return vector;
}

const char* blasDescription() {
  static std::string desc = [] {
    std::string s = "OpenBLAS";
    const char* cfg = openblas_get_config();
    if (cfg) s += std::string(" (") + cfg + ", core " + openblas_get_corename() + ")";
    return s;
  }();
  return desc.c_str();
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
