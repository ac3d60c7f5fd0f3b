#include "attn/desc.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "attn/visibility.h"
#include "core/dtype.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

namespace {

// The integer in an enum field as the caller stored it: a value outside the enumerators must be
// reported, not loaded as the enum type (undefined behaviour).
template <typename E>
int rawEnum(const E& field) {
  static_assert(sizeof(E) == sizeof(int), "enum fields of the descriptor are int-sized");
  int v;
  memcpy(&v, &field, sizeof v);
  return v;
}

}  // namespace

int64_t AttnShape::docOf(int64_t pos) const {
  // The document holding pos is the last offset <= pos.
  auto it = std::upper_bound(cuSeqlens.begin(), cuSeqlens.end(), pos);
  return static_cast<int64_t>(it - cuSeqlens.begin()) - 1;
}

bool AttnShape::visible(int64_t i, int64_t j) const { return pairVisible(*this, i, docOf(i), j, docOf(j)); }

std::string shapeKey(const AttnShape& s) {
  std::string k;
  auto put = [&k](int64_t v) { k.append(reinterpret_cast<const char*>(&v), sizeof v); };
  int32_t scaleBits;  // the exact float: a different scale is a different program
  static_assert(sizeof(scaleBits) == sizeof(s.scale), "scale is a 32-bit float");
  memcpy(&scaleBits, &s.scale, sizeof scaleBits);
  for (int64_t v : {int64_t(s.dtype), s.seqLen, int64_t(s.numHeadsQ), int64_t(s.numHeadsKV), int64_t(s.headDim),
                    int64_t(s.layout), int64_t(s.causal), s.windowLeft, s.windowRight, int64_t(scaleBits),
                    static_cast<int64_t>(s.cuSeqlens.size())})
    put(v);
  for (int64_t c : s.cuSeqlens) put(c);
  return k;
}

