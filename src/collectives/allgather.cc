// AllGather: rank r's block lands at offset r of every rank's recvbuff. Direct: every rank
// receives the P-1 other blocks, each pulled once by the transport (the minimum per rank).
#include <cstring>

#include "collectives/exchange.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

ATTN_EXPORT attncclResult_t attncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                             attncclDataType_t datatype, attncclComm_t comm, cudaStream_t stream) {
  const char* fn = "attncclAllGather";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkStream(fn, comm, stream));
  size_t bytes = 0, total = 0;
  ATTN_CHECK(checkBytes(fn, "sendcount", sendcount, datatype, 1, &bytes));
  ATTN_CHECK(checkBytes(fn, "sendcount", sendcount, datatype, static_cast<size_t>(comm->nranks), &total));
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, bytes));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, total));
  return runCollective(comm, fn, [=] {
    const int n = comm->nranks, me = comm->rank;
    char* out = static_cast<char*>(recvbuff);
    if (out + me * bytes != sendbuff && bytes) memmove(out + me * bytes, sendbuff, bytes);
    std::vector<Transfer> sends, recvs;
    for (int p : peerOrder(me, n)) {
      sends.push_back({p, out + me * bytes, bytes});
      recvs.push_back({p, out + p * bytes, bytes});
    }
    return exchange(comm, kTagColl, sends, recvs);
  });
}
