// Helpers shared by the tensor-core kernels: the swizzled shared-memory layout of 16-bit tiles,
// their cp.async loaders, and the token metadata loader.
//
// A tile row of kD 16-bit elements is kD/8 chunks of 16 bytes. Chunk c of row r is stored at
// chunk position c ^ (r % 8): the 8 rows an ldmatrix phase reads (same logical chunk, 8
// consecutive rows) then sit in 8 different 16-byte bank groups, so reads are conflict-free.
//
//   row r:  [c0^r][c1^r][c2^r] ...    (XOR on the low 3 bits of the chunk index)
#pragma once

#include "attn/gpu/portable.h"
#include "attn/gpu/tile_params.h"

namespace attnccl {
namespace attn {
namespace gpu {

ATTN_DEV int swz(int row, int chunk) { return chunk ^ (row & 7); }

// Address of element (row, 8*chunk) of a swizzled tile with kD columns.
template <int kD>
ATTN_DEV uint16_t* tileAt(uint16_t* tile, int row, int chunk) {
  return tile + row * kD + swz(row, chunk) * 8;
}

// Rows [row0, row0 + kRows) of a [n][...] tensor (g points at the head's first element, row
// stride ld elements) into a swizzled tile; rows >= n and columns >= D are zero-filled.
template <int kRows, int kD, int kThreads>
ATTN_DEV void loadTile16(uint16_t* tile, const uint16_t* g, int64_t ld, int64_t row0, int64_t n, int D) {
  constexpr int kChunks = kD / 8;
  for (int idx = threadIdxX(); idx < kRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks;
    const int ch = idx % kChunks;
    const bool valid = row0 + r < n && ch * 8 < D;
    const uint16_t* src = valid ? g + (row0 + r) * ld + ch * 8 : g;
    cpAsync16(tileAt<kD>(tile, r, ch), src, valid);
  }
}

// Document of a token outside its block: never equal to a real document (>= 0), and different
// for missing queries and missing keys so they never see each other.
constexpr int64_t kNoQueryDoc = -2;
constexpr int64_t kNoKeyDoc = -1;

// Positions and documents of tokens [b, b + kRows) into shared memory (plain stores: the
// caller's next barrier publishes them).
template <int kRows, int kThreads>
ATTN_DEV void loadMeta(int64_t* sPos, int64_t* sDoc, const DevTokens& t, int64_t b, int64_t missingDoc) {
  for (int i = threadIdxX(); i < kRows; i += kThreads) {
    const int64_t idx = b + i;
    const bool ok = idx < t.n;
    sPos[i] = ok ? tokPos(t, idx) : 0;
    sDoc[i] = ok ? tokDoc(t, idx) : missingDoc;
  }
}

// A fragment (16 x 16, row-major) of two adjacent accumulator n-tiles: the C layout of an
// m16n8 accumulator pair is the A layout of an m16k16 operand.
template <typename T>
ATTN_DEV void accToA(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = packPair<T>(c0[0], c0[1]);
  a[1] = packPair<T>(c0[2], c0[3]);
  a[2] = packPair<T>(c1[0], c1[1]);
  a[3] = packPair<T>(c1[2], c1[3]);
}

// ldmatrix row addresses for the three operand shapes (lane = lane index, base row/chunk of the
// 16 x 16 block):
//  - A operand, row-major [m][k] tile:           ldsmX4(rowA)      -> a[0..3]
//  - B operand from a [n][k] tile (e.g. K for QK^T): ldsmX4(rowBnk) -> b for n-tiles 0 and 1
//  - B operand from a [k][n] tile (e.g. V for PV):   ldsmX4T(rowBkn) -> b for n-tiles 0 and 1
template <int kD>
ATTN_DEV const uint16_t* rowA(const uint16_t* tile, int row0, int chunk0, int lane) {
  const int r = row0 + (lane & 7) + (((lane >> 3) & 1) << 3);
  return tileAt<kD>(const_cast<uint16_t*>(tile), r, chunk0 + (lane >> 4));
}
template <int kD>
ATTN_DEV const uint16_t* rowBnk(const uint16_t* tile, int n0, int chunk0, int lane) {
  const int r = n0 + (lane & 7) + ((lane >> 4) << 3);
  return tileAt<kD>(const_cast<uint16_t*>(tile), r, chunk0 + ((lane >> 3) & 1));
}
template <int kD>
ATTN_DEV const uint16_t* rowBkn(const uint16_t* tile, int k0, int chunk0, int lane) {
  const int r = k0 + (lane & 7) + (((lane >> 3) & 1) << 3);
  return tileAt<kD>(const_cast<uint16_t*>(tile), r, chunk0 + (lane >> 4));
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
