// End-to-end transfer checksums (ATTNCCL_CHECKSUM=1). Each message a rank sends to another rank is
// followed, on the same (peer, tag) stream, by a trailer carrying a 64-bit hash of the payload and
// its length; the receiver hashes what arrived and compares. Streams are FIFO per (peer, tag), so
// a payload and its trailer always meet the receive and the trailer receive posted for them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace attnccl {

// 64-bit hash of a byte range: four independent multiply-rotate lanes over 8-byte words (fast
// enough to run on every message in a debugging mode), a tail, and a final avalanche that mixes
// in the length. Not cryptographic; it catches corrupted, truncated and misrouted payloads.
uint64_t checksum64(const void* data, size_t bytes);

struct ChecksumTrailer {
  uint64_t hash = 0;
  uint64_t bytes = 0;
};
static_assert(sizeof(ChecksumTrailer) == 16, "the trailer is two words on the wire");

}  // namespace attnccl
