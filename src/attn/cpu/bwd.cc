// Backward tile on the CPU (attn/tile.h), FlashAttention-2 style: P is recomputed from the
// given LSE, dS = P * (dP - Delta) with Delta = rowsum(dO * O) given, and dQ, dK, dV grow in
// fp32. Five GEMMs per visible block pair, through the GEMM layer (cpu/gemm.h):
//   S = Q K^T,  dV += P^T dO,  dP = dO V^T,  dK += scale dS^T Q,  dQ += scale dS K.
// Where the packed kernels run (cpu/packed_gemm.h, fp32 on the AVX2 machines), the three that
// read K or V as their second operand (S, dP, dQ) take K and V packed once per tile instead;
// dV and dK, whose second operands dO and Q change with every query block, stay on the layer.
// Work items are (key/value head, key block): an item owns its rows of dK and dV outright and
// loops over the query heads of its group and the query blocks. dQ rows are shared by all key
// blocks, so an item computes its dQ contribution into private scratch and adds it under the
// lock of that (query head, query block): no race, short critical sections. The order in which
// key blocks add into one dQ row varies from run to run (fp32 rounding only), unless a
// deterministic backward is asked for (BwdTileArgs::deterministic or ATTNCCL_DETERMINISTIC=1):
// then each (query head, query block) takes the key blocks' contributions in key-block order,
// a turnstile per dQ block (see bwdItem), and the result is bit-identical from run to run.
// On the bf16 path Q, dO, K, V stay bf16 and P and dS are rounded to bf16 for the products
// that take them (fp32 accumulation, fp32 softmax pieces).
#include <algorithm>
#include <atomic>
#include <thread>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "attn/cpu/gemm.h"
#include "attn/cpu/mask.h"
#include "attn/cpu/packed_gemm.h"
#include "attn/cpu/rowops.h"
#include "attn/cpu/staging.h"
#include "attn/tile.h"
#include "attn/tile_clock.h"
#include "core/params.h"