attncclResult_t resolveDesc(const attncclAttnDesc_t* d, AttnShape* out) {
  ATTN_ARG(d != nullptr, "attention descriptor is NULL");
  ATTN_ARG(d->magic == ATTNCCL_ATTN_DESC_MAGIC,
           "attention descriptor magic 0x%x is not ATTNCCL_ATTN_DESC_MAGIC (use ATTNCCL_ATTN_DESC_INITIALIZER)",
           d->magic);
  // Every field up to cuSeqlens (0.1) must be present; later fields take their defaults when the
  // caller's descriptor ends before them.
  ATTN_ARG(d->size >= offsetof(attncclAttnDesc_t, cuSeqlens) + sizeof(d->cuSeqlens),
           "attention descriptor size %zu is smaller than %zu (use ATTNCCL_ATTN_DESC_INITIALIZER)", d->size,
           offsetof(attncclAttnDesc_t, cuSeqlens) + sizeof(d->cuSeqlens));
  const int dtype = rawEnum(d->dtype);
  ATTN_ARG(dtype == attncclFloat32 || dtype == attncclFloat16 || dtype == attncclBfloat16,
           "desc->dtype %d (%s) is not attncclFloat32, attncclFloat16 or attncclBfloat16", dtype,
           dtype >= 0 && dtype < attncclNumTypes ? dtypeName(static_cast<attncclDataType_t>(dtype)) : "unknown");
  ATTN_ARG(d->seqLen >= 1, "desc->seqLen %lld must be >= 1", static_cast<long long>(d->seqLen));
  ATTN_ARG(d->numHeadsQ >= 1, "desc->numHeadsQ %d must be >= 1", d->numHeadsQ);
  ATTN_ARG(d->numHeadsKV >= 1, "desc->numHeadsKV %d must be >= 1", d->numHeadsKV);
  ATTN_ARG(d->numHeadsQ % d->numHeadsKV == 0, "desc->numHeadsQ %d is not divisible by desc->numHeadsKV %d",
           d->numHeadsQ, d->numHeadsKV);
  ATTN_ARG(d->headDim >= 1 && d->headDim <= 256, "desc->headDim %d is not in 1..256", d->headDim);
  const int layout = rawEnum(d->layout);
  ATTN_ARG(layout >= 0 && layout < attncclNumLayouts, "desc->layout %d is not a known layout", layout);
  ATTN_ARG(d->causal == 0 || d->causal == 1, "desc->causal %d must be 0 or 1", d->causal);
  ATTN_ARG(d->windowLeft >= -1, "desc->windowLeft %lld must be >= -1 (-1 = unbounded)",
           static_cast<long long>(d->windowLeft));
  ATTN_ARG(d->windowRight >= -1, "desc->windowRight %lld must be >= -1 (-1 = unbounded)",
           static_cast<long long>(d->windowRight));
  ATTN_ARG(std::isfinite(d->softmaxScale), "desc->softmaxScale %g is not finite",
           static_cast<double>(d->softmaxScale));
  int64_t batch = 0;
  if (d->size >= offsetof(attncclAttnDesc_t, batch) + sizeof(d->batch)) batch = d->batch;
  ATTN_ARG(batch >= 0, "desc->batch %lld must be >= 0 (0 or 1 = one sequence)", static_cast<long long>(batch));
  if (batch == 0) batch = 1;
  ATTN_ARG(batch <= (int64_t{1} << 48) / d->seqLen,
           "desc->batch %lld x desc->seqLen %lld is more than 2^48 tokens", static_cast<long long>(batch),
           static_cast<long long>(d->seqLen));
  ATTN_ARG(d->numSeqs >= 0, "desc->numSeqs %lld must be >= 0", static_cast<long long>(d->numSeqs));
  // Every document holds at least one token; checked before cuSeqlens is read.
  ATTN_ARG(d->numSeqs <= d->seqLen, "desc->numSeqs %lld exceeds desc->seqLen %lld (documents are not empty)",
           static_cast<long long>(d->numSeqs), static_cast<long long>(d->seqLen));
  // Tensor sizes are formed in int64 (and size_t) products of these: keep them far from overflow.
  const int64_t width = static_cast<int64_t>(d->numHeadsQ) * d->headDim;
  ATTN_ARG(d->seqLen * batch <= (int64_t{1} << 48) / width,
           "desc->batch %lld x seqLen %lld x numHeadsQ %d x headDim %d is more than 2^48 elements per tensor",
           static_cast<long long>(batch), static_cast<long long>(d->seqLen), d->numHeadsQ, d->headDim);

  AttnShape s;
  s.dtype = d->dtype;
  s.seqLen = d->seqLen;
  s.numHeadsQ = d->numHeadsQ;
  s.numHeadsKV = d->numHeadsKV;
  s.headDim = d->headDim;
  s.layout = d->layout;
  s.causal = d->causal != 0;
  s.windowLeft = d->windowLeft;
  s.windowRight = d->windowRight;
  s.batch = batch;
  s.scale = d->softmaxScale != 0.f ? d->softmaxScale : 1.f / std::sqrt(static_cast<float>(d->headDim));
  if (d->numSeqs == 0 || d->cuSeqlens == nullptr) {
    s.cuSeqlens = {0, d->seqLen};
  } else {
    const int64_t* cu = d->cuSeqlens;
    ATTN_ARG(cu[0] == 0, "desc->cuSeqlens[0] is %lld, must be 0", static_cast<long long>(cu[0]));
    for (int64_t i = 1; i <= d->numSeqs; ++i) {
      ATTN_ARG(cu[i] > cu[i - 1], "desc->cuSeqlens is not increasing: cuSeqlens[%lld] = %lld <= cuSeqlens[%lld] = %lld",
               static_cast<long long>(i), static_cast<long long>(cu[i]), static_cast<long long>(i - 1),
               static_cast<long long>(cu[i - 1]));
    }
    ATTN_ARG(cu[d->numSeqs] == d->seqLen, "desc->cuSeqlens[%lld] = %lld does not equal desc->seqLen %lld",
             static_cast<long long>(d->numSeqs), static_cast<long long>(cu[d->numSeqs]),
             static_cast<long long>(d->seqLen));
    s.cuSeqlens.assign(cu, cu + d->numSeqs + 1);
  }
  *out = std::move(s);
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
