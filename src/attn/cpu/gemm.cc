// Routing of the tiles' GEMMs (see gemm.h) and the bf16 emulation for machines without a
// bf16 matmul.
#include "attn/cpu/gemm.h"

#include <atomic>
#include <vector>

#include "attn/cpu/blas.h"
#include "attn/cpu/onednn.h"
#include "attn/cpu/packed_gemm.h"
#include "attn/cpu/rowops.h"
#include "core/params.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

// The fp32 library (measured: README, "GEMM layer"). oneDNN where its kernels are AVX-512 (Xeon
// with AVX-512: 233 GFLOP/s at 2048^3 against OpenBLAS's 47; Zen 5: 308 against 215) or where
// OpenBLAS has no vector kernel for the CPU; OpenBLAS on AVX2 machines it knows (Zen 3: oneDNN
// 0-15% slower at the tiles' shapes).
GemmLib pickF32() {
  const std::string lib = paramString(Param::CpuGemm);
  if (!dnnlBuilt() || lib == "openblas") return GemmLib::OpenBlas;
  if (lib == "onednn") return GemmLib::OneDnn;
  return dnnlHasAvx512() || !blasHasVectorKernel() ? GemmLib::OneDnn : GemmLib::OpenBlas;
}

// bf16 inputs multiplied as bf16, where oneDNN has a bf16 matmul and it beats converting to fp32:
// with AMX, or on AMD's AVX512-BF16 (a dot product at twice the FMA rate: oneDNN bf16 592 against
// fp32 308 GFLOP/s on Zen 5). Intel's AVX512-BF16 without AMX is slower than fp32 (Xeon, README).
bool pickBf16Native() {
  if (!dnnlHasBf16()) return false;
  const std::string v = paramString(Param::CpuBf16);
  if (v == "native") return true;
  if (v == "fp32") return false;
  return dnnlHasAmx() || cpuIsAmd();
}

// The forward's own packed kernels where the fp32 products run on OpenBLAS: they are AVX2 kernels,
// and where oneDNN was picked its AVX-512 kernels are the faster ones (README, "Packed forward").
bool pickPacked(Param which, GemmLib f32) {
  const std::string v = paramString(which);
  if (v == "packed") return true;
  if (v == "library") return false;
  return f32 == GemmLib::OpenBlas;
}

GemmPath detect() {
  // The ISA cap must reach oneDNN before its first primitive.
  if (isaCap() < Isa::Avx512 && dnnlBuilt()) dnnlCapAvx2();
  GemmPath p;
  p.f32 = pickF32();
  p.bf16Native = pickBf16Native();
  p.fwdPacked = pickPacked(Param::CpuFwdGemm, p.f32);
  p.bwdPacked = pickPacked(Param::CpuBwdGemm, p.f32);
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

bool fwdPackedNow() { return gemmPath().fwdPacked && packedGemm() != nullptr; }
bool bwdPackedNow() { return gemmPath().bwdPacked && packedGemm() != nullptr; }

bool bf16GemmNative() {
  defaultPath();  // the ISA cap reaches oneDNN before its first primitive
  return dnnlHasBf16();
}

std::string gemmPathName(const GemmPath& p) {
  std::string s = p.f32 == GemmLib::OneDnn ? "onednn f32" : "openblas f32";
  const char* packed = packedGemm() ? " packed avx2" : " packed (no kernels for this ISA)";
  if (p.fwdPacked && p.bwdPacked) s += std::string(", forward and backward") + packed;
  else if (p.fwdPacked) s += std::string(", forward") + packed;
  else if (p.bwdPacked) s += std::string(", backward") + packed;
  if (!p.bf16Native) return s + ", bf16 staged to fp32";
  return s + (bf16GemmNative() ? ", bf16 via oneDNN" : ", bf16 emulated (fp32 per call)");
}

std::vector<GemmPath> gemmPathsAvailable() {
  std::vector<GemmPath> out{defaultPath()};
  for (GemmLib lib : {GemmLib::OpenBlas, GemmLib::OneDnn}) {
    if (lib == GemmLib::OneDnn && !dnnlBuilt()) continue;
    for (bool native : {false, true}) {
      // bf16 "native" is the emulation unless oneDNN's bf16 matmul is allowed; either way a path.
      GemmPath p{lib, native, out.front().fwdPacked, out.front().bwdPacked};
      bool seen = false;
      for (const GemmPath& q : out) seen |= q == p;
      if (!seen) out.push_back(p);
    }
  }
  // The other kernels (packed or the library's, both directions) with the default library: the
  // packed kernels change only the fp32 products, so one path runs them against the default's.
  if (packedGemm() != nullptr) {
    GemmPath p = out.front();
    p.fwdPacked = !p.fwdPacked;
    p.bwdPacked = !p.bwdPacked;
    p.bf16Native = false;
    out.push_back(p);
  }
  return out;
}

bool forceGemmPath(const GemmPath& p) {
  defaultPath();  // the ISA cap first
  if (p.f32 == GemmLib::OneDnn && !dnnlBuilt()) return false;
  static GemmPath slots[16];
  GemmPath* slot = &slots[(p.f32 == GemmLib::OneDnn ? 2 : 0) + (p.bf16Native ? 1 : 0) + (p.fwdPacked ? 4 : 0) +
                          (p.bwdPacked ? 8 : 0)];
  *slot = p;
  gForced.store(slot, std::memory_order_release);
  return true;
}

void gemmAcc(Elem e, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
             int64_t lda, const void* B, int64_t ldb, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const GemmPath& path = gemmPath();  // first call: the ISA cap reaches oneDNN before any primitive
  if (e == Elem::Bf16) {
    if (bf16GemmNative() && dnnlGemmAcc(true, transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc)) return;
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
