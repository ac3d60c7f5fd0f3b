// Run-time choice of the row-operation kernels by CPU features.
#include <atomic>

#include "attn/cpu/rowops.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

bool cpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
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
