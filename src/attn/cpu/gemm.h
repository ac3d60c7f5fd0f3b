// The GEMM layer of the CPU tiles: every product of the tiles is C[M][N] += alpha * op(A) op(B)
// (row-major, fp32 C), with fp32 or bf16 A and B, routed to the library that is fastest here
// (measured: src/attn/cpu/README.md, "GEMM layer"):
//   fp32: oneDNN (onednn.h) where its kernels are AVX-512 or OpenBLAS has no vector kernel for the
//         CPU, OpenBLAS (blas.h) on the AVX2 machines it knows;
//   fp32 forward and backward: on AVX2 machines where fp32 runs on OpenBLAS, the forward's two
//         products and three of the backward's five run on our own kernels over keys and values
//         packed once per tile (packed_gemm.h);
//   bf16: where oneDNN's bf16 matmul is the faster one (AMX, AMD's AVX512-BF16), bf16 inputs are
//         staged as bf16 and multiplied as bf16 (P and dS converted to bf16, fp32 accumulation);
//         elsewhere they are converted to fp32 once at staging and take the fp32 path.
// ATTNCCL_CPU_GEMM=openblas|onednn forces the fp32 library, ATTNCCL_CPU_FWD_GEMM and _BWD_GEMM
// =packed|library each direction's kernels, ATTNCCL_CPU_BF16=native|fp32 the bf16
// path; ATTNCCL_CPU_ISA (cpu/rowops.h) caps oneDNN at AVX2 as well as the row operations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attnccl {
namespace attn {
namespace cpu {

enum class GemmLib { OpenBlas, OneDnn };
enum class Elem { F32, Bf16 };

struct GemmPath {
  GemmLib f32 = GemmLib::OpenBlas;  // library of the fp32 products
  bool bf16Native = false;          // bf16 inputs multiplied as bf16 (else staged to fp32)
  bool fwdPacked = false;           // the forward's fp32 products on packed_gemm.h where it runs
  bool bwdPacked = false;           // the backward's S, dP and dQ products likewise
  bool operator==(const GemmPath& o) const {
    return f32 == o.f32 && bf16Native == o.bf16Native && fwdPacked == o.fwdPacked && bwdPacked == o.bwdPacked;
  }
};

// The path the tiles use now (chosen once: environment, then the machine).
const GemmPath& gemmPath();
// "openblas f32, bf16 via oneDNN (brg:avx512_core_bf16)" and the like.
std::string gemmPathName(const GemmPath& p);
// Every path this machine can run, the default first. A bf16Native path without oneDNN bf16
// runs its bf16 products by converting the operands to fp32 per call ("emulated"): slow, but
// it runs the bf16 tile structure (bf16 staging, P/dS conversion) on every machine for tests.
std::vector<GemmPath> gemmPathsAvailable();
// Selects the path (tests); false when the machine cannot run it.
bool forceGemmPath(const GemmPath& p);
// Whether the forward tile runs its fp32 products on the packed kernels now: the path asks for
// them and packedGemm() has kernels for the row operations' ISA.
bool fwdPackedNow();
bool bwdPackedNow();  // the same for the backward tile
// Whether bf16 products of a bf16Native path run on oneDNN's bf16 matmul (else emulated).
bool bf16GemmNative();

// C += alpha * op(A) op(B); A, B of element type e (bf16 as uint16 storage).
void gemmAcc(Elem e, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
             int64_t lda, const void* B, int64_t ldb, float* C, int64_t ldc);

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
