// attncclSend / attncclRecv: a group of one outside attncclGroupStart/End, recorded inside one.
#include "collectives/group.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

namespace {

attncclResult_t p2p(const char* fn, bool isSend, const void* buf, size_t count, attncclDataType_t t, int peer,
                    attncclComm* comm, cudaStream_t stream) {
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, t));
  ATTN_CHECK(checkStream(fn, comm, stream));
  ATTN_ARG(peer >= 0 && peer < comm->nranks, "%s: peer is %d (the communicator has ranks 0..%d)", fn, peer,
           comm->nranks - 1);
  size_t bytes = 0;
  ATTN_CHECK(checkBytes(fn, "count", count, t, 1, &bytes));
  ATTN_CHECK(checkBuffer(fn, isSend ? "sendbuff" : "recvbuff", buf, bytes));
  if (groupActive()) {
    groupAddP2p(comm, isSend, const_cast<void*>(buf), bytes, peer);
    return attncclSuccess;
  }
  return runP2p(comm, isSend, const_cast<void*>(buf), bytes, peer);
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclSend(const void* sendbuff, size_t count, attncclDataType_t datatype, int peer,
                                        attncclComm_t comm, cudaStream_t stream) {
  return p2p("attncclSend", true, sendbuff, count, datatype, peer, comm, stream);
}

ATTN_EXPORT attncclResult_t attncclRecv(void* recvbuff, size_t count, attncclDataType_t datatype, int peer,
                                        attncclComm_t comm, cudaStream_t stream) {
  return p2p("attncclRecv", false, recvbuff, count, datatype, peer, comm, stream);
}
