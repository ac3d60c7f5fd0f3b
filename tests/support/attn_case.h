// One attention test case: a descriptor (with its documents), seeded random whole-sequence
// inputs in the storage dtype, their fp64 reference results, and a printable name that carries
// the seed. Shared by the single-rank tests and the distributed ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnccl.h"
#include "support/reference.h"
#include "support/tensors.h"

namespace attnccl_test {

struct CaseSpec {
  int64_t seqLen = 1;
  int hq = 1, hkv = 1, dim = 8;
  attncclDataType_t dtype = attncclFloat32;
  bool causal = false;
  int64_t windowLeft = -1, windowRight = -1;
  std::vector<int64_t> docLens;  // empty: one document; else lengths summing to seqLen
  float scale = 0.f;
  attncclLayout_t layout = attncclLayoutContiguous;
};

class AttnCase {
 public:
  AttnCase(const CaseSpec& spec, uint64_t seed);
  AttnCase(const AttnCase&) = delete;
  AttnCase& operator=(const AttnCase&) = delete;

  const attncclAttnDesc_t& desc() const { return desc_; }
  const CaseSpec& spec() const { return spec_; }
  uint64_t seed() const { return seed_; }
  std::string name() const;  // shape, mask, dtype and seed

  // Whole-sequence inputs in the storage dtype: q, dout [S][Hq][D]; k, v [S][Hkv][D].
  const Tensor& q() const { return q_; }
  const Tensor& k() const { return k_; }
  const Tensor& v() const { return v_; }
  const Tensor& dout() const { return dout_; }

  // fp64 results over the rounded inputs (computed on first use).
  const RefForward& reference();
  const RefGrads& referenceGrads();

 private:
  CaseSpec spec_;
  uint64_t seed_;
  std::vector<int64_t> cu_;
  attncclAttnDesc_t desc_;
  Tensor q_, k_, v_, dout_;
  bool haveFwd_ = false, haveBwd_ = false;
  RefForward fwd_;
  RefGrads grads_;
};

}  // namespace attnccl_test
