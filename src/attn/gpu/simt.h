// Generic attention tiles on plain fp32 arithmetic: any head dim up to 256, fp32 storage (where
// tensor cores would round the inputs), and tensors whose strides or addresses the tensor-core
// path cannot stream. Same contract as the tensor-core kernels; correctness first.
//
// Tiling (SimtConfig): a block of 4 warps owns 16 rows (queries in the forward and dQ kernels,
// keys in the dK/dV kernel), 4 per warp; lane l holds elements l, l+32, ... of each row in
// registers. The other side streams through shared memory in tiles of 16 tokens, converted to
// fp32; a dot product is a warp-wide butterfly sum, so every lane sees every score.
//
//   rows (registers)          tiles of 16 tokens (shared memory, fp32)
//   warp 0: r0..r3    x    [t0 .. t15] [t16 .. t31] ...    (tiles no row sees are skipped)
//
// Backward runs as two kernels so that nothing is accumulated atomically: dQ by query rows,
// dK and dV by key rows (walking every query head of the GQA group).
#pragma once

#include <type_traits>

#include "attn/gpu/kernel_config.h"
#include "attn/gpu/mma_common.h"

namespace attnccl {
namespace attn {
namespace gpu {

struct F32 {};

template <class S>
ATTN_DEV float loadElem(const void* p, int64_t i) {
  if constexpr (std::is_same<S, F32>::value) {
    return static_cast<const float*>(p)[i];
  } else {
    return load16<S>(static_cast<const uint16_t*>(p), i);
  }
}

template <class S>
ATTN_DEV void storeElem(void* p, int64_t i, float v) {
  if constexpr (std::is_same<S, F32>::value) {
    static_cast<float*>(p)[i] = v;
  } else {
    store16<S>(static_cast<uint16_t*>(p), i, v);
  }
}

ATTN_DEV float warpSum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += shflXor(v, off);
  return v;
}

// Stages tokens [b, b + kTile) of one head (a: first element of the head, row stride ld) into
// fp32 shared memory [kTile][D]; rows past n are zero.
template <class S>
ATTN_DEV void stageTile(float* dst, const void* a, int64_t headOffset, int64_t ld, int64_t b, int64_t n, int D) {
  constexpr int kTile = SimtConfig::kTile;
  for (int idx = threadIdxX(); idx < kTile * D; idx += SimtConfig::kThreads) {
    const int r = idx / D, d = idx % D;
    dst[idx] = b + r < n ? loadElem<S>(a, (b + r) * ld + headOffset + d) : 0.f;
  }
}

// Loads this lane's elements of row `row` (zero when row >= n or past the head dim).
template <class S>
ATTN_DEV void loadRow(float (&x)[SimtConfig::kSlots], const void* a, int64_t ld, int64_t headOffset, int64_t row,
                      int64_t n, int D, int lane, float mul) {
  ATTN_UNROLL
  for (int t = 0; t < SimtConfig::kSlots; ++t) {
    const int d = lane + 32 * t;
    x[t] = row < n && d < D ? loadElem<S>(a, row * ld + headOffset + d) * mul : 0.f;
  }
}

ATTN_DEV float dotRow(const float (&x)[SimtConfig::kSlots], const float* tileRow, int D, int lane) {
  float s = 0.f;
  ATTN_UNROLL
  for (int t = 0; t < SimtConfig::kSlots; ++t) {
    const int d = lane + 32 * t;
    if (d < D) s += x[t] * tileRow[d];
  }
  return warpSum(s);
}

template <class S>
ATTN_DEV void fwdSimtTile(const FwdParams& p, char* smem) {
  using C = SimtConfig;
  constexpr int kR = C::kRowsPerWarp, kTile = C::kTile, kSlots = C::kSlots;
  const int tid = threadIdxX(), warp = tid >> 5, lane = tid & 31;
  const int h = blockIdxY(), hk = kvHeadOf(p.heads, h), D = p.headDim;
  const int64_t q0 = static_cast<int64_t>(gridDimX() - 1 - blockIdxX()) * C::kRows;
  float* sK = reinterpret_cast<float*>(smem);
  float* sV = sK + kTile * D;
  int64_t* sPos = reinterpret_cast<int64_t*>(sV + kTile * D);
  int64_t* sDoc = sPos + kTile;

  float q[kR][kSlots], o[kR][kSlots], m[kR], l[kR];
  int64_t rowPos[kR], rowDoc[kR];
  ATTN_UNROLL
  for (int r = 0; r < kR; ++r) {
    const int64_t row = q0 + warp * kR + r;
    loadRow<S>(q[r], p.q, p.ldq, static_cast<int64_t>(h) * D, row, p.qt.n, D, lane, p.scale);
    ATTN_UNROLL
    for (int t = 0; t < kSlots; ++t) o[r][t] = 0.f;
    m[r] = negInf();
    l[r] = 0.f;
    rowPos[r] = row < p.qt.n ? tokPos(p.qt, row) : 0;
    rowDoc[r] = row < p.qt.n ? tokDoc(p.qt, row) : kNoQueryDoc;
  }
  const BlockSpan qs = spanOf(p.qt, q0, minOf<int64_t>(q0 + C::kRows, p.qt.n));
  const int64_t ntiles = (p.kt.n + kTile - 1) / kTile;
  for (int64_t j = 0; j < ntiles; ++j) {
    const int64_t k0 = j * kTile, kEnd = minOf<int64_t>(k0 + kTile, p.kt.n);
    const int cls = classifyTile(p.mask, qs, spanOf(p.kt, k0, kEnd));
    if (cls == kTileNone) continue;
    syncThreads();
    stageTile<S>(sK, p.k, static_cast<int64_t>(hk) * D, p.ldkv, k0, p.kt.n, D);
    stageTile<S>(sV, p.v, static_cast<int64_t>(hk) * D, p.ldkv, k0, p.kt.n, D);
    loadMeta<kTile, C::kThreads>(sPos, sDoc, p.kt, k0, kNoKeyDoc);
    syncThreads();
    const bool needMask = cls != kTileFull;
    ATTN_UNROLL
    for (int r = 0; r < kR; ++r) {
      for (int key = 0; key < kEnd - k0; ++key) {
        const float s = dotRow(q[r], sK + key * D, D, lane);
        if (needMask && !visiblePair(p.mask, rowPos[r], rowDoc[r], sPos[key], sDoc[key])) continue;
        const float mNew = maxOf(m[r], s);
        const float corr = expf(m[r] - mNew);
        const float pe = expf(s - mNew);
        l[r] = l[r] * corr + pe;
        ATTN_UNROLL
        for (int t = 0; t < kSlots; ++t) {
          const int d = lane + 32 * t;
          o[r][t] = o[r][t] * corr + (d < D ? pe * sV[key * D + d] : 0.f);
        }
        m[r] = mNew;
      }
    }
  }

  ATTN_UNROLL
  for (int r = 0; r < kR; ++r) {
    const int64_t row = q0 + warp * kR + r;
    const bool ok = row < p.qt.n;
    const bool has = l[r] > 0.f;
    const float inv = has ? 1.f / l[r] : 0.f;
    const float lseRow = has ? m[r] + logf(l[r]) : negInf();
    const int64_t base = row * p.ldo + static_cast<int64_t>(h) * D;
    if (p.mode == kFwdFinal) {
      if (!ok) continue;
      ATTN_UNROLL
      for (int t = 0; t < kSlots; ++t) {
        const int d = lane + 32 * t;
        if (d < D) storeElem<S>(p.o, base + d, o[r][t] * inv);
      }
      if (lane == 0 && p.lse != nullptr) p.lse[h * p.ldlse + row] = lseRow;
    } else {
      const float la = ok ? p.lse[h * p.ldlse + row] : 0.f;
      syncWarp();
      if (!ok || !has) continue;
      float wa, wb;
      const float lnew = mergeWeights(la, lseRow, &wa, &wb);
      float* out = static_cast<float*>(p.o) + base;
      ATTN_UNROLL
      for (int t = 0; t < kSlots; ++t) {
        const int d = lane + 32 * t;
        if (d < D) out[d] = (wa != 0.f ? out[d] * wa : 0.f) + o[r][t] * inv * wb;
      }
      if (lane == 0) p.lse[h * p.ldlse + row] = lnew;
    }
  }
}

// dQ += scale * sum_j P_ij (dP_ij - Delta_i) k_j, by query rows.
template <class S>
ATTN_DEV void bwdSimtDq(const BwdParams& p, char* smem) {
  using C = SimtConfig;
  constexpr int kR = C::kRowsPerWarp, kTile = C::kTile, kSlots = C::kSlots;
  const int tid = threadIdxX(), warp = tid >> 5, lane = tid & 31;
  const int h = blockIdxY(), hk = kvHeadOf(p.heads, h), D = p.headDim;
  const int64_t q0 = static_cast<int64_t>(blockIdxX()) * C::kRows;
  float* sK = reinterpret_cast<float*>(smem);
  float* sV = sK + kTile * D;
  int64_t* sPos = reinterpret_cast<int64_t*>(sV + kTile * D);
  int64_t* sDoc = sPos + kTile;

  float q[kR][kSlots], dO[kR][kSlots], acc[kR][kSlots], lse[kR], delta[kR];
  int64_t rowPos[kR], rowDoc[kR];
  ATTN_UNROLL
  for (int r = 0; r < kR; ++r) {
    const int64_t row = q0 + warp * kR + r;
    const bool ok = row < p.qt.n;
    loadRow<S>(q[r], p.q, p.ldq, static_cast<int64_t>(h) * D, row, p.qt.n, D, lane, p.scale);
    loadRow<S>(dO[r], p.dout, p.ldq, static_cast<int64_t>(h) * D, row, p.qt.n, D, lane, 1.f);
    ATTN_UNROLL
    for (int t = 0; t < kSlots; ++t) acc[r][t] = 0.f;
    lse[r] = ok ? p.lse[h * p.ldlse + row] : negInf();
    delta[r] = ok ? p.delta[h * p.ldlse + row] : 0.f;
    rowPos[r] = ok ? tokPos(p.qt, row) : 0;
    rowDoc[r] = ok ? tokDoc(p.qt, row) : kNoQueryDoc;
  }
  const BlockSpan qs = spanOf(p.qt, q0, minOf<int64_t>(q0 + C::kRows, p.qt.n));
  const int64_t ntiles = (p.kt.n + kTile - 1) / kTile;
  for (int64_t j = 0; j < ntiles; ++j) {
    const int64_t k0 = j * kTile, kEnd = minOf<int64_t>(k0 + kTile, p.kt.n);
    const int cls = classifyTile(p.mask, qs, spanOf(p.kt, k0, kEnd));
    if (cls == kTileNone) continue;
    syncThreads();
    stageTile<S>(sK, p.k, static_cast<int64_t>(hk) * D, p.ldkv, k0, p.kt.n, D);
    stageTile<S>(sV, p.v, static_cast<int64_t>(hk) * D, p.ldkv, k0, p.kt.n, D);
    loadMeta<kTile, C::kThreads>(sPos, sDoc, p.kt, k0, kNoKeyDoc);
    syncThreads();
    ATTN_UNROLL
    for (int r = 0; r < kR; ++r) {
      if (!(lse[r] > negInf())) continue;
      for (int key = 0; key < kEnd - k0; ++key) {
        if (cls != kTileFull && !visiblePair(p.mask, rowPos[r], rowDoc[r], sPos[key], sDoc[key])) continue;
        const float pr = expf(dotRow(q[r], sK + key * D, D, lane) - lse[r]);
        const float ds = pr * (dotRow(dO[r], sV + key * D, D, lane) - delta[r]);
        ATTN_UNROLL
        for (int t = 0; t < kSlots; ++t) {
          const int d = lane + 32 * t;
          if (d < D) acc[r][t] += ds * sK[key * D + d];
        }
      }
    }
  }
  ATTN_UNROLL
  for (int r = 0; r < kR; ++r) {
    const int64_t row = q0 + warp * kR + r;
    if (row >= p.qt.n) continue;
    float* dst = p.dq + row * p.lddq + static_cast<int64_t>(h) * D;
    ATTN_UNROLL
    for (int t = 0; t < kSlots; ++t) {
      const int d = lane + 32 * t;
      if (d < D) dst[d] += p.scale * acc[r][t];
    }
  }
}

// dV += sum_i P_ij dO_i, dK += scale * sum_i dS_ij q_i, by key rows over the GQA group's heads.
template <class S>
ATTN_DEV void bwdSimtDkv(const BwdParams& p, char* smem) {
  using C = SimtConfig;
  constexpr int kR = C::kRowsPerWarp, kTile = C::kTile, kSlots = C::kSlots;
  const int tid = threadIdxX(), warp = tid >> 5, lane = tid & 31;
  const int hk = blockIdxY(), D = p.headDim;
  const int64_t k0 = static_cast<int64_t>(blockIdxX()) * C::kRows;
  float* sQ = reinterpret_cast<float*>(smem);
  float* sO = sQ + kTile * D;  // dO
  int64_t* sPos = reinterpret_cast<int64_t*>(sO + kTile * D);
  int64_t* sDoc = sPos + kTile;

  float k[kR][kSlots], v[kR][kSlots], dk[kR][kSlots], dv[kR][kSlots];
  int64_t keyPos[kR], keyDoc[kR];
  ATTN_UNROLL
  for (int r = 0; r < kR; ++r) {
    const int64_t row = k0 + warp * kR + r;
    loadRow<S>(k[r], p.k, p.ldkv, static_cast<int64_t>(hk) * D, row, p.kt.n, D, lane, p.scale);
    loadRow<S>(v[r], p.v, p.ldkv, static_cast<int64_t>(hk) * D, row, p.kt.n, D, lane, 1.f);
    ATTN_UNROLL
    for (int t = 0; t < kSlots; ++t) dk[r][t] = dv[r][t] = 0.f;
    keyPos[r] = row < p.kt.n ? tokPos(p.kt, row) : 0;
    keyDoc[r] = row < p.kt.n ? tokDoc(p.kt, row) : kNoKeyDoc;
  }
  const BlockSpan ks = spanOf(p.kt, k0, minOf<int64_t>(k0 + C::kRows, p.kt.n));
  const int gBegin = (hk + p.heads.kvFirst) * p.heads.group - p.heads.qFirst;
  const int hBegin = maxOf(0, gBegin), hEnd = minOf(p.heads.numQ, gBegin + p.heads.group);
  const int64_t ntiles = (p.qt.n + kTile - 1) / kTile;
  for (int hq = hBegin; hq < hEnd; ++hq) {
    for (int64_t i = 0; i < ntiles; ++i) {
      const int64_t b = i * kTile, e = minOf<int64_t>(b + kTile, p.qt.n);
      const int cls = classifyTile(p.mask, spanOf(p.qt, b, e), ks);
      if (cls == kTileNone) continue;
      syncThreads();
      stageTile<S>(sQ, p.q, static_cast<int64_t>(hq) * D, p.ldq, b, p.qt.n, D);
      stageTile<S>(sO, p.dout, static_cast<int64_t>(hq) * D, p.ldq, b, p.qt.n, D);
      loadMeta<kTile, C::kThreads>(sPos, sDoc, p.qt, b, kNoQueryDoc);
      syncThreads();
      for (int qi = 0; qi < e - b; ++qi) {
        const float lse = p.lse[hq * p.ldlse + b + qi];
        if (!(lse > negInf())) continue;
        const float delta = p.delta[hq * p.ldlse + b + qi];
        ATTN_UNROLL
        for (int r = 0; r < kR; ++r) {
          if (cls != kTileFull && !visiblePair(p.mask, sPos[qi], sDoc[qi], keyPos[r], keyDoc[r])) continue;
          const float pr = expf(dotRow(k[r], sQ + qi * D, D, lane) - lse);
          const float ds = pr * (dotRow(v[r], sO + qi * D, D, lane) - delta);
          ATTN_UNROLL
          for (int t = 0; t < kSlots; ++t) {
            const int d = lane + 32 * t;
            if (d < D) {
              dv[r][t] += pr * sO[qi * D + d];
              dk[r][t] += ds * sQ[qi * D + d];
            }
          }
        }
      }
    }
  }
  ATTN_UNROLL
  for (int r = 0; r < kR; ++r) {
    const int64_t row = k0 + warp * kR + r;
    if (row >= p.kt.n) continue;
    float* dkr = p.dk + row * p.lddkv + static_cast<int64_t>(hk) * D;
    float* dvr = p.dv + row * p.lddkv + static_cast<int64_t>(hk) * D;
    ATTN_UNROLL
    for (int t = 0; t < kSlots; ++t) {
      const int d = lane + 32 * t;
      if (d < D) {
        dkr[d] += p.scale * dk[r][t];
        dvr[d] += dv[r][t];
      }
    }
  }
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
