#include "attn/tune/calibration_tile.h"

#include <cmath>

namespace attnccl {
namespace attn {

CalibrationTile::CalibrationTile() {
  const int64_t n = kTokens;
  const int H = kHeads, D = kHeadDim;
  const size_t elems = static_cast<size_t>(n) * H * D;
  q_.resize(elems);
  k_.resize(elems);
  v_.resize(elems);
  o_.resize(elems);
  dq_.resize(elems);
  dk_.resize(elems);
  dv_.resize(elems);
  lse_.resize(static_cast<size_t>(H) * n);
  delta_.assign(static_cast<size_t>(H) * n, 0.1f);
  for (size_t i = 0; i < elems; ++i) {
    q_[i] = std::sin(0.37f * i);
    k_[i] = std::cos(0.11f * i);
    v_[i] = std::sin(0.05f * i + 1);
  }
  pos_.resize(n);
  doc_.assign(n, 0);
  for (int64_t i = 0; i < n; ++i) pos_[i] = i;

  TileCommon c;
  c.dtype = attncclFloat32;
  c.headDim = D;
  c.scale = 0.125f;
  c.heads = HeadMap{H, H, 0, 0, 1};
  static_cast<TileCommon&>(fwd) = c;
  fwd.q = q_.data();
  fwd.ldq = H * D;
  fwd.qTok = Tokens{n, pos_.data(), doc_.data()};
  fwd.k = k_.data();
  fwd.v = v_.data();
  fwd.ldkv = H * D;
  fwd.kTok = fwd.qTok;
  fwd.o = o_.data();
  fwd.ldo = H * D;
  fwd.lse = lse_.data();
  fwd.ldlse = n;

  static_cast<TileCommon&>(bwd) = c;
  bwd.q = q_.data();
  bwd.dout = v_.data();  // any finite gradient will do
  bwd.ldq = H * D;
  bwd.qTok = fwd.qTok;
  bwd.k = k_.data();
  bwd.v = v_.data();
  bwd.ldkv = H * D;
  bwd.kTok = fwd.qTok;
  bwd.lse = lse_.data();
  bwd.delta = delta_.data();
  bwd.ldlse = n;
  bwd.dq = dq_.data();
  bwd.lddq = H * D;
  bwd.dk = dk_.data();
  bwd.dv = dv_.data();
  bwd.lddkv = H * D;
}

void CalibrationTile::clearOutput() {
  clearAccumulator(o_.data(), kTokens, kHeads, kHeadDim, kHeads * kHeadDim, lse_.data(), kTokens);
}

}  // namespace attn
}  // namespace attnccl
