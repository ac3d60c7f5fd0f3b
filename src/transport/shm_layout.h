// Layout of a rank's shm segment: a header page, then one inbound channel per rank of the node.
// A channel is written by one sender and read by this rank (single producer, single consumer):
//
//   segment: [ SegHeader | channel(local 0) | channel(local 1) | ... ]
//   channel: [ ctrl ring: head, tail, slots[S] (64-byte CtrlMsg + inline payload) ]
//            [ chunk ring: head, tail, chunks[C] (staged path only) ]
//
// The sender advances head after filling a slot (release); the receiver advances tail after
// consuming one (release). Slot i lives at index i mod S. Sizes are chosen by the segment's
// owner and published in its header, so sender and receiver always agree.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "transport/doorbell.h"
#include "transport/transport.h"

namespace attnccl {
namespace shm {

constexpr uint64_t kSegMagic = 0xa77cc15e9a11ull;

// RTS flag: the sender asks the receiver to read the buffer itself (Op::pull), by CMA where the
// staged ring would otherwise carry it.
constexpr uint32_t kRtsPull = 1;

enum MsgType : uint32_t {
  kEager = 1,  // payload inline in the slot
  kRts = 2,    // large message ready: the receiver pulls it (direct) or asks for chunks (CTS)
  kFin = 3,    // receiver -> sender: pulled; the send buffer is free (flags: error)
  kCts = 4,    // receiver -> sender: stream the message through the chunk ring
  kData = 5,   // sender -> receiver: the next chunk of the chunk ring holds bytes of a message
};

struct CtrlMsg {
  uint32_t type;
  uint32_t tag;
  uint64_t msgId;    // sender's id of the message (echoed by FIN/CTS); DATA: receiver's recv id
  uint64_t bytes;    // EAGER/RTS: message size; DATA: chunk length
  uint64_t addr;     // RTS: source address in the sender; CTS: receiver's recv id; DATA: offset
  uint64_t regionId;   // RTS from a library region: its handle (else 0)
  uint64_t regionSize;
  uint64_t regionBase;
  int32_t regionFd;
  uint32_t flags;      // FIN: 1 = the receive failed (truncation); RTS: kRtsPull
};
static_assert(sizeof(CtrlMsg) == 64, "CtrlMsg is one cache line");

struct alignas(64) RingIndex {
  std::atomic<uint64_t> value{0};
  char pad[64 - sizeof(std::atomic<uint64_t>)];
};

struct ChannelHeader {
  RingIndex ctrlHead;   // written by the sender
  RingIndex ctrlTail;   // written by the receiver
  RingIndex chunkHead;  // written by the sender
  RingIndex chunkTail;  // written by the receiver
};

struct alignas(4096) SegHeader {
  uint64_t magic;
  int32_t pid;
  int32_t rank;
  uint64_t pidStartTime;  // /proc/<pid>/stat field 22: tells a reused pid from the owner
  uint32_t nLocal;
  uint32_t ctrlSlots;
  uint64_t eagerBytes;    // inline payload per slot
  uint32_t chunkSlots;
  uint32_t pad0;
  uint64_t chunkBytes;
  uint64_t channelBytes;  // stride between channels
  alignas(64) StatsBlock stats;
  alignas(64) std::atomic<uint32_t> closing;  // set by the owner when it leaves (destroy/abort)
  // The owner sleeps on it while waiting; every peer rings it after publishing into the owner's
  // channels or freeing space in its own (doorbell.h).
  Doorbell bell;
};
static_assert(sizeof(SegHeader) == 4096, "the header is one page");

inline size_t slotBytes(uint64_t eagerBytes) { return sizeof(CtrlMsg) + ((eagerBytes + 63) / 64) * 64; }

inline size_t channelBytes(uint32_t ctrlSlots, uint64_t eagerBytes, uint32_t chunkSlots, uint64_t chunkBytes) {
  size_t b = sizeof(ChannelHeader) + ctrlSlots * slotBytes(eagerBytes) + chunkSlots * chunkBytes;
  return (b + 4095) / 4096 * 4096;
}

struct ChannelView {
  ChannelHeader* hdr = nullptr;
  char* slots = nullptr;
  char* chunks = nullptr;
  uint32_t ctrlSlots = 0;
  size_t slotStride = 0;
  uint64_t eagerBytes = 0;
  uint32_t chunkSlots = 0;
  uint64_t chunkBytes = 0;

  CtrlMsg* slot(uint64_t i) const { return reinterpret_cast<CtrlMsg*>(slots + (i % ctrlSlots) * slotStride); }
  char* inlineData(uint64_t i) const { return reinterpret_cast<char*>(slot(i)) + sizeof(CtrlMsg); }
  char* chunk(uint64_t i) const { return chunks + (i % chunkSlots) * chunkBytes; }
};

// View of channel `index` of a mapped segment.
inline ChannelView channelOf(SegHeader* seg, uint32_t index) {
  ChannelView v;
  char* base = reinterpret_cast<char*>(seg) + sizeof(SegHeader) + index * seg->channelBytes;
  v.hdr = reinterpret_cast<ChannelHeader*>(base);
  v.ctrlSlots = seg->ctrlSlots;
  v.slotStride = slotBytes(seg->eagerBytes);
  v.eagerBytes = seg->eagerBytes;
  v.slots = base + sizeof(ChannelHeader);
  v.chunkSlots = seg->chunkSlots;
  v.chunkBytes = seg->chunkBytes;
  v.chunks = v.slots + static_cast<size_t>(v.ctrlSlots) * v.slotStride;
  return v;
}

}  // namespace shm
}  // namespace attnccl
