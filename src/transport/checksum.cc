#include "transport/checksum.h"

#include <cstring>

namespace attnccl {
namespace {

// Odd constants with well-spread bits (the golden ratio's and two other 64-bit primes).
constexpr uint64_t kMulA = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kMulB = 0xd6e8feb86659fd93ull;
constexpr uint64_t kMulC = 0xa0761d6478bd642full;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t load64(const unsigned char* p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

inline uint64_t lane(uint64_t acc, uint64_t word) { return rotl(acc ^ (word * kMulB), 29) * kMulA; }

inline uint64_t avalanche(uint64_t h) {
  h ^= h >> 32;
  h *= kMulC;
  h ^= h >> 29;
  h *= kMulB;
  h ^= h >> 32;
  return h;
}

}  // namespace

uint64_t checksum64(const void* data, size_t bytes) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t a = kMulA, b = kMulB, c = kMulC, d = kMulA ^ kMulC;
  size_t n = bytes;
  for (; n >= 32; n -= 32, p += 32) {
    a = lane(a, load64(p));
    b = lane(b, load64(p + 8));
    c = lane(c, load64(p + 16));
    d = lane(d, load64(p + 24));
  }
  uint64_t h = rotl(a, 1) + rotl(b, 17) + rotl(c, 33) + rotl(d, 49);
  for (; n >= 8; n -= 8, p += 8) h = lane(h, load64(p));
  uint64_t tail = 0;
  if (n > 0) {
    memcpy(&tail, p, n);  // the remaining 1..7 bytes, zero-padded
    h = lane(h, tail ^ (static_cast<uint64_t>(n) << 56));
  }
  return avalanche(h ^ (static_cast<uint64_t>(bytes) * kMulC));
}

}  // namespace attnccl
