// Forward tile on the CPU (attn/tile.h): for every (query head, query block) work item, the
// online softmax over the visible key blocks, with both GEMMs (S = Q K^T and O += P V) through
// the GEMM layer (cpu/gemm.h) and the softmax rows through the vectorised row operations. On the
// bf16 path Q, K, V stay bf16 and P is rounded to bf16 for O += P V (fp32 accumulation; the
// online-softmax state m, l and O stays fp32).
//
// The fp32 accumulator (O normalised, LSE) is the running state itself: a row with LSE = L is
// the state (max m = L, sum l = 1, unnormalised O = O), so successive tiles continue one online
// softmax. Scores are kept in base 2 (scaled by scale * log2 e inside the GEMM) so the
// exponentials are exp2; LSE goes back to natural log at the end.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attn/cpu/fwd_stream.h"
#include "attn/cpu/gemm.h"
#include "attn/cpu/mask.h"
#include "attn/cpu/online_softmax.h"
#include "attn/cpu/packed_gemm.h"
#include "attn/cpu/rowops.h"
#include "attn/cpu/staging.h"
#include "attn/tile.h"
#include "attn/tile_clock.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {

namespace {

// Query rows per work item and keys per step (measured: src/attn/cpu/README.md).
constexpr int64_t kFwdBlockQ = 128;
constexpr int64_t kFwdBlockK = 512;
using cpu::kLog2e;

struct FwdPlan {
  const FwdTileArgs* a;
  cpu::HeadMajor k, v;
  cpu::Elem elem;  // Bf16: bf16 operands (bf16 input on the bf16 GEMM path)
  int64_t blockQ, numQBlocks, numKBlocks;
  // The packed kernels (fp32 products only) and each KV head's panels; null: the GEMM layer.
  const cpu::PackedGemmOps* packed = nullptr;
  const float *kp = nullptr, *vp = nullptr;
  int64_t nPad = 0;  // keys per head in the panels (a multiple of 16)
};

// The online-softmax step of rows [r0, r1) of the block over the scores of columns [cb, cb + ncols)
// (t.s, stride ncols): P into t.p, zero outside each row's visible keys. clearScores: zero the
// scores as they are read (the GEMM layer accumulates into them).
void softmaxRows(const FwdPlan& p, cpu::ThreadScratch& t, const cpu::RowOps& ops, int64_t r0, int64_t r1, int64_t cb,
                 int64_t ncols, bool clearScores) {
  const int64_t D = p.a->headDim;
  for (int64_t i = r0; i < r1; ++i) {
    float* row = t.s.data() + (i - r0) * ncols;
    float* prow = t.p.data() + (i - r0) * ncols;
    const int64_t c0 = t.lo[i] - cb, c1 = t.hi[i] - cb;
    if (c0 >= c1) {
      std::fill(prow, prow + ncols, 0.f);
      if (clearScores) std::fill(row, row + ncols, 0.f);
      continue;
    }
    cpu::softmaxRowStep(ops, row, prow, c0, c1, t.o.data() + i * D, D, &t.m[i], &t.l[i]);
    std::fill(prow, prow + c0, 0.f);
    std::fill(prow + c1, prow + ncols, 0.f);
    if (clearScores) std::fill(row, row + ncols, 0.f);
    t.touched[i] = 1;
  }
}

void fwdItem(const FwdPlan& p, int64_t h, int64_t qb) {
  const FwdTileArgs& a = *p.a;
  const cpu::RowOps& ops = cpu::rowOps();
  const int64_t D = a.headDim;
  const int64_t q0 = qb * p.blockQ, q1 = std::min(a.qTok.n, q0 + p.blockQ), nr = q1 - q0;
  const int kh = a.heads.kvOf(static_cast<int>(h));
  cpu::ThreadScratch& t = cpu::threadScratch();
  t.lo.resize(nr);
  t.hi.resize(nr);
  float* oAcc = a.o + q0 * a.ldo + h * D;
  float* lse = a.lse + h * a.ldlse + q0;
  // Set up lazily: a query block with nothing visible costs nothing. The block's queries and
  // its running output live in contiguous scratch ([nr][D]) while the keys stream by.
  bool started = false;
  auto start = [&] {
    started = true;
    const bool bf = p.elem == cpu::Elem::Bf16;
    if (bf) {
      t.qh.resize(nr * D);
      t.ph.resize(nr * kFwdBlockK);
    } else {
      t.q.resize(nr * D);
    }
    t.o.resize(nr * D);
    // Scores accumulate into a zeroed buffer (beta = 1) that each step clears again as it
    // reads it: cheaper than the BLAS's own clearing pass for beta = 0.
    t.s.assign(nr * kFwdBlockK, 0.f);
    t.p.resize(nr * kFwdBlockK);
    t.m.resize(nr);
    t.l.resize(nr);
    t.touched.assign(nr, 0);
    const size_t esz = dtypeSize(a.dtype);
    const char* qBase = static_cast<const char*>(a.q);
    for (int64_t i = 0; i < nr; ++i) {
      const char* qRow = qBase + static_cast<size_t>((q0 + i) * a.ldq + h * (a.hsq ? a.hsq : D)) * esz;
      if (bf)
        std::memcpy(t.qh.data() + i * D, qRow, static_cast<size_t>(D) * 2);
      else
        ops.toFloat(a.dtype, qRow, t.q.data() + i * D, D);
      cpu::loadRowState(oAcc + i * a.ldo, lse[i], D, t.o.data() + i * D, &t.m[i], &t.l[i]);
    }
  };

  const float alpha = a.scale * kLog2e;
  for (int64_t kb = 0; kb < p.numKBlocks; ++kb) {
    const int64_t k0 = kb * kFwdBlockK, k1 = std::min(a.kTok.n, k0 + kFwdBlockK);
    cpu::BlockUse use;
    if (!cpu::blockUse(a.mask, a.qTok, q0, q1, a.kTok, k0, k1, t.lo.data(), t.hi.data(), &use)) continue;
    if (!started) start();
    cpu::forEachRowChunk(use, t.lo.data(), t.hi.data(), [&](int64_t r0, int64_t r1, int64_t cb, int64_t ce) {
      const int64_t nrows = r1 - r0, ncols = ce - cb;
      float* s = t.s.data();
      float* pm = t.p.data();
      float* o = t.o.data();
      const bool bf = p.elem == cpu::Elem::Bf16;
      if (p.packed) {
        // Whole key panels: the chunk's columns widen to a multiple of 16 from a panel boundary
        // (the extra scores lie outside every row's [lo, hi) and their P is zero).
        const int64_t cbA = cb / cpu::kPanel * cpu::kPanel, ceA = cpu::panelPad(ce);
        p.packed->scores(t.q.data() + r0 * D, D, nrows, p.kp + kh * p.nPad * D, D, cbA / cpu::kPanel,
                         (ceA - cbA) / cpu::kPanel, alpha, s, ceA - cbA);
        softmaxRows(p, t, ops, r0, r1, cbA, ceA - cbA, false);
        p.packed->pv(pm, ceA - cbA, nrows, p.vp + kh * p.nPad * cpu::panelPad(D), p.nPad, cbA, ceA - cbA, D,
                     1.f, o + r0 * D, D);
        return;
      }
      const void* qa = bf ? static_cast<const void*>(t.qh.data() + r0 * D) : t.q.data() + r0 * D;
      cpu::gemmAcc(p.elem, false, true, nrows, ncols, D, alpha, qa, D, p.k.row(kh, cb), D, s, ncols);
      softmaxRows(p, t, ops, r0, r1, cb, ncols, true);
      const void* pa = pm;
      if (bf) {  // P in [0, 1] rounded to bf16 (relative 2^-9), as the bf16 GEMM needs it
        ops.fromFloat(attncclBfloat16, pm, t.ph.data(), nrows * ncols);
        pa = t.ph.data();
      }
      cpu::gemmAcc(p.elem, false, false, nrows, D, ncols, 1.f, pa, ncols, p.v.row(kh, cb), D, o + r0 * D, D);
    });
  }
  if (!started) return;
  for (int64_t i = 0; i < nr; ++i) {
    if (t.touched[i]) cpu::storeRowState(t.o.data() + i * D, t.m[i], t.l[i], D, oAcc + i * a.ldo, &lse[i]);
  }
}

// Lays each KV head's keys and values out as the packed kernels' panels (cpu/packed_gemm.h), in
// parallel over heads and the two tensors: once per tile, where the GEMM layer would pack them
// again for every query block.
void packKv(FwdPlan& p, cpu::TileStaging& staging, ThreadPool& pool, const std::function<void()>& between) {
  const FwdTileArgs& a = *p.a;
  const int64_t D = a.headDim, n = a.kTok.n, heads = a.heads.numKV;
  p.packed = cpu::packedGemm();
  p.nPad = cpu::panelPad(n);
  staging.kp.resize(static_cast<size_t>(heads * p.nPad * D));
  staging.vp.resize(static_cast<size_t>(heads * p.nPad * cpu::panelPad(D)));
  float* kp = staging.kp.data();
  float* vp = staging.vp.data();
  pool.run(
      2 * heads,
      [&](int64_t item, int) {
        const int64_t h = item / 2;
        if (item % 2 == 0)
          p.packed->packKeys(static_cast<const float*>(p.k.row(h, 0)), n, D, kp + h * p.nPad * D);
        else
          p.packed->packValues(static_cast<const float*>(p.v.row(h, 0)), n, D, vp + h * p.nPad * cpu::panelPad(D));
      },
      between);
  p.kp = kp;
  p.vp = vp;
}

}  // namespace

