// The few GPU primitives the attention kernels are written over, in two implementations:
//  - nvcc (device code): the real instructions (ldmatrix, mma.sync m16n8k16, cp.async,
//    warp shuffles, barriers) for sm_80 and newer;
//  - host C++: declarations of a CPU emulation (tests/support/gpu_emu.cc) that
//    runs every thread of a block as a fiber and implements the warp-collective instructions
//    by the PTX ISA's fragment layouts, so the kernels' indexing, masking, pipelining and
//    epilogues are tested on machines without a GPU.
// A kernel body is a template function taking its parameters and the block's shared memory;
// the .cu files wrap it in a __global__ entry, the emulator calls it per block.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define ATTN_HD __host__ __device__ __forceinline__
#define ATTN_DEV __device__ __forceinline__
// Loops over register arrays must be fully unrolled (a run-time index moves the array to local
// memory).
#define ATTN_UNROLL _Pragma("unroll")
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#define ATTN_HD inline
#define ATTN_DEV inline
#define ATTN_UNROLL
#include "core/dtype.h"
#endif

namespace attnccl {
namespace attn {
namespace gpu {

// Storage tags of the 16-bit tensor-core types.
struct Bf16 {
  static constexpr bool kIsBf16 = true;
};
struct Fp16 {
  static constexpr bool kIsBf16 = false;
};

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

#if defined(__CUDACC__)

ATTN_DEV int threadIdxX() { return static_cast<int>(threadIdx.x); }
ATTN_DEV int blockIdxX() { return static_cast<int>(blockIdx.x); }
ATTN_DEV int blockIdxY() { return static_cast<int>(blockIdx.y); }
ATTN_DEV int gridDimX() { return static_cast<int>(gridDim.x); }
ATTN_DEV void syncThreads() { __syncthreads(); }
ATTN_DEV void syncWarp() { __syncwarp(); }
ATTN_DEV float shflXor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
// One MUFU instruction (relative error ~2^-22; tiny results flush to zero, which softmax
// weights tolerate); exp2f without fast-math adds range handling around it.
ATTN_DEV float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
ATTN_DEV float negInf() { return -__int_as_float(0x7f800000); }
ATTN_DEV void atomicAddF(float* p, float v) { atomicAdd(p, v); }

// Four 8x8 matrices of 16-bit elements; lane l gives the address of row l%8 of matrix l/8.
// Register i of lane t holds row t/4, columns 2(t%4) and 2(t%4)+1 of matrix i (low half first);
// with .trans, matrix i is transposed first.
ATTN_DEV void ldsmX4(uint32_t (&r)[4], const void* smemRow) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smemRow));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
ATTN_DEV void ldsmX4T(uint32_t (&r)[4], const void* smemRow) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smemRow));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// D = A * B + D for one m16n8k16 tile, fp32 accumulators.
template <typename T>
ATTN_DEV void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (T::kIsBf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// 16 bytes global -> shared, bypassing L1; invalid chunks are zero-filled (no global read).
ATTN_DEV void cpAsync16(void* smemDst, const void* src, bool valid) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(smemDst));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}
ATTN_DEV void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
ATTN_DEV void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

template <typename T>
ATTN_DEV uint32_t packPair(float lo, float hi) {
  uint32_t u;
  if constexpr (T::kIsBf16) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    u = *reinterpret_cast<uint32_t*>(&h);
  } else {
    __half2 h = __floats2half2_rn(lo, hi);
    u = *reinterpret_cast<uint32_t*>(&h);
  }
  return u;
}

#else  // host C++: the emulation, implemented in tests/support/gpu_emu.cc

int threadIdxX();
int blockIdxX();
int blockIdxY();
int gridDimX();
void syncThreads();
void syncWarp();
float shflXor(float v, int mask);
inline float fastExp2(float x) { return std::exp2(x); }
inline float negInf() { return -INFINITY; }
void atomicAddF(float* p, float v);
void emuLdsm(uint32_t (&r)[4], const void* smemRow, bool trans);
inline void ldsmX4(uint32_t (&r)[4], const void* smemRow) { emuLdsm(r, smemRow, false); }
inline void ldsmX4T(uint32_t (&r)[4], const void* smemRow) { emuLdsm(r, smemRow, true); }
void emuMma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16);
template <typename T>
inline void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  emuMma(d, a, b0, b1, T::kIsBf16);
}
void cpAsync16(void* smemDst, const void* src, bool valid);
void cpAsyncCommit();
void emuCpAsyncWait(int n);
template <int N>
inline void cpAsyncWait() {
  emuCpAsyncWait(N);
}
template <typename T>
inline uint32_t packPair(float lo, float hi) {
  if constexpr (T::kIsBf16) return static_cast<uint32_t>(floatToBf16(lo)) | static_cast<uint32_t>(floatToBf16(hi)) << 16;
  return static_cast<uint32_t>(floatToFp16(lo)) | static_cast<uint32_t>(floatToFp16(hi)) << 16;
}
#endif

template <typename X>
ATTN_HD X minOf(X a, X b) {
  return a < b ? a : b;
}
template <typename X>
ATTN_HD X maxOf(X a, X b) {
  return a < b ? b : a;
}

// Element i of a tensor in storage type S (float, or the 16-bit bits of T) as float.
template <typename T>
ATTN_DEV float load16(const uint16_t* p, int64_t i) {
#if defined(__CUDACC__)
  if constexpr (T::kIsBf16) return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[i]);
  return __half2float(reinterpret_cast<const __half*>(p)[i]);
#else
  return T::kIsBf16 ? bf16ToFloat(p[i]) : fp16ToFloat(p[i]);
#endif
}

template <typename T>
ATTN_DEV void store16(uint16_t* p, int64_t i, float v) {
#if defined(__CUDACC__)
  if constexpr (T::kIsBf16) {
    reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else {
    reinterpret_cast<__half*>(p)[i] = __float2half_rn(v);
  }
#else
  p[i] = T::kIsBf16 ? floatToBf16(v) : floatToFp16(v);
#endif
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
