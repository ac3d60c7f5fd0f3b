// Host-side logic of the GPU tiles, on the CPU: the block classification the kernels use to
// skip and mask (against a brute-force check and the CPU tiles' classification) and the
// kernel/launch selection (tensor cores only where their loads are legal).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "attn/cpu/mask.h"
#include "attn/gpu/kernel_config.h"
#include "attn/gpu/kernel_select.h"
#include "attn/gpu/tile_params.h"
#include "support/tensors.h"

namespace attnccl_test {
namespace {

namespace attn = attnccl::attn;
namespace gpu = attnccl::attn::gpu;

// Random increasing positions with documents that never decrease.
void randomBlock(std::mt19937_64& rng, int n, std::vector<int64_t>* pos, std::vector<int64_t>* doc) {
  pos->clear();
  doc->clear();
  int64_t p = static_cast<int64_t>(rng() % 40), d = static_cast<int64_t>(rng() % 3);
  for (int i = 0; i < n; ++i) {
    p += 1 + static_cast<int64_t>(rng() % 4);
    if (rng() % 8 == 0) ++d;
    pos->push_back(p);
    doc->push_back(d);
  }
}

TEST(GpuHost, ClassificationIsExactForNoneAndFull) {
  std::mt19937_64 rng(testSeed());
  std::vector<int64_t> qp, qd, kp, kd;
  int counts[3] = {0, 0, 0};
  for (int iter = 0; iter < 20000; ++iter) {
    randomBlock(rng, 1 + static_cast<int>(rng() % 12), &qp, &qd);
    randomBlock(rng, 1 + static_cast<int>(rng() % 12), &kp, &kd);
    gpu::DevMask m;
    m.causal = static_cast<int>(rng() % 2);
    m.windowLeft = rng() % 3 == 0 ? -1 : static_cast<int64_t>(rng() % 30);
    m.windowRight = rng() % 3 == 0 ? -1 : static_cast<int64_t>(rng() % 30);
    gpu::DevTokens q, k;
    q.pos = qp.data(), q.doc = qd.data(), q.n = static_cast<int64_t>(qp.size());
    k.pos = kp.data(), k.doc = kd.data(), k.n = static_cast<int64_t>(kp.size());
    const int cls = gpu::classifyTile(m, gpu::spanOf(q, 0, q.n), gpu::spanOf(k, 0, k.n));
    int visible = 0;
    for (size_t i = 0; i < qp.size(); ++i)
      for (size_t j = 0; j < kp.size(); ++j) visible += gpu::visiblePair(m, qp[i], qd[i], kp[j], kd[j]);
    const int total = static_cast<int>(qp.size() * kp.size());
    if (cls == gpu::kTileNone) {
      ASSERT_EQ(visible, 0);
    }
    if (cls == gpu::kTileFull) {
      ASSERT_EQ(visible, total);
    }
    if (visible == 0 || visible == total) counts[visible == 0 ? 0 : 1]++;
    // Same decision as the CPU tiles.
    attn::MaskSpec ms{m.causal != 0, m.windowLeft, m.windowRight};
    attn::Tokens qt{q.n, qp.data(), qd.data()}, kt{k.n, kp.data(), kd.data()};
    const attn::cpu::BlockKind kind = attn::cpu::classifyBlock(ms, qt, 0, q.n, kt, 0, k.n);
    ASSERT_EQ(static_cast<int>(kind), cls);
    counts[2] += cls == gpu::kTilePartial;
  }
  EXPECT_GT(counts[0], 100);
  EXPECT_GT(counts[1], 100);
  EXPECT_GT(counts[2], 100);
}

TEST(GpuHost, ContiguousRunsNeedNoArrays) {
  gpu::DevTokens t;
  t.base = 100;
  t.docConst = 3;
  t.n = 10;
  EXPECT_EQ(gpu::tokPos(t, 4), 104);
  EXPECT_EQ(gpu::tokDoc(t, 9), 3);
  const gpu::BlockSpan s = gpu::spanOf(t, 2, 7);
  EXPECT_EQ(s.pos0, 102);
  EXPECT_EQ(s.pos1, 106);
}

gpu::FwdParams fwdParams(int D, int heads, int64_t n, void* base) {
  gpu::FwdParams p;
  p.q = p.k = p.v = p.o = base;
  p.headDim = D;
  p.ldq = p.ldkv = p.ldo = static_cast<int64_t>(heads) * D;
  p.heads.numQ = p.heads.numKV = heads;
  p.qt.n = p.kt.n = n;
  return p;
}

TEST(GpuHost, ForwardKernelSelection) {
  alignas(16) static char buf[64];
  gpu::FwdParams p = fwdParams(64, 8, 1000, buf);
  gpu::TileLaunch l = gpu::planForward(attncclBfloat16, p);
  EXPECT_EQ(l.kernel, gpu::TileKernel::kMma64);
  EXPECT_EQ(l.gridX, (1000 + gpu::FwdMma64::kBr - 1) / gpu::FwdMma64::kBr);
  EXPECT_EQ(l.gridY, 8);
  EXPECT_EQ(l.threads, gpu::FwdMma64::kThreads);
  EXPECT_EQ(l.smemBytes, gpu::FwdMma64::kSmemBytes);
  EXPECT_EQ(gpu::planForward(attncclFloat16, fwdParams(40, 2, 10, buf)).kernel, gpu::TileKernel::kMma64);
  EXPECT_EQ(gpu::planForward(attncclBfloat16, fwdParams(128, 2, 10, buf)).kernel, gpu::TileKernel::kMma128);
  EXPECT_EQ(gpu::planForward(attncclBfloat16, fwdParams(72, 2, 10, buf)).kernel, gpu::TileKernel::kMma128);
  // Generic: fp32, head dims past 128 or not a multiple of 8, unaligned tensors or strides.
  EXPECT_EQ(gpu::planForward(attncclFloat32, fwdParams(64, 2, 10, buf)).kernel, gpu::TileKernel::kSimt);
  EXPECT_EQ(gpu::planForward(attncclBfloat16, fwdParams(136, 2, 10, buf)).kernel, gpu::TileKernel::kSimt);
  EXPECT_EQ(gpu::planForward(attncclBfloat16, fwdParams(60, 2, 10, buf)).kernel, gpu::TileKernel::kSimt);
  gpu::FwdParams u = fwdParams(64, 2, 10, buf);
  u.k = buf + 2;
  EXPECT_EQ(gpu::planForward(attncclBfloat16, u).kernel, gpu::TileKernel::kSimt);
  u = fwdParams(64, 2, 10, buf);
  u.ldkv = 68;
  EXPECT_EQ(gpu::planForward(attncclBfloat16, u).kernel, gpu::TileKernel::kSimt);
  const gpu::TileLaunch s = gpu::planForward(attncclFloat32, fwdParams(200, 3, 33, buf));
  EXPECT_EQ(s.gridX, 3);
  EXPECT_EQ(s.smemBytes, gpu::SimtConfig::smemBytes(200));
  // Nothing to compute.
  EXPECT_EQ(gpu::planForward(attncclBfloat16, fwdParams(64, 2, 0, buf)).kernel, gpu::TileKernel::kNone);
}

TEST(GpuHost, BackwardKernelSelection) {
  alignas(16) static char buf[64];
  gpu::BwdParams p;
  p.q = p.dout = p.k = p.v = buf;
  p.headDim = 128;
  p.ldq = 4 * 128;
  p.ldkv = 2 * 128;
  p.heads.numQ = 4;
  p.heads.numKV = 2;
  p.heads.group = 2;
  p.qt.n = 300;
  p.kt.n = 200;
  gpu::TileLaunch l = gpu::planBackward(attncclBfloat16, p);
  EXPECT_EQ(l.kernel, gpu::TileKernel::kMma128);
  EXPECT_EQ(l.gridX, (200 + gpu::BwdMma128::kBc - 1) / gpu::BwdMma128::kBc);
  EXPECT_EQ(l.gridY, 2);  // one block column per key/value head
  p.headDim = 20;
  p.ldq = 80;
  p.ldkv = 40;
  l = gpu::planBackward(attncclBfloat16, p);
  EXPECT_EQ(l.kernel, gpu::TileKernel::kSimt);
  EXPECT_EQ(l.gridX, (200 + 15) / 16);
  EXPECT_EQ(l.gridX2, (300 + 15) / 16);
  EXPECT_EQ(l.gridY2, 4);
  p.kt.n = 0;
  EXPECT_EQ(gpu::planBackward(attncclBfloat16, p).kernel, gpu::TileKernel::kNone);
}

TEST(GpuHost, SharedMemoryFitsEveryTarget) {
  // sm_80 allows 163 KB of dynamic shared memory per block, sm_90 227 KB.
  for (size_t b : {gpu::FwdMma64::kSmemBytes, gpu::FwdMma128::kSmemBytes, gpu::BwdMma64::kSmemBytes,
                   gpu::BwdMma128::kSmemBytes, gpu::SimtConfig::smemBytes(256)}) {
    EXPECT_LE(b, size_t{163} * 1024);
  }
}

}  // namespace
}  // namespace attnccl_test
