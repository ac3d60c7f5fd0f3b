// Element-wise reductions of the building blocks (AllReduce, Reduce, ReduceScatter).
//
//   out[i] = fin( op( ... op( op(s0[i], s1[i]), s2[i]) ..., s{n-1}[i]) )
//
//   op:  Sum a+b   Prod a*b   Max   Min   Avg = Sum, then fin(x) = x / n
//   fin: identity, except Avg (its one division, here and nowhere else)
//
// Sources are combined strictly in the order given (callers pass rank order 0..P-1), so every
// rank that reduces the same contributions gets the same bits. Types:
//   int8 uint8 int32 int64  reduced in themselves; Sum/Prod wrap around (two's complement,
//                           defined here); Avg divides the sum with C's truncating division
//   fp32 fp64               reduced in themselves
//   fp16 bf16               widened to fp32, reduced there, rounded once at the end
// Max/Min propagate NaN (a NaN operand gives NaN whatever its position).
//
// The work goes tile by tile (a tile of the accumulator lives on the stack, in L1): each tile of
// out is written only after every source's tile was read, so out may alias any source (in-place
// calls pass the user's buffer as both). The inner loops are plain and branch-free so that the
// compiler vectorises them. On a CPU with AVX2 and F16C the floating-point types go through
// register-resident SIMD kernels instead (reduce_avx2.cc), with the same bits.
#pragma once

#include <cstddef>

#include "attnccl.h"

namespace attnccl {

bool redOpValid(attncclRedOp_t op);
const char* redOpName(attncclRedOp_t op);

// out = the reduction of srcs[0..n) (n >= 1), count elements of type t each; divisor is Avg's
// (the rank count; ignored by the other ops).
void reduceInOrder(void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                   int divisor);

// The same with the kernel chosen by the caller: simd = the AVX2 kernels where the CPU has them
// (else the generic tiles), false = the generic tiles (tests compare the two bit for bit).
void reduceInOrderWith(bool simd, void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t,
                       attncclRedOp_t op, int divisor);
// Whether reduceInOrder uses the SIMD kernels (CPU features, ATTNCCL_CPU_ISA=generic turns them off).
bool reduceSimdActive();

}  // namespace attnccl
