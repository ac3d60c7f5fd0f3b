// Products for a few query rows against a block of keys, without packing: the forward tile's
// streaming path (cpu/fwd_stream.cc) for decode-sized query blocks. A BLAS GEMM copies both
// operands into panels on every call; with 1-16 query rows that copy of the keys and values costs
// more than the arithmetic (measured on a decode step: 37% of its time in OpenBLAS's packing), so
// these read K and V rows where they lie, once per group of four query rows.
//
//   scores:  s[i][j] = alpha * sum_d q[i][d] k[j][d]     i < nq, j < nk
//   pv:      o[i][d] += sum_j p[i][j] v[j][d]
//
// q and o are [nq][D] contiguous; k and v rows have their own stride, fp32 or (the *16 forms)
// bf16 / fp16 widened to fp32 in registers, so a 16-bit cache is read once at its own size. Selected like the row
// operations (cpu/rowops.h): the AVX2+FMA version whenever rowOps() is AVX2 or better (an
// AVX-512 machine runs it too), else the portable one.
#pragma once

#include <cstdint>

#include "attnccl.h"

namespace attnccl {
namespace attn {
namespace cpu {

struct SmallGemmOps {
  const char* name;
  void (*scores)(const float* q, int64_t nq, const float* k, int64_t ldk, int64_t nk, int64_t D, float alpha, float* s,
                 int64_t lds);
  void (*pv)(const float* p, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk, int64_t D, float* o);
  // t is attncclBfloat16 or attncclFloat16.
  void (*scores16)(attncclDataType_t t, const float* q, int64_t nq, const uint16_t* k, int64_t ldk, int64_t nk,
                   int64_t D, float alpha, float* s, int64_t lds);
  void (*pv16)(attncclDataType_t t, const float* p, int64_t ldp, int64_t nq, const uint16_t* v, int64_t ldv, int64_t nk,
               int64_t D, float* o);
};

extern const SmallGemmOps kGenericSmallGemm;
extern const SmallGemmOps kAvx2SmallGemm;

// The implementation matching rowOps()'s ISA (so forceIsa and ATTNCCL_CPU_ISA reach it too).
const SmallGemmOps& smallGemm();

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
