// Run-time choice of the row-operation kernels by CPU features.
#include <cpuid.h>

#include <atomic>

#include "attn/cpu/rowops.h"

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

const RowOps* detect() { return cpuHasAvx2() ? &kAvx2RowOps : &kGenericRowOps; }

std::atomic<const RowOps*> gSelected{nullptr};

}  // namespace

const RowOps* rowOpsFor(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return cpuHasAvx2() ? &kAvx2RowOps : nullptr;
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
