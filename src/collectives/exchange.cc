#include "collectives/exchange.h"

#include <algorithm>
#include <cstring>

#include "collectives/group.h"
#include "core/result.h"

namespace attnccl {

namespace {

// The receives (ops[0 .. recvs.size()) in recvs' order) each got the bytes the call expected.
attncclResult_t checkReceived(const std::vector<Transfer>& recvs, OpArray& ops) {
  for (size_t i = 0; i < recvs.size(); ++i) {
    if (ops[i].bytes != recvs[i].bytes) {
      return fail(attncclInvalidUsage, "rank %d sent %zu bytes where %zu were expected: ranks disagree on counts",
                  recvs[i].peer, ops[i].bytes, recvs[i].bytes);
    }
  }
  return attncclSuccess;
}

// Posts every receive, then every send, into ops[0 .. recvs.size() + sends.size()).
attncclResult_t postAll(Engine& e, uint32_t tag, const std::vector<Transfer>& sends, const std::vector<Transfer>& recvs,
                        OpArray& ops) {
  size_t k = 0;
  for (const Transfer& t : recvs) ATTN_CHECK(e.irecv(t.peer, tag, t.buf, t.bytes, &ops[k++]));
  for (const Transfer& t : sends) ATTN_CHECK(e.isend(t.peer, tag, t.buf, t.bytes, &ops[k++], t.pull));
  return attncclSuccess;
}

}  // namespace

attncclResult_t exchange(attncclComm* comm, uint32_t tag, const std::vector<Transfer>& sends,
                         const std::vector<Transfer>& recvs) {
  Engine& e = comm->engine;
  OpArray ops(e, sends.size() + recvs.size());
  ATTN_CHECK(postAll(e, tag, sends, recvs, ops));
  ATTN_CHECK(e.waitAll(ops));
  return checkReceived(recvs, ops);
}

attncclResult_t exchangeDeferSends(attncclComm* comm, uint32_t tag, const std::vector<Transfer>& sends,
                                   const std::vector<Transfer>& recvs, PendingSends* pending) {
  Engine& e = comm->engine;
  OpArray rops(e, recvs.size());
  pending->ops.emplace_back(e, sends.size());
  OpArray& sops = pending->ops.back();
  for (size_t i = 0; i < recvs.size(); ++i) ATTN_CHECK(e.irecv(recvs[i].peer, tag, recvs[i].buf, recvs[i].bytes, &rops[i]));
  for (size_t i = 0; i < sends.size(); ++i)
    ATTN_CHECK(e.isend(sends[i].peer, tag, sends[i].buf, sends[i].bytes, &sops[i], sends[i].pull));
  ATTN_CHECK(e.waitAll(rops));
  return checkReceived(recvs, rops);
}

attncclResult_t exchangeWhileCopying(attncclComm* comm, uint32_t tag, const std::vector<Transfer>& sends,
                                     const std::vector<Transfer>& recvs, void* to, const void* from, size_t bytes) {
  // 256 KiB: a piece copies in ~20-40 us, short against a staged ring's depth, long against
  // one progress call.
  constexpr size_t kPiece = 256u << 10;
  Engine& e = comm->engine;
  OpArray ops(e, sends.size() + recvs.size());
  ATTN_CHECK(postAll(e, tag, sends, recvs, ops));
  char* dst = static_cast<char*>(to);
  const char* src = static_cast<const char*>(from);
  for (size_t off = 0; off < bytes; off += kPiece) {
    memcpy(dst + off, src + off, std::min(kPiece, bytes - off));
    // Errors are the wait's to report: the copy is local and finishes regardless.
    (void)e.progress();
  }
  ATTN_CHECK(e.waitAll(ops));
  return checkReceived(recvs, ops);
}

attncclResult_t waitSends(attncclComm* comm, PendingSends* pending) {
  for (OpArray& ops : pending->ops) ATTN_CHECK(comm->engine.waitAll(ops));
  pending->ops.clear();
  return attncclSuccess;
}

std::vector<int> peerOrder(int rank, int n) {
  std::vector<int> order;
  for (int s = 1; s < n; ++s) order.push_back((rank + s) % n);
  return order;
}

attncclResult_t runCollective(attncclComm* comm, const char* fn, std::function<attncclResult_t()> work) {
  if (groupActive()) {
    groupAddCollective(comm, std::move(work));
    return attncclSuccess;
  }
  return commRun(comm, fn, std::move(work));
}

}  // namespace attnccl
