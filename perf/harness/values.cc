#include "harness/values.h"

#include <cstring>

#include "core/dtype.h"

namespace perf {

ValueCode::ValueCode(attncclDataType_t t, int nranks, bool summed) {
  uint64_t exact;  // integers 0..exact-1 are exact in t
  switch (t) {
    case attncclInt8: exact = 127; break;
    case attncclUint8: exact = 255; break;
    case attncclFloat16: exact = 2048; break;
    case attncclBfloat16: exact = 256; break;
    default: exact = uint64_t(1) << 20; break;
  }
  uint64_t n = nranks > 0 ? static_cast<uint64_t>(nranks) : 1;
  modulus_ = summed ? exact / n : exact;
  if (modulus_ < 2) modulus_ = 2;
  // Codes (and their sums) are >= 0 and < exact; uint8 has no negative values, 255 is unused.
  poison_ = t == attncclUint8 ? 255.0 : -1.0;
}

void storeValue(void* buf, size_t i, attncclDataType_t t, double v) {
  switch (t) {
    case attncclInt8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(v); break;
    case attncclUint8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v); break;
    case attncclInt32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
    case attncclInt64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
    case attncclFloat16: static_cast<uint16_t*>(buf)[i] = attnccl::floatToFp16(static_cast<float>(v)); break;
    case attncclBfloat16: static_cast<uint16_t*>(buf)[i] = attnccl::floatToBf16(static_cast<float>(v)); break;
    case attncclFloat32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case attncclFloat64: static_cast<double*>(buf)[i] = v; break;
    default: break;
  }
}

double loadValue(const void* buf, size_t i, attncclDataType_t t) {
  switch (t) {
    case attncclInt8: return static_cast<const int8_t*>(buf)[i];
    case attncclUint8: return static_cast<const uint8_t*>(buf)[i];
    case attncclInt32: return static_cast<const int32_t*>(buf)[i];
    case attncclInt64: return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case attncclFloat16: return attnccl::fp16ToFloat(static_cast<const uint16_t*>(buf)[i]);
    case attncclBfloat16: return attnccl::bf16ToFloat(static_cast<const uint16_t*>(buf)[i]);
    case attncclFloat32: return static_cast<const float*>(buf)[i];
    case attncclFloat64: return static_cast<const double*>(buf)[i];
    default: return 0;
  }
}

void fillCode(void* buf, size_t n, attncclDataType_t t, const ValueCode& code, int rank) {
  for (size_t i = 0; i < n; ++i) storeValue(buf, i, t, code(rank, i));
}

void fillValue(void* buf, size_t n, attncclDataType_t t, double v) {
  for (size_t i = 0; i < n; ++i) storeValue(buf, i, t, v);
}

}  // namespace perf
