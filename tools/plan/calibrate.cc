#include "plan/calibrate.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "attn/tune/calibration_tile.h"

namespace attnccl {
namespace plan {
namespace {

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

MaskWaste measureMaskWaste(ThreadPool& pool) {
  attn::CalibrationTile tile;
  const int64_t n = attn::CalibrationTile::kTokens;
  // Full and causal tiles alternate, best of five each: a busy moment slows both alike, and the
  // waste is measured against the full tile of the same loop.
  attn::MaskSpec full{false, -1, -1}, causal{true, -1, -1};
  double fwdBest[2] = {1e30, 1e30}, bwdBest[2] = {1e30, 1e30};
  for (int it = 0; it < 10; ++it) {
    const int m = it % 2;  // 0: full, 1: causal
    tile.setMask(m ? causal : full);
    tile.clearOutput();
    auto t0 = std::chrono::steady_clock::now();
    attn::fwdTile(tile.fwd, pool);
    fwdBest[m] = std::min(fwdBest[m], since(t0));
    t0 = std::chrono::steady_clock::now();
    attn::bwdTile(tile.bwd, pool);
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
