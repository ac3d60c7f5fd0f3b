// Barrier: one round of zero-byte messages with every peer.
//
//   rank r: post a receive from every peer, send one to every peer, wait for all
//
// A rank leaves only after a message from every peer, and each peer sent it after entering
// the barrier, so everything a rank did before its call happens before any rank returns. The
// engine moves zero-byte messages like any other (the collectives' empty blocks use them too);
// on one rank it returns at once.
#include "collectives/exchange.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

ATTN_EXPORT attncclResult_t attncclBarrier(attncclComm_t comm, cudaStream_t stream) {
  const char* fn = "attncclBarrier";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkStream(fn, comm, stream));
  return runCollective(comm, fn, [comm] {
    static char token = 0;  // never read or written: every message is empty
    std::vector<Transfer> sends, recvs;
    for (int p : peerOrder(comm->rank, comm->nranks)) {
      sends.push_back({p, &token, 0});
      recvs.push_back({p, &token, 0});
    }
    return exchange(comm, kTagColl, sends, recvs);
  });
}