void fwdTile(const FwdTileArgs& a, ThreadPool& pool, const std::function<void()>& between) {
  if (cpu::fwdStreams(a)) {  // few query rows: no staging, no packing (cpu/fwd_stream.cc)
    cpu::fwdTileStream(a, pool, between);
    return;
  }
  TileClock clock;  // per-thread compute time (attn/tile_clock.h)
  if (a.qTok.n <= 0 || a.kTok.n <= 0 || a.heads.numQ <= 0) return;
  cpu::TileStaging& staging = cpu::callerStaging();
  FwdPlan p;
  p.a = &a;
  const bool bf = a.dtype == attncclBfloat16 && cpu::gemmPath().bf16Native;
  p.elem = bf ? cpu::Elem::Bf16 : cpu::Elem::F32;
  p.k = cpu::stageHeads(a.dtype, a.k, a.ldkv, a.hsk, a.kTok.n, a.heads.numKV, a.headDim, staging.k, pool, between, bf);
  p.v = cpu::stageHeads(a.dtype, a.v, a.ldv ? a.ldv : a.ldkv, a.hsv, a.kTok.n, a.heads.numKV, a.headDim, staging.v,
                        pool, between, bf);
  if (p.elem == cpu::Elem::F32 && cpu::fwdPackedNow()) packKv(p, staging, pool, between);
  // Smaller query blocks when there would be too few items to feed the pool.
  p.blockQ = kFwdBlockQ;
  while (p.blockQ > 16 && a.heads.numQ * ((a.qTok.n + p.blockQ - 1) / p.blockQ) < 4 * pool.size()) p.blockQ /= 2;
  p.numQBlocks = (a.qTok.n + p.blockQ - 1) / p.blockQ;
  p.numKBlocks = (a.kTok.n + kFwdBlockK - 1) / kFwdBlockK;
  const int64_t numQ = a.heads.numQ;
  // Late query blocks first: under a causal mask they are the long ones.
  pool.run(numQ * p.numQBlocks,
           [&](int64_t item, int) { fwdItem(p, item % numQ, p.numQBlocks - 1 - item / numQ); }, between);
}

}  // namespace attn
}  // namespace attnccl
