// The online softmax of the CPU forward tiles (cpu/fwd.cc through the GEMMs, cpu/fwd_stream.cc
// streaming few rows), in one place. Scores are base 2 (scaled by scale * log2 e); a query row's
// running state is (m, l, unnormalised O), and the fp32 accumulator (O normalised, LSE) is that
// state with m = LSE log2 e and l = 1, so successive tiles continue one softmax.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "attn/cpu/rowops.h"

namespace attnccl {
namespace attn {
namespace cpu {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Row state from the accumulator row (oAcc, lse): a row with nothing accumulated (lse = -inf)
// may hold anything and starts from zero.
inline void loadRowState(const float* oAcc, float lse, int64_t D, float* o, float* m, float* l) {
  const float inf = std::numeric_limits<float>::infinity();
  *m = lse == -inf ? -inf : lse * kLog2e;
  *l = lse == -inf ? 0.f : 1.f;
  if (lse == -inf) std::fill(o, o + D, 0.f);
  else std::copy(oAcc, oAcc + D, o);
}

// One row's step over its visible scores row[c0, c1) (base 2): P = 2^(S - m') into prow[c0, c1)
// (prow may be row), the running O rescaled by 2^(m - m'), l and m updated.
inline void softmaxRowStep(const RowOps& ops, const float* row, float* prow, int64_t c0, int64_t c1, float* o,
                           int64_t D, float* m, float* l) {
  const float mOld = *m;
  const float mNew = std::max(mOld, ops.rowMax(row + c0, c1 - c0));
  const float sum = ops.exp2Sub(row + c0, prow + c0, c1 - c0, mNew);
  const float c = std::exp2(mOld - mNew);  // 0 when nothing was accumulated
  if (c != 1.f) ops.scale(o, D, c);
  *l = *l * c + sum;
  *m = mNew;
}

// The accumulator row (oAcc, lse) from a row state that accumulated something.
inline void storeRowState(const float* o, float m, float l, int64_t D, float* oAcc, float* lse) {
  const float inv = 1.f / l;
  for (int64_t d = 0; d < D; ++d) oAcc[d] = o[d] * inv;
  *lse = m * kLn2 + std::log(l);
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
