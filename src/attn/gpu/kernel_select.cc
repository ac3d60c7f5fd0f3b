#include "attn/gpu/kernel_select.h"

#include "attn/gpu/kernel_config.h"

namespace attnccl {
namespace attn {
namespace gpu {

const char* tileKernelName(TileKernel k) {
  switch (k) {
    case TileKernel::kNone: return "none";
    case TileKernel::kMma64: return "mma-d64";
    case TileKernel::kMma128: return "mma-d128";
    case TileKernel::kSimt: return "simt";
  }
  return "unknown";
}

bool mmaEligible(attncclDataType_t dtype, int headDim, const void* const* ptrs, int nptrs, const int64_t* strides,
                 int nstrides) {
  if (dtype != attncclBfloat16 && dtype != attncclFloat16) return false;
  if (headDim < 1 || headDim > 128 || headDim % 8 != 0) return false;
  for (int i = 0; i < nptrs; ++i) {
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % 16 != 0) return false;
  }
  for (int i = 0; i < nstrides; ++i) {
    if (strides[i] % 8 != 0) return false;
  }
  return true;
}

namespace {

int ceilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace

TileLaunch planForward(attncclDataType_t dtype, const FwdParams& p) {
  TileLaunch l;
  if (p.qt.n <= 0 || p.heads.numQ <= 0) return l;
  // The final epilogue stores pairs of 16-bit values (4 bytes); the merge epilogue stores floats.
  const void* ptrs[] = {p.q, p.k, p.v};
  const int64_t strides[] = {p.ldq, p.ldkv};
  bool mma = mmaEligible(dtype, p.headDim, ptrs, 3, strides, 2);
  if (p.mode == kFwdFinal) mma = mma && reinterpret_cast<uintptr_t>(p.o) % 4 == 0 && p.ldo % 2 == 0;
  l.gridY = p.heads.numQ;
  if (mma && p.headDim <= 64) {
    l.kernel = TileKernel::kMma64;
    l.gridX = ceilDiv(p.qt.n, FwdMma64::kBr);
    l.threads = FwdMma64::kThreads;
    l.smemBytes = FwdMma64::kSmemBytes;
  } else if (mma) {
    l.kernel = TileKernel::kMma128;
    l.gridX = ceilDiv(p.qt.n, FwdMma128::kBr);
    l.threads = FwdMma128::kThreads;
    l.smemBytes = FwdMma128::kSmemBytes;
  } else {
    l.kernel = TileKernel::kSimt;
    l.gridX = ceilDiv(p.qt.n, SimtConfig::kRows);
    l.threads = SimtConfig::kThreads;
    l.smemBytes = SimtConfig::smemBytes(p.headDim);
  }
  return l;
}

TileLaunch planBackward(attncclDataType_t dtype, const BwdParams& p) {
  TileLaunch l;
  if (p.qt.n <= 0 || p.kt.n <= 0 || p.heads.numQ <= 0 || p.heads.numKV <= 0) return l;
  const void* ptrs[] = {p.q, p.dout, p.k, p.v};
  const int64_t strides[] = {p.ldq, p.ldkv};
  const bool mma = mmaEligible(dtype, p.headDim, ptrs, 4, strides, 2);
  l.gridY = p.heads.numKV;
  if (mma && p.headDim <= 64) {
    l.kernel = TileKernel::kMma64;
    l.gridX = ceilDiv(p.kt.n, BwdMma64::kBc);
    l.threads = BwdMma64::kThreads;
    l.smemBytes = BwdMma64::kSmemBytes;
  } else if (mma) {
    l.kernel = TileKernel::kMma128;
    l.gridX = ceilDiv(p.kt.n, BwdMma128::kBc);
    l.threads = BwdMma128::kThreads;
    l.smemBytes = BwdMma128::kSmemBytes;
  } else {
    l.kernel = TileKernel::kSimt;
    l.gridX = ceilDiv(p.kt.n, SimtConfig::kRows);
    l.gridX2 = ceilDiv(p.qt.n, SimtConfig::kRows);
    l.gridY2 = p.heads.numQ;
    l.threads = SimtConfig::kThreads;
    l.smemBytes = SimtConfig::smemBytes(p.headDim);
  }
  return l;
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
