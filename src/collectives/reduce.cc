// The one element-wise reduction of the building blocks (see reduce.h for the formulas).
//
//   srcs[0] ──load──> acc tile ──op── srcs[1] ──op── ... ──op── srcs[n-1] ──fin,store──> out
//
// A tile is kTile elements of the accumulator type (float for the 16-bit formats). Storage and
// accumulator types are separate template parameters so the 16-bit formats share the loops of
// fp32; integers add and multiply through their unsigned twins, where wrap-around is defined.
#include "collectives/reduce.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "collectives/reduce_simd.h"
#include "core/dtype.h"
#include "core/params.h"

namespace attnccl {
namespace {

constexpr size_t kTile = 1024;

// Storage <-> accumulator conversions.
template <typename T>
struct Same {
  using Acc = T;
  static T load(T v) { return v; }
  static T store(T v) { return v; }
};
struct Half {
  using Acc = float;
  static float load(uint16_t v) { return fp16ToFloat(v); }
  static uint16_t store(float v) { return floatToFp16(v); }
};
struct Bf16 {
  using Acc = float;
  static float load(uint16_t v) { return bf16ToFloat(v); }
  static uint16_t store(float v) { return floatToBf16(v); }
};

// Wrapping arithmetic for integers (signed overflow is undefined in C++; unsigned is modular).
template <typename A>
A add(A a, A b) {
  if constexpr (std::is_integral<A>::value) {
    using U = typename std::make_unsigned<A>::type;
    return static_cast<A>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}
template <typename A>
A mul(A a, A b) {
  if constexpr (std::is_integral<A>::value) {
    // uint8/int8 promote to int: the product of two fits, the cast back wraps.
    using U = typename std::make_unsigned<typename std::conditional<(sizeof(A) < 4), unsigned, A>::type>::type;
    return static_cast<A>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  } else {
    return a * b;
  }
}
// NaN-propagating max/min: for floats `b != b` is true only for NaN.
template <typename A>
A maxOf(A a, A b) {
  return (b > a || b != b) ? b : a;
}
template <typename A>
A minOf(A a, A b) {
  return (b < a || b != b) ? b : a;
}

struct OpSum {
  template <typename A>
  A operator()(A a, A b) const { return add(a, b); }
};
struct OpProd {
  template <typename A>
  A operator()(A a, A b) const { return mul(a, b); }
};
struct OpMax {
  template <typename A>
  A operator()(A a, A b) const { return maxOf(a, b); }
};
struct OpMin {
  template <typename A>
  A operator()(A a, A b) const { return minOf(a, b); }
};

// Avg's division: floats divide in their accumulator, integers in int64 (a divisor up to the
// rank count fits) with truncation toward zero.
template <typename A>
A divide(A x, int n) {
  if constexpr (std::is_integral<A>::value) {
    return static_cast<A>(static_cast<int64_t>(x) / n);
  } else {
    return x / static_cast<A>(n);
  }
}

template <typename S, typename C, typename F>
void tiles(void* outv, const void* const* srcs, int n, size_t count, F f, bool avg, int divisor) {
  using A = typename C::Acc;
  alignas(64) A acc[kTile];
  S* out = static_cast<S*>(outv);
  for (size_t base = 0; base < count; base += kTile) {
    const size_t m = std::min(kTile, count - base);
    const S* s0 = static_cast<const S*>(srcs[0]) + base;
    for (size_t i = 0; i < m; ++i) acc[i] = C::load(s0[i]);
    for (int p = 1; p < n; ++p) {
      const S* __restrict sp = static_cast<const S*>(srcs[p]) + base;
      for (size_t i = 0; i < m; ++i) acc[i] = f(acc[i], C::load(sp[i]));
    }
    S* o = out + base;
    if (avg) {
      for (size_t i = 0; i < m; ++i) o[i] = C::store(divide(acc[i], divisor));
    } else {
      for (size_t i = 0; i < m; ++i) o[i] = C::store(acc[i]);
    }
  }
}

template <typename S, typename C>
void byOp(void* out, const void* const* srcs, int n, size_t count, attncclRedOp_t op, int divisor) {
  switch (op) {
    case attncclSum: tiles<S, C>(out, srcs, n, count, OpSum(), false, divisor); break;
    case attncclAvg: tiles<S, C>(out, srcs, n, count, OpSum(), true, divisor); break;
    case attncclProd: tiles<S, C>(out, srcs, n, count, OpProd(), false, divisor); break;
    case attncclMax: tiles<S, C>(out, srcs, n, count, OpMax(), false, divisor); break;
    case attncclMin: tiles<S, C>(out, srcs, n, count, OpMin(), false, divisor); break;
    default: break;
  }
}

void genericReduce(void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                   int divisor) {
  switch (t) {
    case attncclInt8: byOp<int8_t, Same<int8_t>>(out, srcs, n, count, op, divisor); break;
    case attncclUint8: byOp<uint8_t, Same<uint8_t>>(out, srcs, n, count, op, divisor); break;
    case attncclInt32: byOp<int32_t, Same<int32_t>>(out, srcs, n, count, op, divisor); break;
    case attncclInt64: byOp<int64_t, Same<int64_t>>(out, srcs, n, count, op, divisor); break;
    case attncclFloat16: byOp<uint16_t, Half>(out, srcs, n, count, op, divisor); break;
    case attncclBfloat16: byOp<uint16_t, Bf16>(out, srcs, n, count, op, divisor); break;
    case attncclFloat32: byOp<float, Same<float>>(out, srcs, n, count, op, divisor); break;
    case attncclFloat64: byOp<double, Same<double>>(out, srcs, n, count, op, divisor); break;
    default: break;
  }
}

// The AVX2 kernels unless the CPU lacks them or ATTNCCL_CPU_ISA=generic asks for the generic
// tiles everywhere (also how the two are compared: perf/RESULTS.md).
bool useAvx2() {
  static const bool on = paramString(Param::CpuIsa) != "generic" && cpuHasAvx2F16c();
  return on;
}

}  // namespace

bool reduceSimdActive() { return useAvx2(); }

bool redOpValid(attncclRedOp_t op) { return static_cast<int>(op) >= 0 && op < attncclNumOps; }

const char* redOpName(attncclRedOp_t op) {
  switch (op) {
    case attncclSum: return "sum";
    case attncclProd: return "prod";
    case attncclMax: return "max";
    case attncclMin: return "min";
    case attncclAvg: return "avg";
    default: return "unknown";
  }
}

void reduceInOrder(void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t, attncclRedOp_t op,
                   int divisor) {
  if (count == 0 || n < 1) return;
  // One source and nothing to divide: a copy (none at all in place).
  if (n == 1 && (op != attncclAvg || divisor == 1)) {
    if (out != srcs[0]) memmove(out, srcs[0], count * dtypeSize(t));
    return;
  }
  reduceInOrderWith(useAvx2(), out, srcs, n, count, t, op, divisor);
}

void reduceInOrderWith(bool simd, void* out, const void* const* srcs, int n, size_t count, attncclDataType_t t,
                       attncclRedOp_t op, int divisor) {
  if (count == 0 || n < 1) return;
  const size_t done = simd && cpuHasAvx2F16c() ? reduceAvx2(out, srcs, n, count, t, op, divisor) : 0;
  if (done == 0) {
    genericReduce(out, srcs, n, count, t, op, divisor);
    return;
  }
  if (done == count) return;
  // The SIMD kernel took whole blocks; the generic tiles finish the tail (the same bits).
  const size_t sz = dtypeSize(t);
  std::vector<const void*> tail(n);
  for (int p = 0; p < n; ++p) tail[p] = static_cast<const char*>(srcs[p]) + done * sz;
  genericReduce(static_cast<char*>(out) + done * sz, tail.data(), n, count - done, t, op, divisor);
}

}  // namespace attnccl
