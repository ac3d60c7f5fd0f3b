// AllReduce: every rank's recvbuff = op over ranks 0..P-1 of their sendbuff (N elements each).
//
// Large messages: the reduce-scatter phase (segments.h) over an even split (uneven when P does
// not divide N), then an all-gather of the reduced segments.
//
//   sendbuff (every rank)   [ s0 | s1 | ... | sP-1 ]
//   reduce-scatter          rank r: recvbuff seg r = op(seg r of rank 0, 1, ..., P-1)
//   all-gather              rank r sends seg r to every peer, receives the others in place
//
//   per rank: (P-1)/P N out and in for each phase = 2 (P-1)/P N, the ring's volume, which no
//   all-reduce can beat; the reduction work is N/P x P elements per rank, spread evenly.
//
// Small messages: one round. Every rank sends its whole buffer to every peer and reduces all P
// in rank order itself: (P-1) N per rank, one message latency instead of two phases.
//
// Both reduce in rank order 0..P-1 with the same code, so every rank gets the same bits and a
// rerun gets them again (the choice depends only on N, the type and P, the same everywhere).
// In place (sendbuff == recvbuff): a segment is written only after every peer has read it
// (the phases' exchanges complete before the next step) and the reduction writes a tile only
// after reading it.
#include "collectives/exchange.h"
#include "collectives/reduce.h"
#include "collectives/segments.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

namespace {

// The one-round path while bytes x P <= kSmallBytesTimesRanks. Its cost grows with (P-1) N
// (received, then reduced), the large path's with 2 (P-1)/P N plus one more round, so the
// crossover falls as P grows. Measured here (perf/RESULTS.md, "AllReduce and Broadcast"; threads
// over shm, best of 3 interleaved runs on a loaded machine): 2 ranks cross between 128 and
// 256 KiB, 4 ranks between 64 and 128 KiB.
constexpr size_t kSmallBytesTimesRanks = 256u << 10;

attncclResult_t allReduceSmall(attncclComm* comm, const char* send, char* recv, size_t count, attncclDataType_t t,
                               attncclRedOp_t op) {
  const std::vector<int> peers = peerOrder(comm->rank, comm->nranks);
  return exchangeWholeAndReduce(comm, send, recv, count, t, op, peers, peers);
}

attncclResult_t allReduceLarge(attncclComm* comm, const char* send, char* recv, size_t count, attncclDataType_t t,
                               attncclRedOp_t op) {
  const int n = comm->nranks, me = comm->rank;
  const size_t sz = dtypeSize(t);
  const Split split = evenSplit(count, n);
  char* own = recv + split.off[me] * sz;
  // The reduce-scatter's sends are waited for at the end only (segments.h): the all-gather
  // writes segment p of recv (in place: of send) with p's result, which p sends only after it
  // received segment p from here.
  PendingSends phase1;
  ATTN_CHECK(reduceOwnSegment(
      comm, send, split, t, op, [own, sz](size_t off, size_t, char*) { return own + off * sz; }, ChunkDone(), &phase1));
  std::vector<Transfer> sends, recvs;
  for (int p : peerOrder(me, n)) {
    if (split.len[me]) sends.push_back({p, own, split.len[me] * sz});
    if (split.len[p]) recvs.push_back({p, recv + split.off[p] * sz, split.len[p] * sz});
  }
  ATTN_CHECK(exchange(comm, kTagColl, sends, recvs));
  return waitSends(comm, &phase1);
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                             attncclDataType_t datatype, attncclRedOp_t op, attncclComm_t comm,
                                             cudaStream_t stream) {
  const char* fn = "attncclAllReduce";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkOp(fn, op));
  ATTN_CHECK(checkStream(fn, comm, stream));
  size_t bytes = 0;
  ATTN_CHECK(checkBytes(fn, "count", count, datatype, 1, &bytes));
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, bytes));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, bytes));
  return runCollective(comm, fn, [=] {
    const char* send = static_cast<const char*>(sendbuff);
    char* recv = static_cast<char*>(recvbuff);
    if (count == 0) return attncclSuccess;
    if (comm->nranks == 1) {
      const void* srcs[1] = {send};
      reduceInOrder(recv, srcs, 1, count, datatype, op, 1);
      return attncclSuccess;
    }
    if (bytes * comm->nranks <= kSmallBytesTimesRanks) return allReduceSmall(comm, send, recv, count, datatype, op);
    return allReduceLarge(comm, send, recv, count, datatype, op);
  });
}
