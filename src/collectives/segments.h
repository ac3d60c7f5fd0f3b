// The reduce-scatter phase that ReduceScatter, AllReduce and Reduce share: the N elements of
// every rank's buffer are cut into P segments, rank r owns segment r and reduces it, chunk by
// chunk, from the P contributions in rank order.
//
//   send of rank j:  [ seg 0 | seg 1 | ... | seg P-1 ]        seg r = [off[r], off[r] + len[r])
//   round c:         rank j sends chunk c of seg r to r (r != j), receives chunk c of seg j
//                    from the P-1 others into slots, then
//   out(c) = reduceInOrder(contribution of rank 0, 1, ..., P-1)
//
// Per rank per call: (P-1)/P N elements out and in, the least any reduce-scatter can move; the
// reduction touches N/P elements of each of P sources. Rounds: ceil(max len / chunk), the same
// on every rank (every rank computes the same split), chunks of segments that are shorter or
// empty at the tail are simply not sent.
#pragma once

#include <functional>
#include <vector>

#include "collectives/exchange.h"
#include "comm/comm.h"

namespace attnccl {

struct Split {
  std::vector<size_t> off, len;  // elements, per rank
  size_t maxLen = 0;
};

// count / n elements each, the first count % n ranks one more (uneven splits of any count).
Split evenSplit(size_t count, int n);
// n blocks of `block` elements each (ReduceScatter's layout).
Split blockSplit(size_t block, int n);

// Where the reduced chunk at element `off` (within this rank's segment, `len` elements) goes;
// `spare` is a chunk-sized scratch area the caller may use for it.
using ChunkOut = std::function<char*(size_t off, size_t len, char* spare)>;
// Runs after the chunk was reduced to out(off, len) (e.g. to forward it); may be empty.
using ChunkDone = std::function<attncclResult_t(size_t off, size_t len, char* out)>;

// The chunked reduce-scatter phase over `split` of every rank's `send` (see the file comment).
// Avg divides by the rank count. `after`, when set, is called on every rank for every round,
// also where this rank's chunk is empty (len 0), so it may exchange with other ranks.
// A round waits for its receives only, not for the peers to have pulled this rank's chunks: a
// rank reduces as soon as its own inputs are there. The sends are waited for before returning,
// or, when `sends` is given, left there for the caller to wait for (waitSends) before it returns
// or writes any part of `send` that peers read (AllReduce's all-gather need not: a peer's
// segment arrives only after that peer received, hence pulled, what it needed of `send`).
attncclResult_t reduceOwnSegment(attncclComm* comm, const char* send, const Split& split, attncclDataType_t t,
                                 attncclRedOp_t op, const ChunkOut& out, const ChunkDone& after = ChunkDone(),
                                 PendingSends* sends = nullptr);

// The one-round reduction that the small paths of AllReduce and Reduce share: `recvs` gives each
// peer's whole buffer of `count` elements into collScratch (one 64-byte-aligned slot per rank),
// `sends` this rank's own to whoever needs it; both are posted at once, then recv = the P
// buffers (this rank's `send` in its own place) reduced in rank order. A rank that only sends
// (Reduce's non-roots) passes recv = nullptr and reduces nothing.
attncclResult_t exchangeWholeAndReduce(attncclComm* comm, const char* send, char* recv, size_t count,
                                       attncclDataType_t t, attncclRedOp_t op, const std::vector<int>& sendTo,
                                       const std::vector<int>& recvFrom);

// Elements per chunk of the reduce-scatter phase for type t.
size_t segmentChunkElems(attncclDataType_t t);

}  // namespace attnccl
