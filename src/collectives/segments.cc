// The shared reduce-scatter phase (formulas and picture in segments.h).
//
// Scratch (comm->collScratch): P receive slots of one chunk each (slot j holds rank j's chunk;
// this rank's own slot stays unused, its contribution is read straight from `send`), then one
// spare chunk for callers that must not write their output in place (Reduce on a non-root).
//
// The chunk bounds the scratch whatever N is and keeps the slots that the reduction reads back
// in the caches. Measured (all_reduce_perf, 4-64 MiB, 2 and 4 ranks): 1 MiB at least as fast
// as 4 MiB, 256 KiB clearly slower (more rounds).
#include "collectives/segments.h"

#include <algorithm>

#include "collectives/exchange.h"
#include "collectives/reduce.h"
#include "core/dtype.h"
#include "core/result.h"

namespace attnccl {
namespace {

constexpr size_t kChunkBytes = 1u << 20;

}  // namespace

Split evenSplit(size_t count, int n) {
  Split s;
  s.off.resize(n);
  s.len.resize(n);
  const size_t base = count / n, extra = count % n;
  size_t at = 0;
  for (int r = 0; r < n; ++r) {
    s.off[r] = at;
    s.len[r] = base + (static_cast<size_t>(r) < extra ? 1 : 0);
    at += s.len[r];
    s.maxLen = std::max(s.maxLen, s.len[r]);
  }
  return s;
}

Split blockSplit(size_t block, int n) {
  Split s;
  s.off.resize(n);
  s.len.assign(n, block);
  for (int r = 0; r < n; ++r) s.off[r] = static_cast<size_t>(r) * block;
  s.maxLen = block;
  return s;
}

size_t segmentChunkElems(attncclDataType_t t) { return std::max<size_t>(1, kChunkBytes / dtypeSize(t)); }

attncclResult_t reduceOwnSegment(attncclComm* comm, const char* send, const Split& split, attncclDataType_t t,
                                 attncclRedOp_t op, const ChunkOut& out, const ChunkDone& after,
                                 PendingSends* sends) {
  PendingSends own;
  PendingSends* pending = sends ? sends : &own;
  const int n = comm->nranks, me = comm->rank;
  const size_t sz = dtypeSize(t);
  const size_t chunk = std::min(segmentChunkElems(t), std::max<size_t>(split.maxLen, 1));
  const size_t chunkBytes = (chunk * sz + 63) / 64 * 64;  // slots start 64-byte aligned
  std::vector<char>& scratch = comm->collScratch;
  const size_t need = (static_cast<size_t>(n) + 1) * chunkBytes;
  if (scratch.size() < need) scratch.resize(need);
  char* slots = scratch.data();
  char* spare = slots + static_cast<size_t>(n) * chunkBytes;
  std::vector<const void*> srcs(n);
  for (size_t at = 0; at < split.maxLen; at += chunk) {
    auto lenOf = [&](int r) { return split.len[r] > at ? std::min(chunk, split.len[r] - at) : size_t(0); };
    const size_t len = lenOf(me);
    std::vector<Transfer> outs, ins;
    for (int p : peerOrder(me, n)) {
      const size_t theirs = lenOf(p);
      if (theirs) outs.push_back({p, const_cast<char*>(send) + (split.off[p] + at) * sz, theirs * sz});
      if (len) ins.push_back({p, slots + static_cast<size_t>(p) * chunkBytes, len * sz});
    }
    ATTN_CHECK(exchangeDeferSends(comm, kTagColl, outs, ins, pending));
    char* dst = nullptr;
    if (len) {
      for (int p = 0; p < n; ++p) srcs[p] = p == me ? send + (split.off[me] + at) * sz : slots + p * chunkBytes;
      dst = out(at, len, spare);
      reduceInOrder(dst, srcs.data(), n, len, t, op, n);
    }
    if (after) ATTN_CHECK(after(at, len, dst));
  }
  return sends ? attncclSuccess : waitSends(comm, &own);
}

attncclResult_t exchangeWholeAndReduce(attncclComm* comm, const char* send, char* recv, size_t count,
                                       attncclDataType_t t, attncclRedOp_t op, const std::vector<int>& sendTo,
                                       const std::vector<int>& recvFrom) {
  const int n = comm->nranks, me = comm->rank;
  const size_t bytes = count * dtypeSize(t);
  const size_t slot = (bytes + 63) / 64 * 64;
  std::vector<char>& scratch = comm->collScratch;
  if (!recvFrom.empty() && scratch.size() < slot * n) scratch.resize(slot * n);
  std::vector<Transfer> sends, recvs;
  for (int p : sendTo) sends.push_back({p, const_cast<char*>(send), bytes});
  for (int p : recvFrom) recvs.push_back({p, scratch.data() + p * slot, bytes});
  ATTN_CHECK(exchange(comm, kTagColl, sends, recvs));
  if (recv == nullptr) return attncclSuccess;
  std::vector<const void*> srcs(n);
  for (int p = 0; p < n; ++p) srcs[p] = p == me ? static_cast<const void*>(send) : scratch.data() + p * slot;
  reduceInOrder(recv, srcs.data(), n, count, t, op, n);
  return attncclSuccess;
}

}  // namespace attnccl
