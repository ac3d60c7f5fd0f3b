// ReduceScatter: rank r's recvbuff = op over ranks j of block r of j's sendbuff, any op.
//
//   sendbuff of j: [ block 0 | block 1 | ... | block P-1 ]   (recvcount elements each)
//   recvbuff of r: op(block r of rank 0, of rank 1, ..., of rank P-1)
//
// The shared reduce-scatter phase (segments.h) over P equal blocks: chunked, direct, reduced in
// rank order so every run rounds the same way. Per rank: P-1 blocks in, P-1 blocks out, the
// minimum. In place as in NCCL: recvbuff = sendbuff + rank * recvcount (the reduction writes a
// chunk only after reading it).
#include "collectives/exchange.h"
#include "collectives/segments.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

ATTN_EXPORT attncclResult_t attncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                                 attncclDataType_t datatype, attncclRedOp_t op, attncclComm_t comm,
                                                 cudaStream_t stream) {
  const char* fn = "attncclReduceScatter";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkOp(fn, op));
  ATTN_CHECK(checkStream(fn, comm, stream));
  size_t bytes = 0, total = 0;
  ATTN_CHECK(checkBytes(fn, "recvcount", recvcount, datatype, 1, &bytes));
  ATTN_CHECK(checkBytes(fn, "recvcount", recvcount, datatype, static_cast<size_t>(comm->nranks), &total));
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, total));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, bytes));
  return runCollective(comm, fn, [=] {
    char* out = static_cast<char*>(recvbuff);
    const size_t sz = dtypeSize(datatype);
    return reduceOwnSegment(comm, static_cast<const char*>(sendbuff), blockSplit(recvcount, comm->nranks), datatype,
                            op, [out, sz](size_t off, size_t, char*) { return out + off * sz; });
  });
}
