// The SIMD kernels behind reduceInOrder (reduce.cc picks them at run time; reduce_avx2.cc).
#pragma once

#include <cstddef>

#include "attnccl.h"

namespace attnccl {

// Whether this CPU runs reduceAvx2 (AVX2 and F16C).
bool cpuHasAvx2F16c();

// Reduces the leading elements of count (a whole number of 4-vector blocks) as reduceInOrder
// does and returns how many it did: 0 for types it does not cover (the integers), so the
// caller reduces the rest with the generic tiles. Same bits as the generic path.
size_t reduceAvx2(void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                  int divisor);

}  // namespace attnccl
