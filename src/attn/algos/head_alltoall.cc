// attncclHeadAllToAll on a communicator of more than one rank: one head exchange of one tensor,
// ranks holding the descriptor's layout, heads split by attncclHeadRange.
//   attncclSeqToHead: in [T_local][numHeads][D] -> out [seqLen][H_r][D]
//   attncclHeadToSeq: in [seqLen][H_r][D]      -> out [T_local][numHeads][D]
// Volume per rank r (seq->head; head->seq swaps sent and received):
//   sent = sum_{j != r} T_r H_j D es     recv = sum_{j != r} T_j H_r D es
#include <vector>

#include "attn/algos/head_exchange.h"
#include "attn/comm_state.h"
#include "attn/dispatch.h"
#include "attn/layout.h"
#include "core/dtype.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

attncclResult_t headAllToAll(attncclComm* comm, const AttnShape& s, const void* in, void* out, int numHeads,
                             int direction) {
  const int P = comm->nranks, me = comm->rank;
  const size_t es = dtypeSize(s.dtype);
  HeadGroup g = layoutGroup(s, P, me);
  std::vector<HeadRange> ranges(P);
  for (int m = 0; m < P; ++m) {
    int64_t b, e;
    evenPiece(numHeads, P, m, &b, &e);
    ranges[m] = HeadRange{static_cast<int>(b), static_cast<int>(e - b)};
  }
  const bool toHead = direction == attncclSeqToHead;
  const int64_t seqBytes = g.tokens(me) * numHeads * s.headDim * static_cast<int64_t>(es);
  const int64_t headBytes = g.total * ranges[me].count * s.headDim * static_cast<int64_t>(es);
  const char* inB = static_cast<const char*>(in);
  const char* outB = static_cast<const char*>(out);
  const int64_t inBytes = toHead ? seqBytes : headBytes, outBytes = toHead ? headBytes : seqBytes;
  if (inBytes > 0 && outBytes > 0 && inB < outB + outBytes && outB < inB + inBytes) {
    return fail(attncclInvalidArgument, "attncclHeadAllToAll: in (%p, %lld bytes) and out (%p, %lld bytes) overlap",
                in, static_cast<long long>(inBytes), out, static_cast<long long>(outBytes));
  }
  const void* seq = toHead ? in : out;
  const void* head = toHead ? out : in;
  HeadExchange x(g, toHead ? HeadDir::kSeqToHead : HeadDir::kHeadToSeq,
                 {rowsField(seq, numHeads, const_cast<void*>(head), ranges[me], s.headDim, es, ranges)});
  char* buf = nullptr;
  ATTN_CHECK(attnState(comm).arena.ensure(x.sendBytes() + x.recvBytes() + 64, &buf));
  ThreadPool& pool = *comm->pool;
  Engine& e = comm->engine;
  ATTN_CHECK(x.post(e, kTagHeadExchange, buf, buf + x.sendBytes(), pool, [&e] { (void)e.progress(); }));
  return x.finish(pool);
}

}  // namespace attn
}  // namespace attnccl