namespace attnccl {
namespace attn {

namespace {

// Keys per work item and query rows per step (measured: src/attn/cpu/README.md).
constexpr int64_t kBwdBlockK = 256;
constexpr int64_t kBwdBlockQ = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kInf = std::numeric_limits<float>::infinity();

struct BwdPlan {
  const BwdTileArgs* a;
  cpu::HeadMajor q, dout, k, v;
  cpu::Elem elem;
  int64_t blockK, numQBlocks, numKBlocks;
  std::vector<std::vector<int>> qHeadsOf;  // local query heads of each local kv head
  std::vector<std::mutex>* dqLocks;        // one per (query head, query block)
  // Deterministic mode: per (query head, query block), the key block whose turn it is to add.
  std::atomic<int64_t>* dqTurn = nullptr;
  // The packed kernels (fp32 only; null: the GEMM layer for all five products) and each KV
  // head's panels: K and V as key panels (S = Q K^T, dP = dO V^T), K as value panels (dQ += dS K).
  const cpu::PackedGemmOps* packed = nullptr;
  const float *kKeys = nullptr, *vKeys = nullptr, *kValues = nullptr;
  int64_t nPad = 0;
};

// One (query head, query block) against the item's key block; dk, dv are the item's fp32
// [k1-k0][D] accumulators.
// Deterministic mode: waits until key block kb may add into dQ block (h, qb) (all smaller key
// blocks have passed it), runs `add`, and passes the turn on. Items are handed out in index order
// (ThreadPool), key block by key block, and every item visits the dQ blocks in the same order, so
// the oldest running item never waits: no deadlock, and the waits are one block's work at most.
template <class Add>
void inTurn(const BwdPlan& p, int h, int64_t qb, int64_t kb, const Add& add) {
  std::atomic<int64_t>& turn = p.dqTurn[h * p.numQBlocks + qb];
  while (turn.load(std::memory_order_acquire) != kb) std::this_thread::yield();
  add();
  turn.store(kb + 1, std::memory_order_release);
}

// P of rows [r0, r1) from their scores (t.s, `width` columns from key cb): exp2(s - LSE) inside
// each row's visible keys, zero outside them and for rows that see nothing. clearScores zeroes
// the scores as they are read (the GEMM layer accumulates into them).
void recomputeP(cpu::ThreadScratch& t, const cpu::RowOps& ops, int64_t r0, int64_t r1, int64_t cb, int64_t width,
                const float* lse, bool clearScores) {
  for (int64_t i = r0; i < r1; ++i) {
    float* row = t.s.data() + (i - r0) * width;
    float* prow = t.p.data() + (i - r0) * width;
    const int64_t c0 = t.lo[i] - cb, c1 = t.hi[i] - cb;
    if (c0 >= c1 || lse[i] == -kInf) {
      std::fill(prow, prow + width, 0.f);
    } else {
      ops.exp2Sub(row + c0, prow + c0, c1 - c0, lse[i] * kLog2e);
      std::fill(prow, prow + c0, 0.f);
      std::fill(prow + c1, prow + width, 0.f);
    }
    if (clearScores) std::fill(row, row + width, 0.f);
  }
}

// The five products of one row chunk on the packed kernels (fp32): S and dP over whole key
// panels, the chunk's columns [cb, ce) widened to [cbA, ceA) at panel boundaries (the extra
// columns lie outside every row's visible range, so their P and dS are zero); dV and dK through
// the GEMM layer over the chunk's own columns only (their rows of the item's accumulators).
// s, p, dp are overwritten here (the GEMM layer's zeroed-buffer contract is not needed).
void packedChunk(const BwdPlan& p, cpu::ThreadScratch& t, const cpu::RowOps& ops, int kh, int64_t r0, int64_t r1,
                 int64_t cb, int64_t ce, const float* qp, const float* dop, const float* lse, const float* delta,
                 float* dk, float* dv, float* dq) {
  const BwdTileArgs& a = *p.a;
  const int64_t D = a.headDim, nrows = r1 - r0, ncols = ce - cb;
  const int64_t cbA = cb / cpu::kPanel * cpu::kPanel, ceA = cpu::panelPad(ce), nc = ceA - cbA;
  const int64_t panel0 = cbA / cpu::kPanel, npanels = nc / cpu::kPanel;
  float* s = t.s.data();
  float* pm = t.p.data();
  float* dp = t.dp.data();
  p.packed->scores(qp, D, nrows, p.kKeys + kh * p.nPad * D, D, panel0, npanels, a.scale * kLog2e, s, nc);
  recomputeP(t, ops, r0, r1, cbA, nc, lse, false);
  const int64_t skip = cb - cbA;  // the chunk's first column within the widened rows
  cpu::gemmAcc(p.elem, true, false, ncols, D, nrows, 1.f, pm + skip, nc, dop, D, dv, D);
  p.packed->scores(dop, D, nrows, p.vKeys + kh * p.nPad * D, D, panel0, npanels, 1.f, dp, nc);
  for (int64_t i = r0; i < r1; ++i) ops.dsoftmax(pm + (i - r0) * nc, dp + (i - r0) * nc, nc, delta[i]);
  cpu::gemmAcc(p.elem, true, false, ncols, D, nrows, a.scale, pm + skip, nc, qp, D, dk, D);
  p.packed->pv(pm, nc, nrows, p.kValues + kh * p.nPad * cpu::panelPad(D), p.nPad, cbA, nc, D, a.scale, dq, D);
}

void bwdBlock(const BwdPlan& p, int kh, int64_t k0, int64_t k1, int64_t kb, int h, int64_t qb, float* dkBlock,
              float* dvBlock) {
  const BwdTileArgs& a = *p.a;
  const cpu::RowOps& ops = cpu::rowOps();
  const int64_t D = a.headDim;
  const int64_t q0 = qb * kBwdBlockQ, q1 = std::min(a.qTok.n, q0 + kBwdBlockQ);
  cpu::ThreadScratch& t = cpu::threadScratch();
  t.lo.resize(q1 - q0);
  t.hi.resize(q1 - q0);
  cpu::BlockUse use;
  if (!cpu::blockUse(a.mask, a.qTok, q0, q1, a.kTok, k0, k1, t.lo.data(), t.hi.data(), &use)) {
    if (p.dqTurn) inTurn(p, h, qb, kb, [] {});  // nothing to add, but the turn passes through
    return;
  }
  // s, dp and dq are zero on entry and left zero (see bwdItem); p is overwritten. dq holds
  // the block's rows (relative to q0) until they are added to the shared dQ at the end.
  float* s = t.s.data();
  float* pm = t.p.data();
  float* dp = t.dp.data();
  float* dq = t.dq.data();
  const float* lse = a.lse + h * a.ldlse + q0;
  const float* delta = a.delta + h * a.ldlse + q0;
  cpu::forEachRowChunk(use, t.lo.data(), t.hi.data(), [&](int64_t r0, int64_t r1, int64_t cb, int64_t ce) {
    const int64_t nrows = r1 - r0, ncols = ce - cb;
    const void* qp = p.q.row(h, q0 + r0);
    const void* dop = p.dout.row(h, q0 + r0);
    const void* kp = p.k.row(kh, cb);
    const void* vp = p.v.row(kh, cb);
    const bool bf = p.elem == cpu::Elem::Bf16;
    // The bf16 copy of P (then dS) for the products that take it.
    auto operand = [&]() -> const void* {
      if (!bf) return pm;
      ops.fromFloat(attncclBfloat16, pm, t.ph.data(), nrows * ncols);
      return t.ph.data();
    };
    float* dk = dkBlock + (cb - k0) * D;
    float* dv = dvBlock + (cb - k0) * D;
    if (p.packed) {
      packedChunk(p, t, ops, kh, r0, r1, cb, ce, static_cast<const float*>(qp), static_cast<const float*>(dop), lse,
                  delta, dk, dv, dq + r0 * D);
      return;
    }
    // P, recomputed from the final LSE; zero outside each row's visible range.
    cpu::gemmAcc(p.elem, false, true, nrows, ncols, D, a.scale * kLog2e, qp, D, kp, D, s, ncols);
    recomputeP(t, ops, r0, r1, cb, ncols, lse, true);
    cpu::gemmAcc(p.elem, true, false, ncols, D, nrows, 1.f, operand(), ncols, dop, D, dv, D);
    cpu::gemmAcc(p.elem, false, true, nrows, ncols, D, 1.f, dop, D, vp, D, dp, ncols);
    for (int64_t i = r0; i < r1; ++i) ops.dsoftmax(pm + (i - r0) * ncols, dp + (i - r0) * ncols, ncols, delta[i]);
    const void* ds = operand();
    cpu::gemmAcc(p.elem, true, false, ncols, D, nrows, a.scale, ds, ncols, qp, D, dk, D);
    cpu::gemmAcc(p.elem, false, false, nrows, D, ncols, a.scale, ds, ncols, kp, D, dq + r0 * D, D);
  });
  auto addDq = [&] {
    for (int64_t i = use.r0; i < use.r1; ++i) ops.add(a.dq + (q0 + i) * a.lddq + h * D, dq + i * D, D);
  };
  if (p.dqTurn) {
    inTurn(p, h, qb, kb, addDq);
  } else {
    std::lock_guard<std::mutex> lock((*p.dqLocks)[static_cast<size_t>(h * p.numQBlocks + qb)]);
    addDq();
  }
  std::fill(dq + use.r0 * D, dq + use.r1 * D, 0.f);
}

void bwdItem(const BwdPlan& p, int kh, int64_t kb) {
  const BwdTileArgs& a = *p.a;
  const int64_t D = a.headDim;
  const int64_t k0 = kb * p.blockK, k1 = std::min(a.kTok.n, k0 + p.blockK);
  cpu::ThreadScratch& t = cpu::threadScratch();
  t.dk.assign((k1 - k0) * D, 0.f);
  t.dv.assign((k1 - k0) * D, 0.f);
  // GEMM outputs accumulate into zeroed buffers (beta = 1) that every block clears again as it
  // consumes them: cheaper than the BLAS's own clearing pass for beta = 0.
  // The packed chunks widen their columns to whole panels: up to panelPad(k1 - k0) of them.
  const int64_t cols = p.packed ? cpu::panelPad(k1 - k0) : k1 - k0;
  t.s.assign(kBwdBlockQ * cols, 0.f);
  t.dp.assign(kBwdBlockQ * cols, 0.f);
  t.dq.assign(kBwdBlockQ * D, 0.f);
  t.p.resize(kBwdBlockQ * cols);
  if (p.elem == cpu::Elem::Bf16) t.ph.resize(kBwdBlockQ * (k1 - k0));
  for (int h : p.qHeadsOf[kh])
    for (int64_t qb = 0; qb < p.numQBlocks; ++qb) bwdBlock(p, kh, k0, k1, kb, h, qb, t.dk.data(), t.dv.data());
  // The item owns these rows of dK and dV: add its sums without a lock.
  const cpu::RowOps& ops = cpu::rowOps();
  for (int64_t j = k0; j < k1; ++j) {
    ops.add(a.dk + j * a.lddkv + kh * D, t.dk.data() + (j - k0) * D, D);
    ops.add(a.dv + j * a.lddkv + kh * D, t.dv.data() + (j - k0) * D, D);
  }
}

// K and V of every KV head as the packed kernels' panels (cpu/packed_gemm.h), once per tile, in
// parallel over heads and the three layouts; the GEMM layer would pack them again for every
// query block of every item.
void packKv(BwdPlan& p, cpu::TileStaging& staging, ThreadPool& pool, const std::function<void()>& between) {
  const BwdTileArgs& a = *p.a;
  const int64_t D = a.headDim, n = a.kTok.n, heads = a.heads.numKV;
  const cpu::PackedGemmOps* ops = cpu::packedGemm();
  p.nPad = cpu::panelPad(n);
  staging.kp.resize(static_cast<size_t>(heads * p.nPad * D));
  staging.vp.resize(static_cast<size_t>(heads * p.nPad * D));
  staging.kv.resize(static_cast<size_t>(heads * p.nPad * cpu::panelPad(D)));
  float* kKeys = staging.kp.data();
  float* vKeys = staging.vp.data();
  float* kValues = staging.kv.data();
  pool.run(
      3 * heads,
      [&](int64_t item, int) {
        const int64_t h = item / 3;
        const float* k = static_cast<const float*>(p.k.row(static_cast<int>(h), 0));
        const float* v = static_cast<const float*>(p.v.row(static_cast<int>(h), 0));
        switch (item % 3) {
          case 0: ops->packKeys(k, n, D, kKeys + h * p.nPad * D); break;
          case 1: ops->packKeys(v, n, D, vKeys + h * p.nPad * D); break;
          default: ops->packValues(k, n, D, kValues + h * p.nPad * cpu::panelPad(D)); break;
        }
      },
      between);
  p.kKeys = kKeys;
  p.vKeys = vKeys;
  p.kValues = kValues;
  p.packed = ops;
}

bool deterministicFromEnv() {
  static const bool on = paramInt(Param::Deterministic) == 1;
  return on;
}

}  // namespace

void bwdTile(const BwdTileArgs& a, ThreadPool& pool, const std::function<void()>& between) {
  TileClock clock;  // per-thread compute time (attn/tile_clock.h)
  if (a.qTok.n <= 0 || a.kTok.n <= 0 || a.heads.numQ <= 0 || a.heads.numKV <= 0) return;
  cpu::TileStaging& staging = cpu::callerStaging();
  BwdPlan p;
  p.a = &a;
  const bool bf = a.dtype == attncclBfloat16 && cpu::gemmPath().bf16Native;
  p.elem = bf ? cpu::Elem::Bf16 : cpu::Elem::F32;
  p.q = cpu::stageHeads(a.dtype, a.q, a.ldq, a.hsq, a.qTok.n, a.heads.numQ, a.headDim, staging.q, pool, between, bf);
  p.dout = cpu::stageHeads(a.dtype, a.dout, a.lddout ? a.lddout : a.ldq, a.hsdout, a.qTok.n, a.heads.numQ, a.headDim,
                           staging.dout, pool, between, bf);
  p.k = cpu::stageHeads(a.dtype, a.k, a.ldkv, a.hsk, a.kTok.n, a.heads.numKV, a.headDim, staging.k, pool, between,
                        bf);
  p.v = cpu::stageHeads(a.dtype, a.v, a.ldv ? a.ldv : a.ldkv, a.hsv, a.kTok.n, a.heads.numKV, a.headDim, staging.v,
                        pool, between, bf);
  if (p.elem == cpu::Elem::F32 && cpu::bwdPackedNow()) packKv(p, staging, pool, between);
  p.qHeadsOf.assign(a.heads.numKV, {});
  for (int h = 0; h < a.heads.numQ; ++h) {
    int kh = a.heads.kvOf(h);
    if (kh >= 0 && kh < a.heads.numKV) p.qHeadsOf[kh].push_back(h);
  }
  // Smaller key blocks when there would be too few items to feed the pool.
  p.blockK = kBwdBlockK;
  while (p.blockK > 16 && a.heads.numKV * ((a.kTok.n + p.blockK - 1) / p.blockK) < 4 * pool.size()) p.blockK /= 2;
  p.numKBlocks = (a.kTok.n + p.blockK - 1) / p.blockK;
  p.numQBlocks = (a.qTok.n + kBwdBlockQ - 1) / kBwdBlockQ;
  std::vector<std::mutex> locks(static_cast<size_t>(a.heads.numQ * p.numQBlocks));
  p.dqLocks = &locks;
  std::unique_ptr<std::atomic<int64_t>[]> turns;
  if (a.deterministic || deterministicFromEnv()) {
    const size_t n = static_cast<size_t>(a.heads.numQ * p.numQBlocks);
    turns.reset(new std::atomic<int64_t>[n]);
    for (size_t i = 0; i < n; ++i) turns[i].store(0, std::memory_order_relaxed);
    p.dqTurn = turns.get();
  }
  const int numKV = a.heads.numKV;
  pool.run(numKV * p.numKBlocks, [&](int64_t item, int) { bwdItem(p, static_cast<int>(item % numKV), item / numKV); },
           between);
}

}  // namespace attn
}  // namespace attnccl
