// attncclCommShrink: the survivors of a communicator form a new one without the excluded ranks,
// which may be dead, and without the parent's transports, which may be broken (a failed peer,
// an async error, a call still waiting on a dead rank). Nothing goes through the parent or to an
// excluded rank: every survivor works out the new communicator's unique id by itself.
//
//   parent's init, round 2: every rank r publishes the address L_r of a listening socket it
//   keeps open (BootstrapListener, bootstrap.h); the parent's table of them is all shrink reads.
//
//   shrink, on every survivor:
//     survivors  s_0 < s_1 < ... < s_{m-1}  (old ranks not excluded; new rank i is s_i's index)
//     root       s_0: the lowest survivor, whichever rank served the parent's rendezvous
//     id         { L_{s_0}, key = H(parent's hash, nranks, sorted excludeRanks) }
//     s_0 starts a rendezvous server on L_{s_0}; every s_i runs commInit(id, m, i)
//
//        s_0 ──┐
//        s_1 ──┼──▶ server on L_{s_0} ──▶ the rounds of attncclCommInitRank (comm.cc):
//        ...   │                          identity, addresses, barrier, finish
//     s_{m-1} ─┘
//     excluded ranks: nothing is sent to them, nothing is awaited from them
//
// Survivors that disagree on the list compute different keys. A survivor whose key is not the
// root's hears "another rendezvous" from the root's server and asks again until its rendezvous
// wait (below) ends (the root may still be serving an earlier, abandoned shrink of the same
// parent: that server gives up within its wait + 1 s, or the root's next shrink takes over from
// it); then it fails naming the likely cause. Survivors that disagree on the root time out.
//
// A shrink that failed (a survivor died during it, or they disagreed) may be called again, with
// the same list or another. The same list gives the same key: if the root's server of the failed
// attempt still waits for ranks, it serves the retry too, and ranks that come again replace
// their closed connections (BootstrapListener, bootstrap.h).
//
// Survivors may arrive up to one parent timeout apart (a survivor's last parent call can wait that
// long on a rank that failed and left without a word, over UCX), so the rendezvous waits the new
// communicator's timeout plus the parent's for them.
//
// The parent is only read (its rank, size, hash, config and the listeners' table), so its state
// does not matter: failed, with an async error, or non-blocking with calls queued or running.
// The call therefore does not queue behind a non-blocking parent's calls (they may be stuck on a
// dead rank until their timeout): it runs at once. The new communicator takes the config's mode
// (NULL: the parent's, so a non-blocking parent's shrink returns attncclInProgress with *newcomm
// set, and the rendezvous runs on the new communicator's worker, as for a non-blocking init).
// The parent stays valid for attncclCommDestroy (or Abort), before or after the new one is used.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "comm/bootstrap.h"
#include "comm/comm.h"
#include "core/export.h"
#include "core/log.h"
#include "core/result.h"

using namespace attnccl;

namespace {

uint64_t fnv(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 1099511628211ull;
  }
  return h;
}

// The excluded list's hash (sorted: the order the caller lists them in does not matter).
uint64_t listHash(const std::vector<int>& sorted) {
  uint64_t h = 14695981039346656037ull;
  h = fnv(h, sorted.size());
  for (int r : sorted) h = fnv(h, static_cast<uint64_t>(r));
  return h;
}

