#include "attn/cpu/mask.h"

#include <algorithm>

namespace attnccl {
namespace attn {
namespace cpu {

BlockKind classifyBlock(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0,
                        int64_t k1) {
  if (q0 >= q1 || k0 >= k1) return BlockKind::None;
  const BlockSpan qs{q.pos[q0], q.pos[q1 - 1], q.doc[q0], q.doc[q1 - 1]};
  const BlockSpan ks{k.pos[k0], k.pos[k1 - 1], k.doc[k0], k.doc[k1 - 1]};
  return static_cast<BlockKind>(classifySpans(m, qs, ks));
}

void visibleRanges(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0,
                   int64_t k1, int64_t* lo, int64_t* hi) {
  const int64_t* kpos = k.pos;
  const int64_t* kdoc = k.doc;
  for (int64_t i = q0; i < q1; ++i) {
    const int64_t pi = q.pos[i], di = q.doc[i];
    // The block's keys of document di, [a, b), then the rule's positions inside their span.
    int64_t a = std::lower_bound(kdoc + k0, kdoc + k1, di) - kdoc;
    int64_t b = std::upper_bound(kdoc + a, kdoc + k1, di) - kdoc;
    if (a < b) {
      int64_t plo, phi;
      visibleKeyRange(m, pi, kpos[a], kpos[b - 1] + 1, &plo, &phi);
      if (plo >= phi) {
        b = a;
      } else {
        if (plo > kpos[a]) a = std::lower_bound(kpos + a, kpos + b, plo) - kpos;
        if (phi <= kpos[b - 1]) b = std::lower_bound(kpos + a, kpos + b, phi) - kpos;
      }
    }
    lo[i - q0] = a;
    hi[i - q0] = std::max(a, b);
  }
}

bool blockUse(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0, int64_t k1,
              int64_t* lo, int64_t* hi, BlockUse* use) {
  use->kind = classifyBlock(m, q, q0, q1, k, k0, k1);
  if (use->kind == BlockKind::None) return false;
  if (use->kind == BlockKind::Full) {
    for (int64_t i = 0; i < q1 - q0; ++i) {
      lo[i] = k0;
      hi[i] = k1;
    }
    use->r0 = 0;
    use->r1 = q1 - q0;
    use->c0 = k0;
    use->c1 = k1;
    return true;
  }
  visibleRanges(m, q, q0, q1, k, k0, k1, lo, hi);
  int64_t r0 = -1, r1 = -1, c0 = k1, c1 = k0;
  for (int64_t i = 0; i < q1 - q0; ++i) {
    if (lo[i] >= hi[i]) continue;
    if (r0 < 0) r0 = i;
    r1 = i + 1;
    c0 = std::min(c0, lo[i]);
    c1 = std::max(c1, hi[i]);
  }
  if (r0 < 0) return false;
  use->r0 = r0;
  use->r1 = r1;
  use->c0 = c0;
  use->c1 = c1;
  return true;
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
