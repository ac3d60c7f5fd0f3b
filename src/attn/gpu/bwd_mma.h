// Backward attention tile on tensor cores (mma.sync m16n8k16; sm_80 and newer),
// FlashAttention-2 style: P is recomputed from the final LSE, dK and dV stay in registers for a
// block of keys, dQ goes out with fp32 atomics. Same tile contract as the forward kernel.
//
// Tiling: one thread block per (kBc keys, key/value head). Warp w owns key rows 16w..16w+15.
// The block walks every query head of its GQA group and every query block of kBr queries that
// can see its keys, and per query block computes, all transposed (keys as rows):
//
//   S^T  = K Q^T          (16 x kBr per warp)      P^T = exp2(S^T scale log2e - LSE log2e)
//   dV  += P^T dO                                  dP^T = V dO^T
//   dS^T = P^T * (dP^T - Delta)                    dK  += dS^T Q
//   dS^T -> shared memory (16-bit), sync, then warp w:  dQ[16w..16w+15] += dS K  (atomics)
//
// Keeping keys as rows makes P^T and dS^T accumulators that are directly the A operands of the
// dV and dK products; only dQ needs dS transposed back, which ldmatrix.trans does from shared
// memory. All 16-bit tiles use the XOR swizzle of mma_common.h.
#pragma once

#include "attn/gpu/mma_common.h"

namespace attnccl {
namespace attn {
namespace gpu {

template <class Cfg, class T>
ATTN_DEV void bwdMmaTile(const BwdParams& p, char* smem) {
  constexpr int kD = Cfg::kD, kBr = Cfg::kBr, kBc = Cfg::kBc, kThreads = Cfg::kThreads;
  constexpr int kDT = kD / 8;   // n-tiles over the head dim
  constexpr int kKS = kD / 16;  // k-steps over the head dim
  constexpr int kNQ = kBr / 8;  // n-tiles over the queries
  const int tid = threadIdxX(), warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const int hk = blockIdxY();
  const int D = p.headDim;
  const int64_t k0 = static_cast<int64_t>(blockIdxX()) * kBc;
  const int64_t kEnd = minOf<int64_t>(k0 + kBc, p.kt.n);

  uint16_t* sK = reinterpret_cast<uint16_t*>(smem);
  uint16_t* sV = sK + kBc * kD;
  uint16_t* sQ = sV + kBc * kD;
  uint16_t* sdO = sQ + kBr * kD;
  uint16_t* sdS = sdO + kBr * kD;  // [kBc][kBr]
  float* sLse = reinterpret_cast<float*>(sdS + kBc * kBr);
  float* sDelta = sLse + kBr;
  int64_t* sQpos = reinterpret_cast<int64_t*>(sDelta + kBr);
  int64_t* sQdoc = sQpos + kBr;

  const BlockSpan ks = spanOf(p.kt, k0, kEnd);
  int64_t keyPos[2], keyDoc[2];
  ATTN_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    const int64_t row = k0 + warp * 16 + g + 8 * rr;
    const bool ok = row < p.kt.n;
    keyPos[rr] = ok ? tokPos(p.kt, row) : 0;
    keyDoc[rr] = ok ? tokDoc(p.kt, row) : kNoKeyDoc;
  }

  const uint16_t* gk = static_cast<const uint16_t*>(p.k) + static_cast<int64_t>(hk) * D;
  const uint16_t* gv = static_cast<const uint16_t*>(p.v) + static_cast<int64_t>(hk) * D;
  loadTile16<kBc, kD, kThreads>(sK, gk, p.ldkv, k0, p.kt.n, D);
  loadTile16<kBc, kD, kThreads>(sV, gv, p.ldkv, k0, p.kt.n, D);
  cpAsyncCommit();

  float dK[kDT][4], dV[kDT][4];
  ATTN_UNROLL
  for (int dt = 0; dt < kDT; ++dt)
    ATTN_UNROLL
    for (int e = 0; e < 4; ++e) dK[dt][e] = dV[dt][e] = 0.f;

