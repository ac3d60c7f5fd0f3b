// Broadcast: every rank's recvbuff = root's sendbuff (N elements). sendbuff matters on the root
// only; in place (sendbuff == recvbuff) on the root costs nothing.
//
// Small messages, 2 ranks, or one node over shm: the root sends N to each of the P-1 others, one
// round. The root's sends are marked pull (Transfer::pull): over shm every receiver reads the
// root's buffer itself (in place, or by CMA between processes even where other traffic takes
// the staged ring), so the root's core copies nothing for them (perf/RESULTS.md, "Which copy,
// again").
//
// Large messages: scatter, then all-gather among the non-root ranks. The N elements are split
// over the P-1 non-root ranks only (the root needs nothing back), k = (r - root - 1) mod P:
//
//   root:        [ seg 0 | seg 1 | ... | seg P-2 ]  --seg k-->  rank with index k
//   all-gather:  every non-root sends its seg to the P-2 other non-roots
//
//   root sends N in total instead of (P-1) N; every other rank receives N and sends
//   (P-2)/(P-1) N. Two rounds instead of one, so it pays only once the root's outgoing bytes,
//   not the latency, dominate.
#include <cstdint>
#include <cstring>

#include "collectives/exchange.h"
#include "collectives/segments.h"
#include "collectives/validate.h"
#include "core/export.h"

using namespace attnccl;

namespace {

// From this many bytes on, with 3 ranks or more, and when the ranks are not all on one node
// over shm, the scatter + all-gather path is taken. On one node every copy of either path runs
// over the same memory bus and the total bytes copied are the same ((P-1) N), so the split
// saves nothing: measured here (4 ranks, 64 KiB-16 MiB, threads and processes) neither path
// won beyond the noise. Across nodes it relieves the root's link, N instead of (P-1) N; the
// 1 MiB threshold there is not measured (no second node here; the ucx transport between local
// processes stands in for one in the tests).
constexpr size_t kScatterBytes = 1u << 20;

bool splitHelps(const attncclComm* comm, size_t bytes) {
  const bool oneNodeShm =
      comm->localRanks.size() == static_cast<size_t>(comm->nranks) && comm->config.transport != "ucx";
  return comm->nranks > 2 && bytes >= kScatterBytes && !oneNodeShm;
}

// The root's sends of either path, with its own copy (recvbuff = sendbuff) while they are in
// flight: its peers read sendbuff, the copy reads it too and writes recvbuff, which no peer
// reads. Copied after the sends instead, on 2 processes over shm the copy added its whole time
// to the call's. `ownCopy` is false in place and when the two buffers overlap partly (then the
// copy must wait until the peers have read sendbuff).
attncclResult_t rootSends(attncclComm* comm, const std::vector<Transfer>& sends, const char* src, char* data,
                          size_t bytes, bool ownCopy) {
  if (!ownCopy) return exchange(comm, kTagColl, sends, {});
  return exchangeWhileCopying(comm, kTagColl, sends, {}, data, src, bytes);
}

// src: what the root sends (its sendbuff); data: recvbuff.
attncclResult_t broadcastDirect(attncclComm* comm, const char* src, char* data, size_t bytes, int root,
                                bool ownCopy) {
  const int n = comm->nranks, me = comm->rank;
  std::vector<Transfer> sends;
  if (me == root) {
    for (int p : peerOrder(me, n)) sends.push_back({p, const_cast<char*>(src), bytes, true});
    return rootSends(comm, sends, src, data, bytes, ownCopy);
  }
  return exchange(comm, kTagColl, sends, {{root, data, bytes}});
}

attncclResult_t broadcastScatter(attncclComm* comm, const char* src, char* data, size_t count, size_t sz, int root,
                                 bool ownCopy) {
  const int n = comm->nranks, me = comm->rank;
  const Split split = evenSplit(count, n - 1);
  auto index = [&](int r) { return (r - root - 1 + n) % n; };  // non-root ranks: 0..P-2
  std::vector<Transfer> sends, recvs;
  if (me == root) {
    for (int p : peerOrder(me, n)) {
      const int k = index(p);
      if (split.len[k]) sends.push_back({p, const_cast<char*>(src) + split.off[k] * sz, split.len[k] * sz, true});
    }
    return rootSends(comm, sends, src, data, count * sz, ownCopy);
  }
  const int mine = index(me);
  if (split.len[mine]) recvs.push_back({root, data + split.off[mine] * sz, split.len[mine] * sz});
  ATTN_CHECK(exchange(comm, kTagColl, sends, recvs));
  sends.clear();
  recvs.clear();
  for (int p : peerOrder(me, n)) {
    if (p == root) continue;
    const int k = index(p);
    if (split.len[mine]) sends.push_back({p, data + split.off[mine] * sz, split.len[mine] * sz});
    if (split.len[k]) recvs.push_back({p, data + split.off[k] * sz, split.len[k] * sz});
  }
  return exchange(comm, kTagColl, sends, recvs);
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                                             attncclDataType_t datatype, int root, attncclComm_t comm,
                                             cudaStream_t stream) {
  const char* fn = "attncclBroadcast";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkDtype(fn, datatype));
  ATTN_CHECK(checkRoot(fn, comm, root));
  ATTN_CHECK(checkStream(fn, comm, stream));
  size_t bytes = 0;
  ATTN_CHECK(checkBytes(fn, "count", count, datatype, 1, &bytes));
  if (comm->rank == root) ATTN_CHECK(checkBuffer(fn, "sendbuff", sendbuff, bytes));
  ATTN_CHECK(checkBuffer(fn, "recvbuff", recvbuff, bytes));
  return runCollective(comm, fn, [=] {
    char* data = static_cast<char*>(recvbuff);
    const char* src = static_cast<const char*>(sendbuff);
    if (count == 0) return attncclSuccess;
    const bool isRoot = comm->rank == root;
    // Only the root's sendbuff means anything (elsewhere it may be null).
    const uintptr_t s0 = reinterpret_cast<uintptr_t>(src), d0 = reinterpret_cast<uintptr_t>(data);
    const bool disjoint = !isRoot || d0 + bytes <= s0 || s0 + bytes <= d0;
    if (comm->nranks == 1) {
      if (src != data) memmove(data, src, bytes);
      return attncclSuccess;
    }
    const bool ownCopy = isRoot && disjoint;
    attncclResult_t r = splitHelps(comm, bytes)
                            ? broadcastScatter(comm, src, data, count, dtypeSize(datatype), root, ownCopy)
                            : broadcastDirect(comm, src, data, bytes, root, ownCopy);
    // Buffers that overlap partly: the copy waits until every peer has read sendbuff.
    if (r == attncclSuccess && isRoot && !disjoint && src != data) memmove(data, src, bytes);
    return r;
  });
}
