#include "attn/cpu/mask.h"

#include <algorithm>
#include <limits>

namespace attnccl {
namespace attn {
namespace cpu {

BlockKind classifyBlock(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0,
                        int64_t k1) {
  if (q0 >= q1 || k0 >= k1) return BlockKind::None;
  int64_t qd0 = q.doc[q0], qd1 = q.doc[q1 - 1], kd0 = k.doc[k0], kd1 = k.doc[k1 - 1];
  if (qd1 < kd0 || kd1 < qd0) return BlockKind::None;
  bool full = qd0 == qd1 && kd0 == kd1 && qd0 == kd0;
  int64_t qmin = q.pos[q0], qmax = q.pos[q1 - 1], kmin = k.pos[k0], kmax = k.pos[k1 - 1];
  if (m.causal) {
    if (kmin > qmax) return BlockKind::None;
    full = full && kmax <= qmin;
  }
  if (m.windowLeft >= 0) {
    if (qmin - kmax > m.windowLeft) return BlockKind::None;
    full = full && qmax - kmin <= m.windowLeft;
  }
  if (m.windowRight >= 0) {
    if (kmin - qmax > m.windowRight) return BlockKind::None;
    full = full && kmax - qmin <= m.windowRight;
  }
  return full ? BlockKind::Full : BlockKind::Partial;
}

void visibleRanges(const MaskSpec& m, const Tokens& q, int64_t q0, int64_t q1, const Tokens& k, int64_t k0,
                   int64_t k1, int64_t* lo, int64_t* hi) {
  const int64_t* kpos = k.pos;
  const int64_t* kdoc = k.doc;
  for (int64_t i = q0; i < q1; ++i) {
    int64_t pi = q.pos[i], di = q.doc[i];
    // Documents: keys of document di.
    int64_t a = std::lower_bound(kdoc + k0, kdoc + k1, di) - kdoc;
    int64_t b = std::upper_bound(kdoc + a, kdoc + k1, di) - kdoc;
    if (m.windowLeft >= 0) a = std::max(a, static_cast<int64_t>(std::lower_bound(kpos + a, kpos + k1, pi - m.windowLeft) - kpos));
    int64_t upper = -1;  // largest visible key position, -1 = unbounded
    if (m.causal) upper = pi;
    if (m.windowRight >= 0) {
      // pi + windowRight, saturated (a huge window must not overflow)
      const int64_t right = m.windowRight > std::numeric_limits<int64_t>::max() - pi ? std::numeric_limits<int64_t>::max()
                                                                                  : pi + m.windowRight;
      upper = upper < 0 ? right : std::min(upper, right);
    }
    if (upper >= 0 && a < b) b = std::upper_bound(kpos + a, kpos + b, upper) - kpos;
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
