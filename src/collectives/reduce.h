// Element-wise sums for ReduceScatter. 16-bit floats accumulate in fp32 and round once.
#pragma once

#include <cstddef>

#include "attnccl.h"

namespace attnccl {

// acc[i] += in[i] for types that accumulate in themselves (int32, int64, fp32, fp64, int8, uint8).
void sumInto(void* acc, const void* in, size_t count, attncclDataType_t t);
// True for fp16/bf16, which go through an fp32 accumulator.
bool needsFloatAccumulator(attncclDataType_t t);
void widenInto(float* acc, const void* in, size_t count, attncclDataType_t t, bool add);
void narrow(void* out, const float* acc, size_t count, attncclDataType_t t);

}  // namespace attnccl