  // Local query heads whose key/value head is hk.
  const int gBegin = (hk + p.heads.kvFirst) * p.heads.group - p.heads.qFirst;
  const int hBegin = maxOf(0, gBegin), hEnd = minOf(p.heads.numQ, gBegin + p.heads.group);
  const int nqb = static_cast<int>((p.qt.n + kBr - 1) / kBr);
  for (int hq = hBegin; hq < hEnd; ++hq) {
    const uint16_t* gq = static_cast<const uint16_t*>(p.q) + static_cast<int64_t>(hq) * D;
    const uint16_t* gdo = static_cast<const uint16_t*>(p.dout) + static_cast<int64_t>(hq) * D;
    for (int i = 0; i < nqb; ++i) {
      const int64_t qb0 = static_cast<int64_t>(i) * kBr;
      const int cls = classifyTile(p.mask, spanOf(p.qt, qb0, minOf<int64_t>(qb0 + kBr, p.qt.n)), ks);
      if (cls == kTileNone) continue;
      syncThreads();  // the previous query block's readers of sQ, sdO, sdS and the metadata are done
      loadTile16<kBr, kD, kThreads>(sQ, gq, p.ldq, qb0, p.qt.n, D);
      loadTile16<kBr, kD, kThreads>(sdO, gdo, p.ldq, qb0, p.qt.n, D);
      cpAsyncCommit();
      for (int r = tid; r < kBr; r += kThreads) {
        const int64_t row = qb0 + r;
        const bool ok = row < p.qt.n;
        const float l = ok ? p.lse[hq * p.ldlse + row] : negInf();
        // A query with nothing visible anywhere (LSE -inf) has P = 0: +inf makes exp2 give 0.
        sLse[r] = l > negInf() ? l * kLog2e : -negInf();
        sDelta[r] = ok ? p.delta[hq * p.ldlse + row] : 0.f;
        sQpos[r] = ok ? tokPos(p.qt, row) : 0;
        sQdoc[r] = ok ? tokDoc(p.qt, row) : kNoQueryDoc;
      }
      cpAsyncWait<0>();
      syncThreads();
      const bool needMask = cls != kTileFull || k0 + kBc > p.kt.n || qb0 + kBr > p.qt.n;

      // S^T = K Q^T, then P^T.
      float st[kNQ][4];
      ATTN_UNROLL
      for (int nt = 0; nt < kNQ; ++nt)
        ATTN_UNROLL
        for (int e = 0; e < 4; ++e) st[nt][e] = 0.f;
      ATTN_UNROLL
      for (int kq = 0; kq < kKS; ++kq) {
        uint32_t a[4];
        ldsmX4(a, rowA<kD>(sK, warp * 16, 2 * kq, lane));
        ATTN_UNROLL
        for (int np = 0; np < kNQ / 2; ++np) {
          uint32_t b[4];
          ldsmX4(b, rowBnk<kD>(sQ, 16 * np, 2 * kq, lane));
          mma16816<T>(st[2 * np], a, b[0], b[1]);
          mma16816<T>(st[2 * np + 1], a, b[2], b[3]);
        }
      }
      ATTN_UNROLL
      for (int nt = 0; nt < kNQ; ++nt) {
        ATTN_UNROLL
        for (int e = 0; e < 4; ++e) {
          const int col = nt * 8 + 2 * c + (e & 1);
          const int rr = e >> 1;
          const bool vis = !needMask || visiblePair(p.mask, sQpos[col], sQdoc[col], keyPos[rr], keyDoc[rr]);
          st[nt][e] = vis ? fastExp2(st[nt][e] * p.scaleLog2 - sLse[col]) : 0.f;
        }
      }

      // dV += P^T dO.
      ATTN_UNROLL
      for (int kk = 0; kk < kBr / 16; ++kk) {
        uint32_t a[4];
        accToA<T>(a, st[2 * kk], st[2 * kk + 1]);
        ATTN_UNROLL
        for (int dp = 0; dp < kD / 16; ++dp) {
          uint32_t b[4];
          ldsmX4T(b, rowBkn<kD>(sdO, 16 * kk, 2 * dp, lane));
          mma16816<T>(dV[2 * dp], a, b[0], b[1]);
          mma16816<T>(dV[2 * dp + 1], a, b[2], b[3]);
        }
      }

      // dP^T = V dO^T, then dS^T = P^T (dP^T - Delta) in place of P^T.
      {
        float dpt[kNQ][4];
        ATTN_UNROLL
        for (int nt = 0; nt < kNQ; ++nt)
          ATTN_UNROLL
          for (int e = 0; e < 4; ++e) dpt[nt][e] = 0.f;
        ATTN_UNROLL
        for (int kq = 0; kq < kKS; ++kq) {
          uint32_t a[4];
          ldsmX4(a, rowA<kD>(sV, warp * 16, 2 * kq, lane));
          ATTN_UNROLL
          for (int np = 0; np < kNQ / 2; ++np) {
            uint32_t b[4];
            ldsmX4(b, rowBnk<kD>(sdO, 16 * np, 2 * kq, lane));
            mma16816<T>(dpt[2 * np], a, b[0], b[1]);
            mma16816<T>(dpt[2 * np + 1], a, b[2], b[3]);
          }
        }
        ATTN_UNROLL
        for (int nt = 0; nt < kNQ; ++nt)
          ATTN_UNROLL
          for (int e = 0; e < 4; ++e) st[nt][e] *= dpt[nt][e] - sDelta[nt * 8 + 2 * c + (e & 1)];
      }

      // dK += dS^T Q.
      ATTN_UNROLL
      for (int kk = 0; kk < kBr / 16; ++kk) {
        uint32_t a[4];
        accToA<T>(a, st[2 * kk], st[2 * kk + 1]);
        ATTN_UNROLL
        for (int dp = 0; dp < kD / 16; ++dp) {
          uint32_t b[4];
          ldsmX4T(b, rowBkn<kD>(sQ, 16 * kk, 2 * dp, lane));
          mma16816<T>(dK[2 * dp], a, b[0], b[1]);
          mma16816<T>(dK[2 * dp + 1], a, b[2], b[3]);
        }
      }

      // dS^T to shared memory: row = key, column = query.
      ATTN_UNROLL
      for (int nt = 0; nt < kNQ; ++nt) {
        ATTN_UNROLL
        for (int rr = 0; rr < 2; ++rr) {
          const int row = warp * 16 + g + 8 * rr;
          *reinterpret_cast<uint32_t*>(tileAt<kBr>(sdS, row, nt) + 2 * c) =
              packPair<T>(st[nt][2 * rr], st[nt][2 * rr + 1]);
        }
      }
      syncThreads();

      // dQ rows 16w..16w+15 of this query block: A = dS (queries x keys) read transposed from
      // dS^T, B = K [keys][d]. One 16-column slice of dQ at a time keeps few registers live.
      uint32_t af[kBc / 16][4];
      ATTN_UNROLL
      for (int kk = 0; kk < kBc / 16; ++kk) ldsmX4T(af[kk], rowBnk<kBr>(sdS, 16 * kk, 2 * warp, lane));
      ATTN_UNROLL
      for (int dp = 0; dp < kD / 16; ++dp) {
        float dq2[2][4];
        ATTN_UNROLL
        for (int x = 0; x < 2; ++x)
          ATTN_UNROLL
          for (int e = 0; e < 4; ++e) dq2[x][e] = 0.f;
        ATTN_UNROLL
        for (int kk = 0; kk < kBc / 16; ++kk) {
          uint32_t b[4];
          ldsmX4T(b, rowBkn<kD>(sK, 16 * kk, 2 * dp, lane));
          mma16816<T>(dq2[0], af[kk], b[0], b[1]);
          mma16816<T>(dq2[1], af[kk], b[2], b[3]);
        }
        ATTN_UNROLL
        for (int x = 0; x < 2; ++x) {
          const int d = (2 * dp + x) * 8 + 2 * c;
          if (d >= D) continue;
          ATTN_UNROLL
          for (int rr = 0; rr < 2; ++rr) {
            const int64_t row = qb0 + warp * 16 + g + 8 * rr;
            if (row >= p.qt.n) continue;
            float* dst = p.dq + row * p.lddq + static_cast<int64_t>(hq) * D + d;
            atomicAddF(dst, p.scale * dq2[x][2 * rr]);
            atomicAddF(dst + 1, p.scale * dq2[x][2 * rr + 1]);
          }
        }
      }
    }
  }

  cpAsyncWait<0>();  // no copy outlives the block (when no query block was visible)

  // dK (scaled) and dV into the fp32 accumulators: this block owns these rows and this head.
  ATTN_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    const int64_t row = k0 + warp * 16 + g + 8 * rr;
    if (row >= p.kt.n) continue;
    float* dk = p.dk + row * p.lddkv + static_cast<int64_t>(hk) * D;
    float* dv = p.dv + row * p.lddkv + static_cast<int64_t>(hk) * D;
    ATTN_UNROLL
    for (int dt = 0; dt < kDT; ++dt) {
      const int d = dt * 8 + 2 * c;
      if (d >= D) continue;
      dk[d] += p.scale * dK[dt][2 * rr];
      dk[d + 1] += p.scale * dK[dt][2 * rr + 1];
      dv[d] += dV[dt][2 * rr];
      dv[d + 1] += dV[dt][2 * rr + 1];
    }
  }
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
