// Forward tile for a few query rows, streaming the keys and values once (cpu/fwd_stream.h).
//
// The GEMM path (cpu/fwd.cc) stages K and V (a full fp32 copy of 16-bit inputs, a head-major copy
// of token-major ones) and lets the BLAS pack them again in every call; with <= 16 query rows the
// arithmetic is small and those copies are most of the time. Here each work item (one query head)
// walks the keys in blocks of kKeys, reading the rows where they lie (16-bit rows widened to fp32
// in registers, cpu/small_gemm.h), with the same online softmax as fwd.cc:
//
//   for each key block [k0, k1) with a visible pair (cpu/mask.h):
//     S = alpha Q K^T             (small_gemm scores; alpha = scale log2 e: base-2 scores)
//     per row: m' = max(m, max S), P = 2^(S - m'), O *= 2^(m - m'), l = l 2^(m - m') + sum P
//     O += P V                    (small_gemm pv)
//   O /= l, LSE = m ln 2 + ln l, merged into the accumulator as a continuation of its state.
#include "attn/cpu/fwd_stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attn/cpu/mask.h"
#include "attn/cpu/online_softmax.h"
#include "attn/cpu/rowops.h"
#include "attn/cpu/small_gemm.h"
#include "attn/tile_clock.h"
#include "core/dtype.h"
#include "core/params.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

// Keys per block: 256 fp32 keys at D = 128 are 128 KB; with the values and the next block's
// prefetched rows that stays in a 512 KB L2 (64, 128 and 256 measured alike within the noise, 256
// a little ahead; README.md "Decode").
constexpr int64_t kKeys = 256;

struct StreamScratch {
  std::vector<float> q, o, s, m, l;
  std::vector<int64_t> lo, hi;
  std::vector<char> touched;
};

StreamScratch& scratch() {
  thread_local StreamScratch t;
  return t;
}

// Row c of one head of a token-major (or head-major) input.
const void* rowAt(attncclDataType_t dtype, const void* base, int64_t ld, int64_t hs, int64_t head, int64_t c) {
  return static_cast<const char*>(base) + static_cast<size_t>(c * ld + head * hs) * dtypeSize(dtype);
}

// Asks for the next block's rows while this one computes: one thread's demand misses alone
// leave most of the memory bandwidth unused (measured: README.md "Decode").
void prefetchRows(attncclDataType_t dtype, const void* base, int64_t ld, int64_t hs, int64_t head, int64_t c0,
                  int64_t c1, int64_t D) {
  const size_t esz = dtypeSize(dtype), rowBytes = static_cast<size_t>(D) * esz;
  const char* first = static_cast<const char*>(base) + static_cast<size_t>(c0 * ld + head * hs) * esz;
  for (int64_t j = 0; j < c1 - c0; ++j) {
    const char* row = first + static_cast<size_t>(j * ld) * esz;
    for (size_t b = 0; b < rowBytes; b += 64) __builtin_prefetch(row + b, 0, 2);
  }
}

