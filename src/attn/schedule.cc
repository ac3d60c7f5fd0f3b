#include "attn/schedule.h"

#include <cstdio>
#include <tuple>

#include "transport/engine.h"

namespace attnccl {
namespace attn {

const char* itemKindName(ItemKind k) {
  switch (k) {
    case ItemKind::kQ: return "Q";
    case ItemKind::kKV: return "KV";
    case ItemKind::kOut: return "Out";
    case ItemKind::kDQ: return "DQ";
    case ItemKind::kDKV: return "DKV";
  }
  return "?";
}

bool ItemId::operator<(const ItemId& o) const {
  return std::make_tuple(kind, origin, part, parts) < std::make_tuple(o.kind, o.origin, o.part, o.parts);
}

std::string ItemId::str() const {
  char buf[64];
  if (parts == 1) {
    snprintf(buf, sizeof(buf), "%s(%d)", itemKindName(kind), origin);
  } else {
    snprintf(buf, sizeof(buf), "%s(%d:%d/%d)", itemKindName(kind), origin, part, parts);
  }
  return buf;
}

int Schedule::numRounds() const {
  size_t n = 0;
  for (const auto& r : ranks) n = std::max(n, r.rounds.size());
  return static_cast<int>(n);
}

uint32_t itemTag(const ItemId& item) {
  // kind: 3 bits, part: 4 bits, parts: 4 bits, origin: 20 bits; above the engine's fixed tags.
  return kTagAttnBase + ((static_cast<uint32_t>(item.origin) & 0xfffffu) << 11 |
                         (static_cast<uint32_t>(item.parts - 1) & 0xfu) << 7 |
                         (static_cast<uint32_t>(item.part) & 0xfu) << 3 | static_cast<uint32_t>(item.kind));
}

}  // namespace attn
}  // namespace attnccl
