// ReduceScatter (sum): rank r's recvbuff = sum over ranks j of block r of j's sendbuff.
// Direct, in chunks: each rank receives its block's chunk from the P-1 others into scratch and
// sums all P contributions in rank order (so every run rounds the same way); fp16/bf16 sum in
// fp32 and round once. Per rank: P-1 blocks in, P-1 blocks out, the minimum.
#include <algorithm>
#include <cstring>

#include "collectives/exchange.h"
#include "collectives/reduce.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

namespace {

constexpr size_t kChunkBytes = 4u << 20;

attncclResult_t reduceScatter(attncclComm* comm, const char* send, char* recv, size_t count, attncclDataType_t t) {
  const int n = comm->nranks, me = comm->rank;
  const size_t sz = dtypeSize(t);
  const size_t blockBytes = count * sz;
  const size_t chunkElems = std::max<size_t>(1, std::min(count, kChunkBytes / sz));
  const size_t chunkBytes = chunkElems * sz;
  const bool wide = needsFloatAccumulator(t);
  std::vector<char>& scratch = comm->collScratch;
  // The fp32 accumulator follows the slots at an aligned offset (16-bit slots of an odd number
  // of elements end at an address that is not).
  const size_t accOffset = (n * chunkBytes + 63) / 64 * 64;
  size_t need = accOffset + (wide ? chunkElems * sizeof(float) : 0);
  if (scratch.size() < need) scratch.resize(need);
  char* slots = scratch.data();
  float* acc = wide ? reinterpret_cast<float*>(slots + accOffset) : nullptr;

  for (size_t off = 0; off < count; off += chunkElems) {
    size_t len = std::min(chunkElems, count - off);
    size_t lenBytes = len * sz;
    std::vector<Transfer> sends, recvs;
    for (int p : peerOrder(me, n)) {
      sends.push_back({p, const_cast<char*>(send) + p * blockBytes + off * sz, lenBytes});
      recvs.push_back({p, slots + p * chunkBytes, lenBytes});
    }
    memcpy(slots + me * chunkBytes, send + me * blockBytes + off * sz, lenBytes);
    ATTN_CHECK(exchange(comm, kTagColl, sends, recvs));
    char* out = recv + off * sz;
    if (wide) {
      widenInto(acc, slots, len, t, false);
      for (int p = 1; p < n; ++p) widenInto(acc, slots + p * chunkBytes, len, t, true);
      narrow(out, acc, len, t);
    } else {
      memcpy(out, slots, lenBytes);
      for (int p = 1; p < n; ++p) sumInto(out, slots + p * chunkBytes, len, t);
    }
  }
  return attncclSuccess;
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                                 attncclDataType_t datatype, attncclRedOp_t op, attncclComm_t comm,
                                                 cudaStream_t stream) {
  const char* fn = "attncclReduceScatter";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkStream(fn, comm, stream));
  ATTN_ARG(op == attncclSum, "%s: op is %d (only attncclSum is supported)", fn, static_cast<int>(op));
  size_t bytes = 0, total = 0;
  ATTN_CHECK(checkBytes(fn, "recvcount", recvcount, datatype, 1, &bytes));
  ATTN_CHECK(checkBytes(fn, "recvcount", recvcount, datatype, static_cast<size_t>(comm->nranks), &total));
  ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, total));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, bytes));
  return runCollective(comm, fn, [=] {
    return reduceScatter(comm, static_cast<const char*>(sendbuff), static_cast<char*>(recvbuff), recvcount, datatype);
  });
}
