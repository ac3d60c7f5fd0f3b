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

#include "attn/schedule.h"

namespace attnccl {
namespace attn {

struct Segment {
  char* ptr = nullptr;
  size_t bytes = 0;
};

// At most four sizes, held inline: an item's layout is formed several times per round of every
// call (the executor's slots), so it must not allocate.
class SegmentSizes {
 public:
  static constexpr size_t kMax = 4;  // backward Q: q | dO | LSE | Delta
  void push_back(size_t b) { v_[n_++] = b; }
  size_t size() const { return n_; }
  size_t operator[](size_t i) const { return v_[i]; }
  const size_t* begin() const { return v_; }
  const size_t* end() const { return v_ + n_; }

 private:
  size_t v_[kMax] = {0, 0, 0, 0};
  size_t n_ = 0;
};

struct ItemLayout {
  int64_t rowBegin = 0, rows = 0;  // rows of the origin's tokens
  SegmentSizes segBytes;           // size of each segment
  size_t bytes() const;
};

ItemLayout itemLayout(const Problem& p, const ItemId& id, bool backward);

// Bytes of a slot holding the item (segments 64-byte aligned).
size_t slotBytes(const ItemLayout& l);
// Segment pointers of an item stored contiguously at base (a slot), held inline: the executor
// forms them for every slot a round touches, so they must not allocate either.
class SlotSegments {
 public:
  void push_back(const Segment& s) { v_[n_++] = s; }
  size_t size() const { return n_; }
  const Segment& operator[](size_t i) const { return v_[i]; }
  const Segment* begin() const { return v_; }
  const Segment* end() const { return v_ + n_; }

 private:
  Segment v_[SegmentSizes::kMax];
  size_t n_ = 0;
};
SlotSegments slotSegments(const ItemLayout& l, char* base);

}  // namespace attn
}  // namespace attnccl
