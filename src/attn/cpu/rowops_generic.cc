// Portable row operations: plain loops the compiler may vectorise for the baseline ISA.
#include <cmath>
#include <cstring>
#include <limits>

#include "attn/cpu/rowops.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

float rowMax(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

float exp2Sub(const float* x, float* y, int64_t n, float m) {
  float s = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    y[j] = std::exp2(x[j] - m);
    s += y[j];
  }
  return s;
}

void scale(float* x, int64_t n, float c) {
  for (int64_t j = 0; j < n; ++j) x[j] *= c;
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += x[j];
}

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

void dsoftmax(float* p, float* dp, int64_t n, float delta) {
  for (int64_t j = 0; j < n; ++j) {
    p[j] *= dp[j] - delta;
    dp[j] = 0.f;
  }
}

void toFloat(attncclDataType_t t, const void* src, float* dst, int64_t n) {
  if (t == attncclFloat32) {
    memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else if (t == attncclBfloat16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int64_t j = 0; j < n; ++j) dst[j] = bf16ToFloat(s[j]);
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int64_t j = 0; j < n; ++j) dst[j] = fp16ToFloat(s[j]);
  }
}

void fromFloat(attncclDataType_t t, const float* src, void* dst, int64_t n) {
  if (t == attncclFloat32) {
    memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else if (t == attncclBfloat16) {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (int64_t j = 0; j < n; ++j) d[j] = floatToBf16(src[j]);
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (int64_t j = 0; j < n; ++j) d[j] = floatToFp16(src[j]);
  }
}

}  // namespace

const RowOps kGenericRowOps = {Isa::Generic, "generic", rowMax, exp2Sub, scale, add, dot, dsoftmax, toFloat, fromFloat};

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
