#include "support/attn_case.h"

#include <sstream>

namespace attnccl_test {

AttnCase::AttnCase(const CaseSpec& spec, uint64_t seed) : spec_(spec), seed_(seed) {
  desc_ = ATTNCCL_ATTN_DESC_INITIALIZER;
  desc_.dtype = spec.dtype;
  desc_.seqLen = spec.seqLen;
  desc_.numHeadsQ = spec.hq;
  desc_.numHeadsKV = spec.hkv;
  desc_.headDim = spec.dim;
  desc_.layout = spec.layout;
  desc_.causal = spec.causal ? 1 : 0;
  desc_.windowLeft = spec.windowLeft;
  desc_.windowRight = spec.windowRight;
  desc_.softmaxScale = spec.scale;
  if (!spec.docLens.empty()) {
    cu_.push_back(0);
    for (int64_t len : spec.docLens) cu_.push_back(cu_.back() + len);
    desc_.numSeqs = static_cast<int64_t>(spec.docLens.size());
    desc_.cuSeqlens = cu_.data();
  }
  const int64_t qn = spec.seqLen * spec.hq * spec.dim, kn = spec.seqLen * spec.hkv * spec.dim;
  q_ = randomTensor(spec.dtype, qn, subSeed(seed, 0));
  k_ = randomTensor(spec.dtype, kn, subSeed(seed, 1));
  v_ = randomTensor(spec.dtype, kn, subSeed(seed, 2));
  dout_ = randomTensor(spec.dtype, qn, subSeed(seed, 3));
}

std::string AttnCase::name() const {
  std::ostringstream s;
  const char* dt = spec_.dtype == attncclFloat32 ? "fp32" : spec_.dtype == attncclBfloat16 ? "bf16" : "fp16";
  s << "S=" << spec_.seqLen << " H=" << spec_.hq << "/" << spec_.hkv << " D=" << spec_.dim << " " << dt
    << (spec_.causal ? " causal" : "") << " window=(" << spec_.windowLeft << "," << spec_.windowRight << ")";
  if (!spec_.docLens.empty()) {
    s << " docs=[";
    for (size_t i = 0; i < spec_.docLens.size(); ++i) s << (i ? "," : "") << spec_.docLens[i];
    s << "]";
  }
  if (spec_.scale != 0.f) s << " scale=" << spec_.scale;
  s << " layout=" << static_cast<int>(spec_.layout) << " " << seedText(seed_);
  return s.str();
}

const RefForward& AttnCase::reference() {
  if (!haveFwd_) {
    fwd_ = refForward(desc_, q_.toDouble(), k_.toDouble(), v_.toDouble());
    haveFwd_ = true;
  }
  return fwd_;
}

const RefGrads& AttnCase::referenceGrads() {
  if (!haveBwd_) {
    grads_ = refBackward(desc_, q_.toDouble(), k_.toDouble(), v_.toDouble(), dout_.toDouble());
    haveBwd_ = true;
  }
  return grads_;
}

}  // namespace attnccl_test
