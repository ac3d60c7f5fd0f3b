// The oracle of every attention test: plain fp64 attention, forward and backward, over the whole
// sequence, straight from the definitions of docs/api.md (visibility rule, LSE in natural log, a query with
// no visible key gives O = 0 and LSE = -inf). Written independently of the library's tiles and
// deliberately simple: one query row at a time, no blocking, no online softmax.
//
// Tensors are the whole sequence in position order: q, out, dout, dq [seqLen][Hq][D];
// k, v, dk, dv [seqLen][Hkv][D]; lse [Hq][seqLen]. Query head h uses key/value head
// h / (Hq / Hkv). The descriptor supplies heads, head dim, mask, window, documents and scale
// (its layout and dtype do not matter here).
#pragma once

#include <cstdint>
#include <vector>

#include "attnccl.h"

namespace attnccl_test {

struct RefForward {
  std::vector<double> out;  // [seqLen][Hq][D]
  std::vector<double> lse;  // [Hq][seqLen]
};

struct RefGrads {
  std::vector<double> dq, dk, dv;
};

// Key j visible to query i under the descriptor (global positions).
bool refVisible(const attncclAttnDesc_t& d, int64_t i, int64_t j);
// The scale the descriptor asks for (softmaxScale, or 1/sqrt(headDim) when 0).
double refScale(const attncclAttnDesc_t& d);

RefForward refForward(const attncclAttnDesc_t& d, const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v);
// Gradients of sum(out * dout) with respect to q, k, v.
RefGrads refBackward(const attncclAttnDesc_t& d, const std::vector<double>& q, const std::vector<double>& k,
                     const std::vector<double>& v, const std::vector<double>& dout);

// Merge of two partial states over disjoint key sets (flash-decoding): out/lse as above with
// `tokens` rows of numHeads heads.
void refMergeStates(std::vector<double>& out, std::vector<double>& lse, const std::vector<double>& outB,
                    const std::vector<double>& lseB, int64_t tokens, int numHeads, int headDim);

}  // namespace attnccl_test
