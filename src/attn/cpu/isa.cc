// Run-time choice of the row-operation kernels by CPU features.
#include <cpuid.h>

#include <atomic>
#include <string>

#include "attn/cpu/rowops.h"
#include "core/params.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

// F16C through cpuid: clang's __builtin_cpu_supports does not know "f16c".
bool cpuHasF16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
}

bool cpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuHasF16c();
}

// AVX-512 F/BW/VL/DQ (and the AVX2 set, which every such CPU has).
bool cpuHasAvx512() {
  __builtin_cpu_init();
  return cpuHasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

const RowOps* detect() {
  const Isa cap = isaCap();
  if (cap >= Isa::Avx512 && cpuHasAvx512()) return &kAvx512RowOps;
  if (cap >= Isa::Avx2 && cpuHasAvx2()) return &kAvx2RowOps;
  return &kGenericRowOps;
}

std::atomic<const RowOps*> gSelected{nullptr};

}  // namespace

// Unset, the cap is the best the CPU has: the AVX-512 row operations and oneDNN's AVX-512
// kernels under this library pass the same tests as the AVX2 ones (first run on an Intel Xeon
// with AVX-512 and AVX512-BF16; src/attn/cpu/README.md).
Isa isaCap() {
  static const Isa cap = [] {
    const std::string v = paramString(Param::CpuIsa);
    if (v == "generic") return Isa::Generic;
    if (v == "avx2") return Isa::Avx2;
    return Isa::Avx512;
  }();
  return cap;
}

bool cpuIsAmd() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return false;
  // The vendor string "AuthenticAMD" in ebx, edx, ecx.
  return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
}

const RowOps* rowOpsFor(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return cpuHasAvx2() ? &kAvx2RowOps : nullptr;
    case Isa::Avx512: return cpuHasAvx512() && isaCap() >= Isa::Avx512 ? &kAvx512RowOps : nullptr;
    default: return &kGenericRowOps;
  }
}

const RowOps& rowOps() {
  const RowOps* ops = gSelected.load(std::memory_order_acquire);
  if (ops == nullptr) {
    ops = detect();
    gSelected.store(ops, std::memory_order_release);
  }
  return *ops;
}

bool forceIsa(Isa isa) {
  const RowOps* ops = rowOpsFor(isa);
  if (ops == nullptr) return false;
  gSelected.store(ops, std::memory_order_release);
  return true;
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
