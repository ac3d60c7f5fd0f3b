// Reduce: root's recvbuff = op over ranks 0..P-1 of their sendbuff (N elements each). Other
// ranks' recvbuff is never written (it may be NULL there).
//
// Small messages: every rank sends its buffer to the root, which reduces the P in rank order:
// one round, (P-1) N into the root.
//
// Large messages: the reduce-scatter phase (segments.h), each chunk then gathered to the root.
//
//   reduce-scatter   rank r reduces seg r (rank order); the root into recvbuff, the others
//                    into a spare chunk of scratch
//   gather           after each chunk, every non-root sends it to the root, which receives it
//                    straight into its place in recvbuff
//
//   the root receives 2 (P-1)/P N instead of (P-1) N and reduces N/P x P elements instead of
//   N x P: the reduction work is spread over all ranks.
//
// The result is bit-identical to AllReduce's (same split, same order, same reduction). In place
// on the root: a chunk of the root's buffer is overwritten by the gather only in the round after
// its reduce-scatter, when the peer that read it has finished.
#include <algorithm>

#include "collectives/exchange.h"
#include "collectives/reduce.h"
#include "collectives/segments.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

namespace {

// AllReduce's crossover rule (bytes x P), not measured separately: the two paths of Reduce differ
// like AllReduce's, by one round per chunk against (P-1) N into one rank.
constexpr size_t kSmallBytesTimesRanks = 256u << 10;

attncclResult_t reduceSmall(attncclComm* comm, const char* send, char* recv, size_t count, attncclDataType_t t,
                            attncclRedOp_t op, int root) {
  if (comm->rank != root) return exchangeWholeAndReduce(comm, send, nullptr, count, t, op, {root}, {});
  return exchangeWholeAndReduce(comm, send, recv, count, t, op, {}, peerOrder(comm->rank, comm->nranks));
}

attncclResult_t reduceLarge(attncclComm* comm, const char* send, char* recv, size_t count, attncclDataType_t t,
                            attncclRedOp_t op, int root) {
  const int n = comm->nranks, me = comm->rank;
  const size_t sz = dtypeSize(t);
  const Split split = evenSplit(count, n);
  const size_t chunk = std::min(segmentChunkElems(t), std::max<size_t>(split.maxLen, 1));
  ChunkOut out = [&](size_t off, size_t, char* spare) {
    return me == root ? recv + (split.off[me] + off) * sz : spare;
  };
  ChunkDone gather = [&](size_t off, size_t len, char* reduced) -> attncclResult_t {
    std::vector<Transfer> sends, recvs;
    if (me != root) {
      if (len) sends.push_back({root, reduced, len * sz});
    } else {
      for (int p : peerOrder(me, n)) {
        const size_t theirs = split.len[p] > off ? std::min(chunk, split.len[p] - off) : 0;
        if (theirs) recvs.push_back({p, recv + (split.off[p] + off) * sz, theirs * sz});
      }
    }
    return exchange(comm, kTagColl, sends, recvs);
  };
  return reduceOwnSegment(comm, send, split, t, op, out, gather);
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclReduce(const void* sendbuff, void* recvbuff, size_t count,
                                          attncclDataType_t datatype, attncclRedOp_t op, int root, attncclComm_t comm,
                                          cudaStream_t stream) {
  const char* fn = "attncclReduce";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkOp(fn, op));
  ATTN_CHECK(checkRoot(fn, comm, root));
  ATTN_CHECK(checkStream(fn, comm, stream));
  size_t bytes = 0;
  ATTN_CHECK(checkBytes(fn, "count", count, datatype, 1, &bytes));
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, bytes));
  if (comm->rank == root) ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, bytes));
  return runCollective(comm, fn, [=] {
    const char* send = static_cast<const char*>(sendbuff);
    char* recv = static_cast<char*>(recvbuff);
    if (count == 0) return attncclSuccess;
    if (comm->nranks == 1) {
      const void* srcs[1] = {send};
      reduceInOrder(recv, srcs, 1, count, datatype, op, 1);
      return attncclSuccess;
    }
    if (bytes * comm->nranks <= kSmallBytesTimesRanks) return reduceSmall(comm, send, recv, count, datatype, op, root);
    return reduceLarge(comm, send, recv, count, datatype, op, root);
  });
}
