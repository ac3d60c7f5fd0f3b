// Portable small products (cpu/small_gemm.h), and the choice between the implementations.
#include "attn/cpu/rowops.h"
#include "attn/cpu/small_gemm.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

void scores(const float* q, int64_t nq, const float* k, int64_t ldk, int64_t nk, int64_t D, float alpha, float* s,
            int64_t lds) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) {
      float acc = 0.f;
      for (int64_t d = 0; d < D; ++d) acc += q[i * D + d] * k[j * ldk + d];
      s[i * lds + j] = alpha * acc;
    }
}

void pv(const float* p, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk, int64_t D, float* o) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) {
      const float w = p[i * ldp + j];
      for (int64_t d = 0; d < D; ++d) o[i * D + d] += w * v[j * ldv + d];
    }
}

float widen(attncclDataType_t t, uint16_t h) { return t == attncclBfloat16 ? bf16ToFloat(h) : fp16ToFloat(h); }

void scores16(attncclDataType_t t, const float* q, int64_t nq, const uint16_t* k, int64_t ldk, int64_t nk, int64_t D,
              float alpha, float* s, int64_t lds) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) {
      float acc = 0.f;
      for (int64_t d = 0; d < D; ++d) acc += q[i * D + d] * widen(t, k[j * ldk + d]);
      s[i * lds + j] = alpha * acc;
    }
}

void pv16(attncclDataType_t t, const float* p, int64_t ldp, int64_t nq, const uint16_t* v, int64_t ldv, int64_t nk,
          int64_t D, float* o) {
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) {
      const float w = p[i * ldp + j];
      for (int64_t d = 0; d < D; ++d) o[i * D + d] += w * widen(t, v[j * ldv + d]);
    }
}

}  // namespace

const SmallGemmOps kGenericSmallGemm = {"generic", scores, pv, scores16, pv16};

const SmallGemmOps& smallGemm() { return rowOps().isa >= Isa::Avx2 ? kAvx2SmallGemm : kGenericSmallGemm; }

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
