#include "plan/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "attn/tile.h"

namespace attnccl {
namespace plan {
namespace {

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

MaskWaste measureMaskWaste(ThreadPool& pool) {
  const int64_t n = 512;  // the calibration tile's size, causal
  const int H = 2, D = 64;
  const size_t rows = static_cast<size_t>(n) * H * D;
  std::vector<float> q(rows), k(rows), v(rows), o(rows), dq(rows), dk(rows), dv(rows), lse(H * n), delta(H * n, 0.1f);
  for (size_t i = 0; i < rows; ++i) {
    q[i] = std::sin(0.37f * i);
    k[i] = std::cos(0.11f * i);
    v[i] = std::sin(0.05f * i + 1);
  }
  std::vector<int64_t> pos(n), doc(n, 0);
  for (int64_t i = 0; i < n; ++i) pos[i] = i;
  attn::TileCommon c;
  c.dtype = attncclFloat32;
  c.headDim = D;
  c.scale = 0.125f;
  c.heads = attn::HeadMap{H, H, 0, 0, 1};
  c.mask = attn::MaskSpec{true, -1, -1};
  attn::FwdTileArgs f;
  static_cast<attn::TileCommon&>(f) = c;
  f.q = q.data();
  f.ldq = H * D;
  f.qTok = attn::Tokens{n, pos.data(), doc.data()};
  f.k = k.data();
  f.v = v.data();
  f.ldkv = H * D;
  f.kTok = f.qTok;
  f.o = o.data();
  f.ldo = H * D;
  f.lse = lse.data();
  f.ldlse = n;
  attn::BwdTileArgs b;
  static_cast<attn::TileCommon&>(b) = c;
  b.q = q.data();
  b.dout = v.data();
  b.ldq = H * D;
  b.qTok = f.qTok;
  b.k = k.data();
  b.v = v.data();
  b.ldkv = H * D;
  b.kTok = f.qTok;
  b.lse = lse.data();
  b.delta = delta.data();
  b.ldlse = n;
  b.dq = dq.data();
  b.lddq = H * D;
  b.dk = dk.data();
  b.dv = dv.data();
  b.lddkv = H * D;
  // Full and causal tiles alternate, best of five each: a busy moment slows both alike, and the
  // waste is measured against the full tile of the same loop.
  attn::MaskSpec full{false, -1, -1}, causal{true, -1, -1};
  double fwdBest[2] = {1e30, 1e30}, bwdBest[2] = {1e30, 1e30};
  for (int it = 0; it < 10; ++it) {
    const int m = it % 2;  // 0: full, 1: causal
    f.mask = b.mask = m ? causal : full;
    attn::clearAccumulator(o.data(), n, H, D, H * D, lse.data(), n);
    auto t0 = std::chrono::steady_clock::now();
    attn::fwdTile(f, pool);
    fwdBest[m] = std::min(fwdBest[m], since(t0));
    t0 = std::chrono::steady_clock::now();
    attn::bwdTile(b, pool);
    bwdBest[m] = std::min(bwdBest[m], since(t0));
  }
  attn::releaseTileScratch();
  // Pair equivalents the causal tile took (at the full tile's rate), minus its visible pairs, per
  // query row; at most n/2 (every masked block computed).
  const double all = static_cast<double>(n) * n, visible = n * (n + 1) / 2.0;
  auto waste = [&](const double* best) { return std::min(n / 2.0, std::max(0.0, best[1] / best[0] * all - visible) / n); };
  MaskWaste w;
  w.fwdRowPairs = waste(fwdBest);
  w.bwdRowPairs = waste(bwdBest);
  return w;
}

}  // namespace plan
}  // namespace attnccl
