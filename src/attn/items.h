// What the items of a schedule (attn/schedule.h) hold, byte for byte, for one rank's executor.
// A travelling item is a few segments, sent as consecutive messages with the item's tag:
//   Q   forward:  q[rows][Hq][D]                     (storage dtype)
//       backward: q | dO (same shape) | LSE f32[Hq][rows] | Delta f32[Hq][rows]
//   KV  k[rows][Hkv][D] | v[rows][Hkv][D]            (storage dtype)
//   Out O f32[rows][Hq][D] | LSE f32[Hq][rows]
//   DQ  f32[rows][Hq][D]
//   DKV dK f32[rows][Hkv][D] | dV f32[rows][Hkv][D]
// Hq and Hkv are the head counts the problem's tensors carry (all heads, or a head group).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attn/schedule.h"

namespace attnccl {
namespace attn {

struct Segment {
  char* ptr = nullptr;
  size_t bytes = 0;
};

struct ItemLayout {
  int64_t rowBegin = 0, rows = 0;  // rows of the origin's tokens
  std::vector<size_t> segBytes;    // size of each segment
  size_t bytes() const;
};

ItemLayout itemLayout(const Problem& p, const ItemId& id, bool backward);

// Bytes of a slot holding the item (segments 64-byte aligned).
size_t slotBytes(const ItemLayout& l);
// Segment pointers of an item stored contiguously at base (a slot).
std::vector<Segment> slotSegments(const ItemLayout& l, char* base);

}  // namespace attn
}  // namespace attnccl
