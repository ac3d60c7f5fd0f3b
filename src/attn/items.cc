#include "attn/items.h"

#include "core/dtype.h"

namespace attnccl {
namespace attn {

size_t ItemLayout::bytes() const {
  size_t b = 0;
  for (size_t s : segBytes) b += s;
  return b;
}

ItemLayout itemLayout(const Problem& p, const ItemId& id, bool backward) {
  ItemLayout l;
  int64_t b, e;
  partRows(p.tokens[id.origin].size(), id.part, id.parts, &b, &e);
  l.rowBegin = b;
  l.rows = e - b;
  const size_t rows = static_cast<size_t>(l.rows);
  const size_t D = static_cast<size_t>(p.shape.headDim);
  const size_t hq = static_cast<size_t>(p.heads.numQ), hkv = static_cast<size_t>(p.heads.numKV);
  const size_t es = dtypeSize(p.shape.dtype);
  switch (id.kind) {
    case ItemKind::kQ:
      l.segBytes.push_back(rows * hq * D * es);
      if (backward) {
        l.segBytes.push_back(rows * hq * D * es);
        l.segBytes.push_back(hq * rows * sizeof(float));
        l.segBytes.push_back(hq * rows * sizeof(float));
      }
      break;
    case ItemKind::kKV:
      l.segBytes.push_back(rows * hkv * D * es);
      l.segBytes.push_back(rows * hkv * D * es);
      break;
    case ItemKind::kOut:
      l.segBytes.push_back(rows * hq * D * sizeof(float));
      l.segBytes.push_back(hq * rows * sizeof(float));
      break;
    case ItemKind::kDQ:
      l.segBytes.push_back(rows * hq * D * sizeof(float));
      break;
    case ItemKind::kDKV:
      l.segBytes.push_back(rows * hkv * D * sizeof(float));
      l.segBytes.push_back(rows * hkv * D * sizeof(float));
      break;
  }
  return l;
}

size_t slotBytes(const ItemLayout& l) {
  size_t b = 0;
  for (size_t s : l.segBytes) b += (s + 63) / 64 * 64;
  return b;
}

SlotSegments slotSegments(const ItemLayout& l, char* base) {
  SlotSegments segs;
  for (size_t b : l.segBytes) {
    segs.push_back(Segment{base, b});
    base += (b + 63) / 64 * 64;
  }
  return segs;
}

}  // namespace attn
}  // namespace attnccl