attncclResult_t checkParent(attncclComm* comm, const char* fn) {
  ATTN_CHECK(checkHandle(comm, fn));
  if (comm->aborted.load()) return fail(attncclInvalidUsage, "%s: the communicator was aborted", fn);
  if (comm->finalized) {
    return fail(attncclInvalidUsage, "%s: the communicator was finalized (only attncclCommDestroy may follow)", fn);
  }
  // A failed parent is fine (that is the point); one that never finished its own init is not:
  // it has no table of listeners.
  if (!comm->identityKnown.load(std::memory_order_acquire) || !comm->ready.load(std::memory_order_acquire)) {
    return fail(attncclInvalidUsage,
                "%s: the communicator is still being created, or its creation failed (it has no survivors to "
                "shrink to)", fn);
  }
  return attncclSuccess;
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclCommShrink(attncclComm_t comm, const int* excludeRanks, int excludeCount,
                                              attncclComm_t* newcomm, attncclConfig_t* config) {
  const char* fn = "attncclCommShrink";
  if (newcomm != nullptr) *newcomm = nullptr;
  ATTN_CHECK(checkParent(comm, fn));
  ATTN_ARG(newcomm != nullptr, "%s: newcomm is NULL", fn);
  const int n = comm->nranks, me = comm->rank;
  ATTN_ARG(excludeCount >= 0, "%s: excludeCount is %d (must be >= 0)", fn, excludeCount);
  ATTN_ARG(excludeCount == 0 || excludeRanks != nullptr, "%s: excludeRanks is NULL but excludeCount is %d", fn,
           excludeCount);
  ATTN_ARG(excludeCount < n, "%s: excludeCount is %d but the communicator has %d ranks (at least one must survive)",
           fn, excludeCount, n);
  std::vector<int> firstAt(n, -1);
  for (int i = 0; i < excludeCount; ++i) {
    const int r = excludeRanks[i];
    ATTN_ARG(r >= 0 && r < n, "%s: excludeRanks[%d] is %d (must be in [0, %d))", fn, i, r, n);
    ATTN_ARG(firstAt[r] < 0, "%s: excludeRanks[%d] is %d, which excludeRanks[%d] names already", fn, i, r,
             firstAt[r]);
    ATTN_ARG(r != me, "%s: excludeRanks[%d] is %d, the calling rank (an excluded rank must not call %s)", fn, i, r,
             fn);
    firstAt[r] = i;
  }
  CommConfig cfg;
  attncclResult_t res = resolveConfig(config, &comm->config, &cfg);
  if (res != attncclSuccess) {
    prefixLastError(fn);
    return res;
  }
  if (config == nullptr) cfg.cpuThreads = 0;  // re-plan threads for the new membership (as split)

  // The survivors in their old order; the root is the first.
  std::vector<int> excluded, survivors;
  for (int r = 0; r < n; ++r) (firstAt[r] >= 0 ? excluded : survivors).push_back(r);
  const int m = static_cast<int>(survivors.size());
  const int newRank = static_cast<int>(std::find(survivors.begin(), survivors.end(), me) - survivors.begin());
  const int root = survivors[0];
  const std::string& rootAddr = comm->rendezvousAddrs[root];
  if (rootAddr.empty()) {
    return fail(attncclSystemError,
                "%s: rank %d, the survivors' new root, has no rendezvous listener (it could not listen at init; "
                "see its INFO log)", fn, root);
  }
  const uint64_t key = fnv(fnv(fnv(14695981039346656037ull, comm->commHash), static_cast<uint64_t>(n)),
                           listHash(excluded));
  attncclUniqueId id;
  ATTN_CHECK(bootstrapIdAt(rootAddr, key, &id));
  // Survivors reach the shrink up to one parent timeout apart: a survivor's last call on the
  // parent may wait that long on a live rank that has already failed and moved on (over UCX a
  // failed rank does not tell its peers that it left). The rendezvous waits that much longer.
  const int waitMs = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(cfg.timeoutMs) + comm->config.timeoutMs,
                                                        INT32_MAX - 2000));
  if (me == root) ATTN_CHECK(bootstrapServe(comm->listener, key, waitMs));
  std::string list;
  for (size_t i = 0; i < excluded.size() && i < 16; ++i) list += (i ? "," : "") + std::to_string(excluded[i]);
  if (excluded.size() > 16) list += ",...";
  ATTN_INFO(kSubInit, "comm %p rank %d/%d shrinks to %d ranks (excluding {%s}; root old rank %d): new rank %d",
            static_cast<void*>(comm), me, n, m, list.c_str(), root, newRank);

  attncclComm_t child = nullptr;
  res = commCreate(&child, m, id, newRank, cfg, nullptr, waitMs);
  if (res == attncclSuccess || res == attncclInProgress) {
    *newcomm = child;
    return res;
  }
  // commCreate's message names the rank and size; say which shrink it was, and the likely cause.
  std::string why = lastError();
  return fail(res,
              "%s: the survivors' communicator (%d of %d ranks, root old rank %d) was not formed: %s (every "
              "survivor must call %s with the same excluded ranks, and they must be alive)",
              fn, m, n, root, why.c_str(), fn);
}
