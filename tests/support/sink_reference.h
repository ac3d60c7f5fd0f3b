// The fp64 oracle with attention sinks (API 0.2): each query row of head h has one more logit
// sinks[h] (not scaled) whose value vector is zero. Written from the definitions, apart from
// reference.cc's online-free loops: for a row, logits s_j over visible keys plus the sink;
// p = softmax over all of them; O = sum_j p_j v_j; LSE = log(exp(sink) + sum_j exp(s_j)).
// Backward: dP_j = dO . v_j (0 for the sink), Delta = sum_j p_j dP_j = dO . O,
// dS_j = p_j (dP_j - Delta), dsink = -p_sink Delta summed over the rows of the head.
// With sinks empty it is plain attention (no visible key: O = 0, LSE = -inf).
#pragma once

#include <vector>

#include "attnccl.h"

namespace attnccl_test {

struct SinkRef {
  std::vector<double> out, lse;     // [S][Hq][D], [Hq][S]
  std::vector<double> dq, dk, dv;   // when dout was given
  std::vector<double> dsinks;       // [Hq] (this sequence's rows only)
  // [Hq]: sum of |each row's term| of dsinks. The terms cancel, so a dsinks computed from O as
  // stored in a 16-bit dtype is judged against this (the rounding error of a sum scales with it).
  std::vector<double> dsinksAbs;
};

// One sequence of the descriptor (seqLen tokens, its documents, mask, scale). q, dout [S][Hq][D];
// k, v [S][Hkv][D]; sinks empty or [Hq]; dout empty = forward only.
SinkRef refAttentionWithSinks(const attncclAttnDesc_t& d, const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v, const std::vector<double>& dout,
                              const std::vector<double>& sinks);

}  // namespace attnccl_test
