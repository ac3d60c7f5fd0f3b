// AllToAll / AllToAllv: block j of rank i's sendbuff lands as block i of rank j's recvbuff.
// Direct: all P-1 blocks each way posted at once.
#include <cstring>

#include "collectives/exchange.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

namespace {

attncclResult_t allToAllv(attncclComm* comm, const char* sendbuff, const std::vector<size_t>& sbytes,
                          const std::vector<size_t>& soff, char* recvbuff, const std::vector<size_t>& rbytes,
                          const std::vector<size_t>& roff) {
  const int n = comm->nranks, me = comm->rank;
  if (sbytes[me] != rbytes[me]) {
    return fail(attncclInvalidArgument, "attncclAllToAllv: rank %d sends itself %zu bytes but expects %zu", me,
                sbytes[me], rbytes[me]);
  }
  if (sbytes[me]) memmove(recvbuff + roff[me], sendbuff + soff[me], sbytes[me]);
  std::vector<Transfer> sends, recvs;
  for (int p : peerOrder(me, n)) {
    sends.push_back({p, const_cast<char*>(sendbuff) + soff[p], sbytes[p]});
    recvs.push_back({p, recvbuff + roff[p], rbytes[p]});
  }
  return exchange(comm, kTagColl, sends, recvs);
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclAllToAll(const void* sendbuff, void* recvbuff, size_t count,
                                            attncclDataType_t datatype, attncclComm_t comm, cudaStream_t stream) {
  const char* fn = "attncclAllToAll";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkStream(fn, comm, stream));
  size_t bytes = 0, total = 0;
  ATTN_CHECK(checkBytes(fn, "count", count, datatype, 1, &bytes));
  ATTN_CHECK(checkBytes(fn, "count", count, datatype, static_cast<size_t>(comm->nranks), &total));
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, total));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, total));
  ATTN_ARG(sendbuff != recvbuff || total == 0, "%s: in-place (sendbuff == recvbuff) is not supported", fn);
  return runCollective(comm, fn, [=] {
    const int n = comm->nranks;
    std::vector<size_t> sizes(n, bytes), offs(n);
    for (int p = 0; p < n; ++p) offs[p] = p * bytes;
    return allToAllv(comm, static_cast<const char*>(sendbuff), sizes, offs, static_cast<char*>(recvbuff), sizes, offs);
  });
}

ATTN_EXPORT attncclResult_t attncclAllToAllv(const void* sendbuff, const size_t* sendcounts, const size_t* sdispls,
                                             void* recvbuff, const size_t* recvcounts, const size_t* rdispls,
                                             attncclDataType_t datatype, attncclComm_t comm, cudaStream_t stream) {
  const char* fn = "attncclAllToAllv";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkStream(fn, comm, stream));
  ATTN_ARG(sendcounts && sdispls && recvcounts && rdispls, "%s: count/displacement arrays must not be NULL", fn);
  const int n = comm->nranks;
  std::vector<size_t> sb(n), so(n), rb(n), ro(n);
  size_t sendTotal = 0, recvTotal = 0;
  for (int p = 0; p < n; ++p) {
    ATTN_CHECK(checkBytes(fn, "sendcounts[p]", sendcounts[p], datatype, 1, &sb[p]));
    ATTN_CHECK(checkBytes(fn, "recvcounts[p]", recvcounts[p], datatype, 1, &rb[p]));
    ATTN_CHECK(checkBytes(fn, "sdispls[p]", sdispls[p], datatype, 1, &so[p]));
    ATTN_CHECK(checkBytes(fn, "rdispls[p]", rdispls[p], datatype, 1, &ro[p]));
    sendTotal |= sb[p];
    recvTotal |= rb[p];
  }
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, sendTotal));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, recvTotal));
  return runCollective(comm, fn, [=] {
    return allToAllv(comm, static_cast<const char*>(sendbuff), sb, so, static_cast<char*>(recvbuff), rb, ro);
  });
}
