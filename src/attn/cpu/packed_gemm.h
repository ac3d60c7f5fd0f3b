// Products on keys and values packed once per tile, for the AVX2 machines where the fp32 GEMMs
// otherwise run on OpenBLAS: the forward's two (cpu/fwd.cc) and the backward's S, dP and dQ
// (cpu/bwd.cc; there V is packed like K, and K also like V). A BLAS call packs both of its
// operands anew every time: in the forward that is the key block once per query block that reads
// it and the value block once per step, 19-20% of the forward's samples on Zen 3 (measured:
// src/attn/cpu/README.md, "Packed forward"). Here K and V are laid out once per tile in 16-wide
// panels the micro-kernel streams, and the row-major operands (Q, P) are read where they lie:
// a 6-row slice of them is at most 12 KiB, which stays in L1 while a panel streams by.
//
//   key panels    kp:  panel j = keys 16j .. 16j+15 as [D][16]   (S = Q K^T reads one per 16 keys)
//   value panels  vp:  panel c = columns 16c .. 16c+15 of D as [nPad][16]   (O += P V)
//
// Keys past n and columns past D are zero in the panels, so a product may run whole panels.
// Selected like smallGemm(): AVX2+FMA where rowOps() is AVX2 or better, else not available.
#pragma once

#include <cstdint>

namespace attnccl {
namespace attn {
namespace cpu {

constexpr int64_t kPanel = 16;
inline int64_t panelPad(int64_t n) { return (n + kPanel - 1) / kPanel * kPanel; }

struct PackedGemmOps {
  const char* name;
  // k: n rows of D floats at stride D; out: panelPad(n) * D floats.
  void (*packKeys)(const float* k, int64_t n, int64_t D, float* out);
  // v: n rows of D floats at stride D; out: panelPad(D) * panelPad(n) floats.
  void (*packValues)(const float* v, int64_t n, int64_t D, float* out);
  // s[i][16 jp + c] = alpha * sum_d q[i][d] K[16 (panel0 + jp) + c][d]  for i < nr, jp < npanels
  // (overwrites s).
  void (*scores)(const float* q, int64_t ldq, int64_t nr, const float* kp, int64_t D, int64_t panel0,
                 int64_t npanels, float alpha, float* s, int64_t lds);
  // o[i][d] += alpha * sum_{j < nk} p[i][j] V[key0 + j][d]  for i < nr, d < D; key0 + nk <= nPad.
  void (*pv)(const float* p, int64_t ldp, int64_t nr, const float* vp, int64_t nPad, int64_t key0, int64_t nk,
             int64_t D, float alpha, float* o, int64_t ldo);
};

extern const PackedGemmOps kAvx2PackedGemm;

// The AVX2 kernels when rowOps() is AVX2 or better (so forceIsa and ATTNCCL_CPU_ISA reach them
// too), else nullptr.
const PackedGemmOps* packedGemm();

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
