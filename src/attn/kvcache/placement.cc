#include "attn/kvcache/placement.h"

#include <algorithm>

namespace attnccl {
namespace attn {

namespace {

// Contiguous pieces: the first `rem` pieces have base + 1 positions, the others base.
void pieceBounds(int64_t capacity, int nranks, int rank, int64_t* begin, int64_t* end) {
  const int64_t base = capacity / nranks, rem = capacity % nranks;
  *begin = rank * base + std::min<int64_t>(rank, rem);
  *end = *begin + base + (rank < rem ? 1 : 0);
}

}  // namespace

int KvPlacement::owner(int64_t pos) const {
  if (kind == attncclKvPlaceRoundRobin) return static_cast<int>((pos / block) % nranks);
  const int64_t base = capacity / nranks, rem = capacity % nranks;
  const int64_t longPart = rem * (base + 1);
  if (pos < longPart) return static_cast<int>(pos / (base + 1));
  return static_cast<int>(rem + (pos - longPart) / base);
}

int64_t KvPlacement::slot(int64_t pos) const {
  if (kind == attncclKvPlaceRoundRobin) return (pos / block) / nranks * block + pos % block;
  int64_t b, e;
  pieceBounds(capacity, nranks, owner(pos), &b, &e);
  return pos - b;
}

int64_t KvPlacement::ownedBelow(int rank, int64_t length) const {
  if (kind == attncclKvPlaceRoundRobin) {
    const int64_t cycle = block * nranks;
    const int64_t full = length / cycle, rest = length % cycle;
    return full * block + std::clamp<int64_t>(rest - rank * block, 0, block);
  }
  int64_t b, e;
  pieceBounds(capacity, nranks, rank, &b, &e);
  return std::clamp<int64_t>(length, b, e) - b;
}

int64_t KvPlacement::position(int rank, int64_t s) const {
  if (kind == attncclKvPlaceRoundRobin) return (s / block * nranks + rank) * block + s % block;
  int64_t b, e;
  pieceBounds(capacity, nranks, rank, &b, &e);
  return b + s;
}

int64_t defaultKvBlockTokens(int64_t capacity, int nranks) {
  const int64_t perRank = (capacity + 4 * int64_t{nranks} - 1) / (4 * int64_t{nranks});
  return std::min<int64_t>(256, std::max<int64_t>(16, perRank));
}

}  // namespace attn
}  // namespace attnccl
