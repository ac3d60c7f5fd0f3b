// Inputs and independent references of the reduction tests (AllReduce, Reduce, ReduceScatter).
//
// Rank r's element i is value(op, t, r, i): a small number that encodes rank and index, chosen per
// op so that the exact result of P <= 8 ranks fits every type (no Sum or Prod overflows int8;
// Prod multiplies mostly ones, a 2 or a -1 here and there). Floats get quarter steps on top of
// the integers, so fp16/bf16 hold the inputs exactly and the sums' rounding still matters for the
// averages. The reference is computed here in double (int64 for integers), never by the library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "attnccl.h"
#include "core/dtype.h"

namespace attnccl {
namespace test {

inline bool isIntegerType(attncclDataType_t t) {
  return t == attncclInt8 || t == attncclUint8 || t == attncclInt32 || t == attncclInt64;
}

inline double value(attncclRedOp_t op, attncclDataType_t t, int r, size_t i) {
  const bool unsig = t == attncclUint8;
  if (op == attncclProd) {
    if ((i + static_cast<size_t>(r)) % 5 == 0) return 2;
    if ((i + 2 * static_cast<size_t>(r)) % 7 == 0) return unsig ? 1 : -1;
    return 1;
  }
  int64_t base = static_cast<int64_t>((static_cast<size_t>(r) * 7 + i * 3 + i / 11) % 9) - 4;  // -4..4
  if (unsig) base += 4;
  if (isIntegerType(t)) return static_cast<double>(base);
  return static_cast<double>(base) + 0.25 * static_cast<double>((i + static_cast<size_t>(r)) % 3);
}

inline void storeAs(void* buf, attncclDataType_t t, size_t i, double v) {
  switch (t) {
    case attncclInt8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(v); break;
    case attncclUint8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v); break;
    case attncclInt32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
    case attncclInt64: static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
    case attncclFloat16: static_cast<uint16_t*>(buf)[i] = floatToFp16(static_cast<float>(v)); break;
    case attncclBfloat16: static_cast<uint16_t*>(buf)[i] = floatToBf16(static_cast<float>(v)); break;
    case attncclFloat32: static_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case attncclFloat64: static_cast<double*>(buf)[i] = v; break;
    default: break;
  }
}

inline double loadAs(const void* buf, attncclDataType_t t, size_t i) {
  switch (t) {
    case attncclInt8: return static_cast<const int8_t*>(buf)[i];
    case attncclUint8: return static_cast<const uint8_t*>(buf)[i];
    case attncclInt32: return static_cast<const int32_t*>(buf)[i];
    case attncclInt64: return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case attncclFloat16: return fp16ToFloat(static_cast<const uint16_t*>(buf)[i]);
    case attncclBfloat16: return bf16ToFloat(static_cast<const uint16_t*>(buf)[i]);
    case attncclFloat32: return static_cast<const float*>(buf)[i];
    case attncclFloat64: return static_cast<const double*>(buf)[i];
    default: return NAN;
  }
}

// The reduction of value(op, t, r, i) over ranks 0..n-1, in double (exact for the integer
// inputs); Avg of integers truncates as C's division does.
inline double reference(attncclRedOp_t op, attncclDataType_t t, int n, size_t i) {
  double acc = value(op, t, 0, i);
  for (int r = 1; r < n; ++r) {
    const double v = value(op, t, r, i);
    switch (op) {
      case attncclSum:
      case attncclAvg: acc += v; break;
      case attncclProd: acc *= v; break;
      case attncclMax: acc = std::max(acc, v); break;
      case attncclMin: acc = std::min(acc, v); break;
      default: break;
    }
  }
  if (op == attncclAvg) acc = isIntegerType(t) ? std::trunc(acc / n) : acc / n;
  return acc;
}

// Relative tolerance of a float result: the inputs are exact, the sum (in fp32 for fp32/fp16/
// bf16) and Avg's division round, the 16-bit formats round once more at the end.
inline double tolerance(attncclDataType_t t) {
  switch (t) {
    case attncclFloat16: return 2e-3;
    case attncclBfloat16: return 1e-2;
    case attncclFloat32: return 1e-6;
    case attncclFloat64: return 1e-12;
    default: return 0;
  }
}

inline bool matches(attncclDataType_t t, double got, double want) {
  if (isIntegerType(t)) return got == want;
  return std::fabs(got - want) <= tolerance(t) * std::max(1.0, std::fabs(want));
}

inline const char* opName(attncclRedOp_t op) {
  static const char* names[] = {"sum", "prod", "max", "min", "avg"};
  return static_cast<int>(op) >= 0 && op < attncclNumOps ? names[op] : "?";
}

constexpr attncclRedOp_t kAllOps[] = {attncclSum, attncclProd, attncclMax, attncclMin, attncclAvg};
constexpr attncclDataType_t kAllTypes[] = {attncclInt8,    attncclUint8,    attncclInt32,   attncclInt64,
                                           attncclFloat16, attncclBfloat16, attncclFloat32, attncclFloat64};

// value() repeats with this period in i (99 from the i*3 + i/11 term mod 9, 35 from Prod's
// i mod 5 and mod 7), so large buffers are filled and checked from one period's table.
constexpr size_t kPeriod = 3465;

struct Table {
  std::vector<double> v;
  // Entries for i < upto (at most one period).
  Table(attncclRedOp_t op, attncclDataType_t t, int n, int rank, bool ref, size_t upto)
      : v(std::min(upto, kPeriod)) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = ref ? reference(op, t, n, i) : value(op, t, rank, i);
  }
  double operator()(size_t i) const { return v[i % kPeriod]; }
};

// A buffer of count elements of t plus one guard element, every byte 0x7f (a poison no result
// takes: 127 in int8/uint8 is outside every reduction of the inputs above).
inline std::vector<char> poisoned(size_t count, attncclDataType_t t) {
  return std::vector<char>((count + 1) * dtypeSize(t), static_cast<char>(0x7f));
}

// FNV-1a of the bytes, to compare results across ranks.
inline uint64_t hashBytes(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  return h;
}

}  // namespace test
}  // namespace attnccl
