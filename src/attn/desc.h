// The validated, resolved form of an attncclAttnDesc_t that the rest of the library works with:
// scale resolved, documents copied (one document when none is given), every field checked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnccl.h"

namespace attnccl {
namespace attn {

struct AttnShape {
  attncclDataType_t dtype = attncclFloat32;
  int64_t seqLen = 0;
  int numHeadsQ = 0;
  int numHeadsKV = 0;
  int headDim = 0;
  attncclLayout_t layout = attncclLayoutContiguous;
  bool causal = false;
  int64_t windowLeft = -1;   // -1 = unbounded
  int64_t windowRight = -1;  // -1 = unbounded
  float scale = 0.f;         // resolved: never 0
  std::vector<int64_t> cuSeqlens;  // numDocs+1 offsets; {0, seqLen} for one document
  // Sequences of the call (desc->batch, >= 1). Everything else describes one sequence: the entry
  // points run the backends once per sequence, so batch is not part of shapeKey.
  int64_t batch = 1;

  int64_t numDocs() const { return static_cast<int64_t>(cuSeqlens.size()) - 1; }
  int group() const { return numHeadsQ / numHeadsKV; }
  // Index of the document holding global position pos (0 <= pos < seqLen).
  int64_t docOf(int64_t pos) const;
  // Key j visible to query i (global positions): attn/visibility.h's rule.
  bool visible(int64_t i, int64_t j) const;
};

// A cache key naming every field of a shape (bytes, not text): equal keys mean equal shapes.
// Every per-shape cache (the automatic choice's decisions, the CUDA executor's programs) builds
// its key from this one, appending what else it depends on.
std::string shapeKey(const AttnShape& s);

// Validates desc (magic, size, every field) and fills *out. On failure returns
// attncclInvalidArgument with a message naming the field and its value.
attncclResult_t resolveDesc(const attncclAttnDesc_t* desc, AttnShape* out);

}  // namespace attn
}  // namespace attnccl
