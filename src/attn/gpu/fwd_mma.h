// Forward attention tile on tensor cores (mma.sync m16n8k16, bf16/fp16 inputs, fp32
// accumulation; sm_80 and newer), FlashAttention-2 style, with the tile contract of
// attn/gpu/tile_params.h: global positions and documents per token, causal/window/document
// masks, key blocks no query sees skipped, and an epilogue that writes the final output or
// merges an fp32 partial (O, LSE) into accumulators.
//
// Tiling: one thread block per (kBr queries, query head). Warp w owns query rows 16w..16w+15 and
// keeps its Q fragments, its O accumulator (16 x kD fp32) and its row statistics in registers.
//
//                  key block j (kBc keys)
//               +----------------------+
//   warp 0 (16) | S = Q K^T  -> P      |   S, P: 16 x kBc per warp, registers only
//   warp 1 (16) |   online softmax     |   O += P V   (P re-used as the A operand)
//   ...         +----------------------+
//
// Pipeline per visible key block j (one K and one V buffer, cp.async groups):
//   wait K_j, sync | issue V_j | S = Q K_j^T, mask, softmax | sync | issue K_next, wait V_j, sync |
//   O += P V_j
// V_j streams in under the S computation, K_next under P V. Query blocks run in reverse order so
// that under a causal mask the longest ones start first.
#pragma once

#include "attn/gpu/mma_common.h"

namespace attnccl {
namespace attn {
namespace gpu {

template <class Cfg, class T>
ATTN_DEV void fwdMmaTile(const FwdParams& p, char* smem) {
  constexpr int kD = Cfg::kD, kBr = Cfg::kBr, kBc = Cfg::kBc, kThreads = Cfg::kThreads;
  constexpr int kNT = kBc / 8;  // n-tiles of S
  constexpr int kDT = kD / 8;   // n-tiles of O
  constexpr int kKS = kD / 16;  // k-steps of Q K^T
  const int tid = threadIdxX(), warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const int h = blockIdxY();
  const int hk = kvHeadOf(p.heads, h);
  const int D = p.headDim;
  const int64_t q0 = static_cast<int64_t>(gridDimX() - 1 - blockIdxX()) * kBr;
  const int64_t qEnd = minOf<int64_t>(q0 + kBr, p.qt.n);

  uint16_t* sQ = reinterpret_cast<uint16_t*>(smem);
  uint16_t* sK = sQ + kBr * kD;
  uint16_t* sV = sK + kBc * kD;
  int64_t* sKpos = reinterpret_cast<int64_t*>(sV + kBc * kD);
  int64_t* sKdoc = sKpos + kBc;
  const uint16_t* gq = static_cast<const uint16_t*>(p.q) + static_cast<int64_t>(h) * D;
  const uint16_t* gk = static_cast<const uint16_t*>(p.k) + static_cast<int64_t>(hk) * D;
  const uint16_t* gv = static_cast<const uint16_t*>(p.v) + static_cast<int64_t>(hk) * D;

  const BlockSpan qs = spanOf(p.qt, q0, qEnd);
  const int nkb = static_cast<int>((p.kt.n + kBc - 1) / kBc);
  auto classOf = [&](int j) {
    const int64_t b = static_cast<int64_t>(j) * kBc;
    return classifyTile(p.mask, qs, spanOf(p.kt, b, minOf<int64_t>(b + kBc, p.kt.n)));
  };
  auto nextBlock = [&](int j) {
    while (j < nkb && classOf(j) == kTileNone) ++j;
    return j;
  };

  // This thread's two query rows (g and g + 8 of its warp's 16).
  int64_t rowPos[2], rowDoc[2];
  bool rowOk[2];
  ATTN_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    const int64_t row = q0 + warp * 16 + g + 8 * rr;
    rowOk[rr] = row < p.qt.n;
    rowPos[rr] = rowOk[rr] ? tokPos(p.qt, row) : 0;
    rowDoc[rr] = rowOk[rr] ? tokDoc(p.qt, row) : kNoQueryDoc;
  }

  float acc[kDT][4];
  ATTN_UNROLL
  for (int dt = 0; dt < kDT; ++dt)
    ATTN_UNROLL
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;
  float mRow[2] = {negInf(), negInf()};  // running max of the row, log2 domain
  float lRow[2] = {0.f, 0.f};            // this thread's share of the running sum
  uint32_t qf[kKS][4];

  int j = nextBlock(0);
  if (j < nkb) {
    loadTile16<kBr, kD, kThreads>(sQ, gq, p.ldq, q0, p.qt.n, D);
    loadTile16<kBc, kD, kThreads>(sK, gk, p.ldkv, static_cast<int64_t>(j) * kBc, p.kt.n, D);
    loadMeta<kBc, kThreads>(sKpos, sKdoc, p.kt, static_cast<int64_t>(j) * kBc, kNoKeyDoc);
    cpAsyncCommit();
  }
  bool haveQ = false;
  while (j < nkb) {
    cpAsyncWait<0>();
    syncThreads();
    if (!haveQ) {
      ATTN_UNROLL
      for (int ks = 0; ks < kKS; ++ks) ldsmX4(qf[ks], rowA<kD>(sQ, warp * 16, 2 * ks, lane));
      haveQ = true;
    }
    const int64_t k0 = static_cast<int64_t>(j) * kBc;
    loadTile16<kBc, kD, kThreads>(sV, gv, p.ldkv, k0, p.kt.n, D);
    cpAsyncCommit();

    float s[kNT][4];
    ATTN_UNROLL
    for (int nt = 0; nt < kNT; ++nt)
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
    ATTN_UNROLL
    for (int ks = 0; ks < kKS; ++ks) {
      ATTN_UNROLL
      for (int np = 0; np < kNT / 2; ++np) {
        uint32_t b[4];
        ldsmX4(b, rowBnk<kD>(sK, 16 * np, 2 * ks, lane));
        mma16816<T>(s[2 * np], qf[ks], b[0], b[1]);
        mma16816<T>(s[2 * np + 1], qf[ks], b[2], b[3]);
      }
    }

    // Scale into the log2 domain; mask partly visible blocks and keys past the end.
    const bool needMask = classOf(j) != kTileFull || k0 + kBc > p.kt.n;
    ATTN_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * p.scaleLog2;
        if (needMask) {
          const int col = nt * 8 + 2 * c + (e & 1);
          const int rr = e >> 1;
          if (!visiblePair(p.mask, rowPos[rr], rowDoc[rr], sKpos[col], sKdoc[col])) x = negInf();
        }
        s[nt][e] = x;
      }
    }

