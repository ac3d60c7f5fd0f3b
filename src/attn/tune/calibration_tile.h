// The calibration tile: one 512 x 512 fp32 self-attention tile of 2 heads of 64, with inputs
// (smooth, finite values), outputs and the backward's Delta, wired into forward and backward tile
// arguments. The tuner times it for the kernel rates (tuner.cc), the planner for the work that
// masked blocks cost (tools/plan/calibrate.cc). The arguments point into the object: no copies.
#pragma once

#include <cstdint>
#include <vector>

#include "attn/tile.h"

namespace attnccl {
namespace attn {

class CalibrationTile {
 public:
  static constexpr int64_t kTokens = 512;
  static constexpr int kHeads = 2, kHeadDim = 64;

  CalibrationTile();
  CalibrationTile(const CalibrationTile&) = delete;
  CalibrationTile& operator=(const CalibrationTile&) = delete;

  // Sets the mask of both directions (no mask by default).
  void setMask(const MaskSpec& m) { fwd.mask = bwd.mask = m; }
  // Resets the forward accumulator (O, LSE); a forward tile merges into it.
  void clearOutput();
  // Forward FLOPs with every pair visible (the backward counts 2.5x).
  static double fullFlops() { return 4.0 * kTokens * kTokens * kHeadDim * kHeads; }

  FwdTileArgs fwd;
  BwdTileArgs bwd;

 private:
  std::vector<float> q_, k_, v_, o_, lse_, dq_, dk_, dv_, delta_;
  std::vector<int64_t> pos_, doc_;
};

}  // namespace attn
}  // namespace attnccl
