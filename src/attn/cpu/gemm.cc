// Routing of the tiles' GEMMs (see gemm.h) and the bf16 emulation for machines without a
// bf16 matmul.
#include "attn/cpu/gemm.h"

#include <atomic>
#include <vector>

#include "attn/cpu/blas.h"
#include "attn/cpu/onednn.h"
#include "attn/cpu/rowops.h"
#include "core/params.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

// oneDNN's bf16 matmul is used only when asked for (ATTNCCL_CPU_GEMM=onednn): it has never run
// under this library (no AVX512-BF16 machine yet); without it bf16 is staged to fp32 as before.
bool bf16MatmulAllowed() {
  static const bool allowed = paramString(Param::CpuGemm) == "onednn" && dnnlHasBf16();
  return allowed;
}

GemmPath detect() {
  // The ISA cap must reach oneDNN before its first primitive.
  if (isaCap() < Isa::Avx512 && dnnlBuilt()) dnnlCapAvx2();
  GemmPath p;
  // OpenBLAS unless asked for: oneDNN's fp32 matmul was 0-15% slower at the tiles' shapes on the
  // AVX2 machine it was measured on (README), and its AVX-512 choice rests on the 2048^3
  // figures alone.
  p.f32 = GemmLib::OpenBlas;
  const std::string lib = paramString(Param::CpuGemm);
  if (lib == "onednn" && dnnlBuilt()) p.f32 = GemmLib::OneDnn;
  p.bf16Native = bf16MatmulAllowed();
  return p;
}

const GemmPath& defaultPath() {
  static const GemmPath p = detect();
  return p;
}

std::atomic<const GemmPath*> gForced{nullptr};

// Dense fp32 copy of `rows` rows of `cols` bf16 elements at stride ld.
const float* widen(const void* src, int64_t rows, int64_t cols, int64_t ld, std::vector<float>& buf) {
  buf.resize(static_cast<size_t>(rows * cols));
  const RowOps& ops = rowOps();
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t r = 0; r < rows; ++r) ops.toFloat(attncclBfloat16, s + r * ld, buf.data() + r * cols, cols);
  return buf.data();
}

}  // namespace

const GemmPath& gemmPath() {
  const GemmPath* f = gForced.load(std::memory_order_acquire);
  return f ? *f : defaultPath();
}

bool bf16GemmNative() {
  defaultPath();  // the ISA cap reaches oneDNN before its first primitive
  return bf16MatmulAllowed();
}

std::string gemmPathName(const GemmPath& p) {
  std::string s = p.f32 == GemmLib::OneDnn ? "onednn f32" : "openblas f32";
  if (!p.bf16Native) return s + ", bf16 staged to fp32";
  return s + (bf16MatmulAllowed() ? ", bf16 via oneDNN" : ", bf16 emulated (fp32 per call)");
}

std::vector<GemmPath> gemmPathsAvailable() {
  std::vector<GemmPath> out{defaultPath()};
  for (GemmLib lib : {GemmLib::OpenBlas, GemmLib::OneDnn}) {
    if (lib == GemmLib::OneDnn && !dnnlBuilt()) continue;
    for (bool native : {false, true}) {
      // bf16 "native" is the emulation unless oneDNN's bf16 matmul is allowed; either way a path.
      GemmPath p{lib, native};
      bool seen = false;
      for (const GemmPath& q : out) seen |= q == p;
      if (!seen) out.push_back(p);
    }
  }
  return out;
}

bool forceGemmPath(const GemmPath& p) {
  defaultPath();  // the ISA cap first
  if (p.f32 == GemmLib::OneDnn && !dnnlBuilt()) return false;
  static GemmPath slots[4];
  GemmPath* slot = &slots[(p.f32 == GemmLib::OneDnn ? 2 : 0) + (p.bf16Native ? 1 : 0)];
  *slot = p;
  gForced.store(slot, std::memory_order_release);
  return true;
}

void gemmAcc(Elem e, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
             int64_t lda, const void* B, int64_t ldb, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const GemmPath& path = gemmPath();  // first call: the ISA cap reaches oneDNN before any primitive
  if (e == Elem::Bf16) {
    if (bf16MatmulAllowed() && dnnlGemmAcc(true, transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc)) return;
    // Emulation: the same products from fp32 copies (exact: bf16 widens to fp32 exactly).
    static thread_local std::vector<float> wa, wb;
    const int64_t ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
    const float* fa = widen(A, ar, ac, lda, wa);
    const float* fb = widen(B, br, bc, ldb, wb);
    sgemm(transA, transB, M, N, K, alpha, fa, ac, fb, bc, 1.f, C, ldc);
    return;
  }
  const float* fa = static_cast<const float*>(A);
  const float* fb = static_cast<const float*>(B);
  if (path.f32 == GemmLib::OneDnn && dnnlGemmAcc(false, transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc))
    return;
  sgemm(transA, transB, M, N, K, alpha, fa, lda, fb, ldb, 1.f, C, ldc);
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
