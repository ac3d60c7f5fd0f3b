// Which global tokens a rank holds under a layout (docs/api.md, "Layouts and tensors"). Every
// document is split independently; a rank's tokens are the concatenation over documents, increasing.
//   contiguous: P pieces in order            doc: [ r0 | r1 | r2 ]
//   zigzag:     2P pieces, r takes r, 2P-1-r  doc: [ r0 | r1 | r2 | r2 | r1 | r0 ]
//   striped:    position p -> rank p mod P    doc: r0 r1 r2 r0 r1 r2 ...
// Pieces are as even as possible: piece i of n over a length L starts at i*L/n rounded so that
// sizes differ by at most one (the first L mod n pieces are one longer).
#pragma once

#include <cstdint>
#include <vector>

#include "attn/desc.h"

namespace attnccl {
namespace attn {

// [begin, end) of piece i when a length L is cut into n pieces as evenly as possible.
void evenPiece(int64_t L, int64_t n, int64_t i, int64_t* begin, int64_t* end);

int64_t localTokenCount(const AttnShape& s, int nranks, int rank);
// The rank's global positions, increasing.
std::vector<int64_t> localPositions(const AttnShape& s, int nranks, int rank);
// Document index of each position (positions increasing).
std::vector<int64_t> documentIds(const AttnShape& s, const std::vector<int64_t>& positions);

}  // namespace attn
}  // namespace attnccl
