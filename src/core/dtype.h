// Sizes and names of attncclDataType_t; scalar conversions of the 16-bit float formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "attnccl.h"

namespace attnccl {

inline size_t dtypeSize(attncclDataType_t t) {
  switch (t) {
    case attncclInt8:
    case attncclUint8: return 1;
    case attncclFloat16:
    case attncclBfloat16: return 2;
    case attncclInt32:
    case attncclFloat32: return 4;
    case attncclInt64:
    case attncclFloat64: return 8;
    default: return 0;
  }
}

inline bool dtypeValid(attncclDataType_t t) { return static_cast<int>(t) >= 0 && t < attncclNumTypes; }

inline const char* dtypeName(attncclDataType_t t) {
  switch (t) {
    case attncclInt8: return "int8";
    case attncclUint8: return "uint8";
    case attncclInt32: return "int32";
    case attncclInt64: return "int64";
    case attncclFloat16: return "fp16";
    case attncclBfloat16: return "bf16";
    case attncclFloat32: return "fp32";
    case attncclFloat64: return "fp64";
    default: return "unknown";
  }
}

inline float bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t floatToBf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float fp16ToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        man <<= 1;
        ++e;
      } while ((man & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, overflow to inf.
inline uint16_t floatToFp16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (absu >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (absu < 0x38800000u) {                                               // subnormal or zero
    if (absu < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t e = absu >> 23;
    uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14 - (e - 127) + 13 - 1 + 1
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((r - 0x38000000u) >> 13));
}

}  // namespace attnccl
