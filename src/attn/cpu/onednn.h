// The oneDNN side of the tiles' GEMM layer (cpu/gemm.h): C[M][N] += alpha * op(A) op(B) through
// oneDNN matmul primitives, fp32 or bf16 operands, fp32 accumulation and output. Built from
// onednn.cc when the build found oneDNN, else from onednn_absent.cc (everything reports "absent").
//
// Primitives are created once per (shape, leading dimensions, transposes, dtype, alpha) and kept
// in a per-thread cache with their memory objects; each thread executes on its own stream. (A
// oneDNN primitive may be executed concurrently from several threads, but its memory objects and
// streams may not be shared: per-thread entries need no lock at all, and oneDNN's own global
// primitive cache makes a second thread's creation of the same shape cheap.)
#pragma once

#include <cstdint>

namespace attnccl {
namespace attn {
namespace cpu {

// Whether this build has oneDNN at all.
bool dnnlBuilt();
// oneDNN's effective ISA is AVX-512 (avx512_core) or better, after ONEDNN_MAX_CPU_ISA / the
// ATTNCCL_CPU_ISA cap.
bool dnnlHasAvx512();
// oneDNN's effective ISA has AMX (avx512_core_amx), where its bf16 matmul runs on the tile unit.
bool dnnlHasAmx();
// oneDNN can create a bf16 x bf16 -> fp32 matmul here (2.6: AVX-512 machines only; it has no
// bf16 matmul for AVX2).
bool dnnlHasBf16();
// "oneDNN 2.6.3, ISA avx2, f32 gemm:jit, bf16 none": version, effective ISA and the
// implementation picked for the tiles' S = Q K^T shape (128x512x128 NT), for perf tools and logs.
const char* dnnlDescription();

// C += alpha * op(A) op(B), row-major, leading dimensions in elements; bf16 selects bf16 A and B
// (uint16 storage). Returns false (C untouched) when oneDNN cannot run it (not built, no such
// primitive on this CPU).
bool dnnlGemmAcc(bool bf16, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                 int64_t lda, const void* B, int64_t ldb, float* C, int64_t ldc);

// Caps oneDNN's ISA at AVX2 (ATTNCCL_CPU_ISA=avx2/generic); only effective before oneDNN's first
// primitive, so gemm.cc calls it while it first sets up. Returns whether the cap was accepted.
bool dnnlCapAvx2();

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
