#include "collectives/reduce.h"

#include <cstdint>

#include "core/dtype.h"

namespace attnccl {
namespace {

template <typename T>
void sumT(void* acc, const void* in, size_t n) {
  T* a = static_cast<T*>(acc);
  const T* b = static_cast<const T*>(in);
  for (size_t i = 0; i < n; ++i) a[i] = static_cast<T>(a[i] + b[i]);
}

}  // namespace

void sumInto(void* acc, const void* in, size_t count, attncclDataType_t t) {
  switch (t) {
    case attncclInt8: sumT<int8_t>(acc, in, count); break;
    case attncclUint8: sumT<uint8_t>(acc, in, count); break;
    case attncclInt32: sumT<int32_t>(acc, in, count); break;
    case attncclInt64: sumT<int64_t>(acc, in, count); break;
    case attncclFloat32: sumT<float>(acc, in, count); break;
    case attncclFloat64: sumT<double>(acc, in, count); break;
    default: break;
  }
}

bool needsFloatAccumulator(attncclDataType_t t) { return t == attncclFloat16 || t == attncclBfloat16; }

void widenInto(float* acc, const void* in, size_t count, attncclDataType_t t, bool add) {
  const uint16_t* h = static_cast<const uint16_t*>(in);
  if (t == attncclBfloat16) {
    if (add) {
      for (size_t i = 0; i < count; ++i) acc[i] += bf16ToFloat(h[i]);
    } else {
      for (size_t i = 0; i < count; ++i) acc[i] = bf16ToFloat(h[i]);
    }
  } else {
    if (add) {
      for (size_t i = 0; i < count; ++i) acc[i] += fp16ToFloat(h[i]);
    } else {
      for (size_t i = 0; i < count; ++i) acc[i] = fp16ToFloat(h[i]);
    }
  }
}

void narrow(void* out, const float* acc, size_t count, attncclDataType_t t) {
  uint16_t* h = static_cast<uint16_t*>(out);
  if (t == attncclBfloat16) {
    for (size_t i = 0; i < count; ++i) h[i] = floatToBf16(acc[i]);
  } else {
    for (size_t i = 0; i < count; ++i) h[i] = floatToFp16(acc[i]);
  }
}

}  // namespace attnccl