void streamItem(const FwdTileArgs& a, int64_t h) {
  const RowOps& ops = rowOps();
  const SmallGemmOps& mm = smallGemm();
  const int64_t D = a.headDim, nr = a.qTok.n;
  const int kh = a.heads.kvOf(static_cast<int>(h));
  const int64_t ldv = a.ldv ? a.ldv : a.ldkv;
  const int64_t hsk = a.hsk ? a.hsk : D, hsv = a.hsv ? a.hsv : D, hsq = a.hsq ? a.hsq : D;
  StreamScratch& t = scratch();
  t.lo.resize(nr);
  t.hi.resize(nr);
  float* oAcc = a.o + h * D;
  float* lse = a.lse + h * a.ldlse;
  bool started = false;
  auto start = [&] {
    started = true;
    t.q.resize(nr * D);
    t.o.resize(nr * D);
    t.s.resize(nr * kKeys);
    t.m.resize(nr);
    t.l.resize(nr);
    t.touched.assign(nr, 0);
    const size_t esz = dtypeSize(a.dtype);
    for (int64_t i = 0; i < nr; ++i) {
      ops.toFloat(a.dtype, static_cast<const char*>(a.q) + static_cast<size_t>(i * a.ldq + h * hsq) * esz,
                  t.q.data() + i * D, D);
      loadRowState(oAcc + i * a.ldo, lse[i], D, t.o.data() + i * D, &t.m[i], &t.l[i]);
    }
  };
  const float alpha = a.scale * kLog2e;
  for (int64_t k0 = 0; k0 < a.kTok.n; k0 += kKeys) {
    const int64_t k1 = std::min(a.kTok.n, k0 + kKeys);
    BlockUse use;
    if (!blockUse(a.mask, a.qTok, 0, nr, a.kTok, k0, k1, t.lo.data(), t.hi.data(), &use)) continue;
    if (!started) start();
    const int64_t cb = use.c0, ce = use.c1, ncols = ce - cb, r0 = use.r0, r1 = use.r1;
    prefetchRows(a.dtype, a.k, a.ldkv, hsk, kh, k1, std::min(a.kTok.n, k1 + kKeys), D);
    prefetchRows(a.dtype, a.v, ldv, hsv, kh, k1, std::min(a.kTok.n, k1 + kKeys), D);
    const void* kb = rowAt(a.dtype, a.k, a.ldkv, hsk, kh, cb);
    float* s = t.s.data();
    if (a.dtype == attncclFloat32)
      mm.scores(t.q.data() + r0 * D, r1 - r0, static_cast<const float*>(kb), a.ldkv, ncols, D, alpha, s + r0 * kKeys,
                kKeys);
    else
      mm.scores16(a.dtype, t.q.data() + r0 * D, r1 - r0, static_cast<const uint16_t*>(kb), a.ldkv, ncols, D, alpha,
                  s + r0 * kKeys, kKeys);
    for (int64_t i = r0; i < r1; ++i) {
      float* row = s + i * kKeys;
      const int64_t c0 = t.lo[i] - cb, c1 = t.hi[i] - cb;
      if (c0 >= c1) {
        std::fill(row, row + ncols, 0.f);
        continue;
      }
      softmaxRowStep(ops, row, row, c0, c1, t.o.data() + i * D, D, &t.m[i], &t.l[i]);
      std::fill(row, row + c0, 0.f);
      std::fill(row + c1, row + ncols, 0.f);
      t.touched[i] = 1;
    }
    const void* vb = rowAt(a.dtype, a.v, ldv, hsv, kh, cb);
    if (a.dtype == attncclFloat32)
      mm.pv(s + r0 * kKeys, kKeys, r1 - r0, static_cast<const float*>(vb), ldv, ncols, D, t.o.data() + r0 * D);
    else
      mm.pv16(a.dtype, s + r0 * kKeys, kKeys, r1 - r0, static_cast<const uint16_t*>(vb), ldv, ncols, D,
              t.o.data() + r0 * D);
  }
  if (!started) return;
  for (int64_t i = 0; i < nr; ++i) {
    if (t.touched[i]) storeRowState(t.o.data() + i * D, t.m[i], t.l[i], D, oAcc + i * a.ldo, &lse[i]);
  }
}

bool streamEnabled() { return paramInt(Param::CpuStream) != 0; }

}  // namespace

bool fwdStreams(const FwdTileArgs& a) { return a.qTok.n <= kStreamMaxRows && streamEnabled(); }

void fwdTileStream(const FwdTileArgs& a, ThreadPool& pool, const std::function<void()>& between) {
  TileClock clock;  // per-thread compute time (attn/tile_clock.h)
  if (a.qTok.n <= 0 || a.kTok.n <= 0 || a.heads.numQ <= 0) return;
  pool.run(
      a.heads.numQ, [&](int64_t h, int) { streamItem(a, h); }, between);
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
