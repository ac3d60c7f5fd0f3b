// Host entry points of the GPU kernels (defined in the .cu files of this directory). Each
// enqueues on `stream` and returns at once; a launch failure comes back as
// attncclUnhandledCudaError with the kernel named. Tensor layouts follow attn/gpu/tile_params.h
// and attn/tile.h: rows of [heads][headDim] with row strides in elements, LSE/Delta
// [heads][ld] fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "attn/gpu/kernel_select.h"
#include "attn/gpu/tile_params.h"
#include "attnccl.h"

namespace attnccl {
namespace cuda {

// Forward tile (kernel chosen by gpu::planForward) / backward tile (gpu::planBackward).
attncclResult_t forwardTile(attncclDataType_t dtype, const attn::gpu::FwdParams& p, cudaStream_t stream);
attncclResult_t backwardTile(attncclDataType_t dtype, const attn::gpu::BwdParams& p, cudaStream_t stream);

// Per-file launchers (one instantiation per head dim and dtype; see kernel_config.h).
cudaError_t launchFwdMmaBf16(const attn::gpu::FwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s);
cudaError_t launchFwdMmaFp16(const attn::gpu::FwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s);
cudaError_t launchBwdMmaBf16(const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s);
cudaError_t launchBwdMmaFp16(const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l, cudaStream_t s);
cudaError_t launchFwdSimt(attncclDataType_t dtype, const attn::gpu::FwdParams& p, const attn::gpu::TileLaunch& l,
                          cudaStream_t s);
cudaError_t launchBwdSimt(attncclDataType_t dtype, const attn::gpu::BwdParams& p, const attn::gpu::TileLaunch& l,
                          cudaStream_t s);

// o[rows][heads][headDim] (row stride ldo) = 0 and lse[heads][ldlse] = -inf over `rows`.
attncclResult_t clearAccumulator(float* o, int64_t rows, int heads, int headDim, int64_t ldo, float* lse,
                                 int64_t ldlse, cudaStream_t stream);
// (o, lse) <- merge((o, lse), (oB, lseB)) in fp32 over rows x heads (rows with lseB = -inf add
// nothing).
attncclResult_t mergeAccumulators(float* o, float* lse, int64_t ldo, int64_t ldlse, const float* oB,
                                  const float* lseB, int64_t ldoB, int64_t ldlseB, int64_t rows, int heads,
                                  int headDim, cudaStream_t stream);
// attncclMergeStates: out/outB [tokens][heads][headDim] in dtype (contiguous), lse fp32
// [heads][tokens]; computed in fp32.
attncclResult_t mergeStates(attncclDataType_t dtype, void* out, float* lse, const void* outB, const float* lseB,
                            int64_t tokens, int heads, int headDim, cudaStream_t stream);
// delta[h][i] = sum_d dout[i][h][d] * out[i][h][d] (storage dtype in, fp32 out).
attncclResult_t computeDelta(attncclDataType_t dtype, const void* out, const void* dout, int64_t rows, int heads,
                             int headDim, int64_t ld, float* delta, int64_t lddelta, cudaStream_t stream);
// Rows of `width` fp32 values -> storage dtype (or fp32), with row strides.
attncclResult_t storeRows(attncclDataType_t dtype, const float* src, int64_t ldsrc, void* dst, int64_t lddst,
                          int64_t rows, int64_t width, cudaStream_t stream);
// dst += src (dst = src when `copy`) over height rows of width fp32 values; pitches in floats.
attncclResult_t addF32(float* dst, const float* src, int64_t width, int64_t height, int64_t dpitch, int64_t spitch,
                       bool copy, cudaStream_t stream);

}  // namespace cuda
}  // namespace attnccl