    // Online softmax: row max over the quad of lanes sharing a row, rescale O and the sum.
    ATTN_UNROLL
    for (int rr = 0; rr < 2; ++rr) {
      float mx = negInf();
      ATTN_UNROLL
      for (int nt = 0; nt < kNT; ++nt) mx = maxOf(mx, maxOf(s[nt][2 * rr], s[nt][2 * rr + 1]));
      mx = maxOf(mx, shflXor(mx, 1));
      mx = maxOf(mx, shflXor(mx, 2));
      const float mNew = maxOf(mRow[rr], mx);
      const float mUse = mNew == negInf() ? 0.f : mNew;
      const float alpha = fastExp2(mRow[rr] - mUse);
      mRow[rr] = mNew;
      float sum = 0.f;
      ATTN_UNROLL
      for (int nt = 0; nt < kNT; ++nt) {
        ATTN_UNROLL
        for (int e = 2 * rr; e < 2 * rr + 2; ++e) {
          const float pv = fastExp2(s[nt][e] - mUse);
          s[nt][e] = pv;
          sum += pv;
        }
      }
      lRow[rr] = lRow[rr] * alpha + sum;
      ATTN_UNROLL
      for (int dt = 0; dt < kDT; ++dt) {
        acc[dt][2 * rr] *= alpha;
        acc[dt][2 * rr + 1] *= alpha;
      }
    }

    const int jn = nextBlock(j + 1);
    syncThreads();  // every warp is done with sK and the key metadata
    if (jn < nkb) {
      loadTile16<kBc, kD, kThreads>(sK, gk, p.ldkv, static_cast<int64_t>(jn) * kBc, p.kt.n, D);
      loadMeta<kBc, kThreads>(sKpos, sKdoc, p.kt, static_cast<int64_t>(jn) * kBc, kNoKeyDoc);
      cpAsyncCommit();
      cpAsyncWait<1>();  // V_j (older group) has landed
    } else {
      cpAsyncWait<0>();
    }
    syncThreads();

    ATTN_UNROLL
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t a[4];
      accToA<T>(a, s[2 * kk], s[2 * kk + 1]);
      ATTN_UNROLL
      for (int dp = 0; dp < kD / 16; ++dp) {
        uint32_t b[4];
        ldsmX4T(b, rowBkn<kD>(sV, 16 * kk, 2 * dp, lane));
        mma16816<T>(acc[2 * dp], a, b[0], b[1]);
        mma16816<T>(acc[2 * dp + 1], a, b[2], b[3]);
      }
    }
    j = jn;
  }

  // Epilogue: finish the row sums, then write or merge.
  ATTN_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    float l = lRow[rr];
    l += shflXor(l, 1);
    l += shflXor(l, 2);
    const int64_t row = q0 + warp * 16 + g + 8 * rr;
    const bool has = l > 0.f;
    const float inv = has ? 1.f / l : 0.f;
    const float lseRow = has ? mRow[rr] * kLn2 + logf(l) : negInf();
    if (p.mode == kFwdFinal) {
      if (rowOk[rr]) {
        uint16_t* out = static_cast<uint16_t*>(p.o) + row * p.ldo + static_cast<int64_t>(h) * D;
        ATTN_UNROLL
        for (int dt = 0; dt < kDT; ++dt) {
          const int d = dt * 8 + 2 * c;
          if (d < D) *reinterpret_cast<uint32_t*>(out + d) = packPair<T>(acc[dt][2 * rr] * inv, acc[dt][2 * rr + 1] * inv);
        }
        if (c == 0 && p.lse != nullptr) p.lse[h * p.ldlse + row] = lseRow;
      }
    } else {
      // All four lanes of the row read the old LSE before lane 0 replaces it.
      const float la = rowOk[rr] ? p.lse[h * p.ldlse + row] : 0.f;
      syncWarp();
      if (rowOk[rr] && has) {
        float wa, wb;
        const float lnew = mergeWeights(la, lseRow, &wa, &wb);
        float* out = static_cast<float*>(p.o) + row * p.ldo + static_cast<int64_t>(h) * D;
        ATTN_UNROLL
        for (int dt = 0; dt < kDT; ++dt) {
          const int d = dt * 8 + 2 * c;
          if (d < D) {
            // An empty accumulator row (LSE -inf) may hold anything: assign instead of scaling.
            out[d] = (wa != 0.f ? out[d] * wa : 0.f) + acc[dt][2 * rr] * inv * wb;
            out[d + 1] = (wa != 0.f ? out[d + 1] * wa : 0.f) + acc[dt][2 * rr + 1] * inv * wb;
          }
        }
        if (c == 0) p.lse[h * p.ldlse + row] = lnew;
      }
    }
  }
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
