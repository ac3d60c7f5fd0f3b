// The public communicator calls of API.md: ids, init, split, finalize/destroy/abort, queries.
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "async_worker.h"
#include "attn/comm_state.h"
#include "bootstrap.h"
#include "comm.h"
#include "core/export.h"
#include "core/log.h"
#include "core/result.h"
#include "topology.h"
#include "transport/shm.h"

using namespace attnccl;

namespace {

void startWorker(attncclComm* comm) {
  comm->worker.reset(new AsyncWorker([comm](attncclResult_t r, const char* msg) { setAsyncError(comm, r, msg); }));
}

attncclResult_t newComm(attncclComm_t* out, int nranks, const attncclUniqueId& id, int rank, const CommConfig& cfg) {
  auto* comm = new attncclComm();
  comm->nranks = nranks;
  comm->rank = rank;
  comm->config = cfg;
  if (!cfg.blocking) {
    // Non-blocking: the communicator exists at once; initialisation runs on its worker and
    // attncclCommGetAsyncError reports attncclInProgress until it is done.
    startWorker(comm);
    comm->asyncError.store(attncclInProgress);
    comm->worker->push([comm, id] {
      attncclResult_t r = commInit(comm, id);
      if (r == attncclSuccess) comm->asyncError.store(attncclSuccess);
      return r;  // a failure is recorded by the worker's onError
    });
    *out = comm;
    return attncclInProgress;
  }
  attncclResult_t r = commInit(comm, id);
  if (r != attncclSuccess) {
    std::string msg = lastError();
    delete comm;
    fail(r, "attncclCommInitRank (rank %d of %d): %s", rank, nranks, msg.c_str());
    return r;
  }
  *out = comm;
  return attncclSuccess;
}

void releaseComm(attncclComm* comm) {
  comm->worker.reset();  // joins the worker (its queue is drained or failed)
  if (comm->shm) comm->shm->markClosing();
  comm->engine.cancelAll(attncclInvalidUsage);
  comm->attnState.reset();
  comm->pool.reset();
  comm->ucx.reset();
  comm->shm.reset();
  comm->magic = 0;
  delete comm;
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclGetVersion(int* version) {
  ATTN_ARG(version != nullptr, "attncclGetVersion: version is NULL");
  *version = ATTNCCL_VERSION_CODE;
  return attncclSuccess;
}

ATTN_EXPORT const char* attncclGetLastError(attncclComm_t comm) {
  const char* mine = lastError();
  if (mine[0] == '\0' && comm != nullptr && comm->magic == attncclComm::kMagic) {
    std::lock_guard<std::mutex> lock(comm->asyncErrorMutex);
    static thread_local std::string copy;
    copy = comm->asyncErrorText;
    return copy.c_str();
  }
  return mine;
}

ATTN_EXPORT attncclResult_t attncclGetUniqueId(attncclUniqueId* uniqueId) {
  ATTN_ARG(uniqueId != nullptr, "attncclGetUniqueId: uniqueId is NULL");
  return bootstrapGetUniqueId(uniqueId);
}

ATTN_EXPORT attncclResult_t attncclCommInitRank(attncclComm_t* comm, int nranks, attncclUniqueId commId, int rank,
                                                attncclConfig_t* config) {
  ATTN_ARG(comm != nullptr, "attncclCommInitRank: comm is NULL");
  *comm = nullptr;
  ATTN_ARG(nranks >= 1, "attncclCommInitRank: nranks is %d (must be >= 1)", nranks);
  ATTN_ARG(rank >= 0 && rank < nranks, "attncclCommInitRank: rank is %d (must be in [0, %d))", rank, nranks);
  CommConfig cfg;
  attncclResult_t r = resolveConfig(config, nullptr, &cfg);
  if (r != attncclSuccess) {
    prefixLastError("attncclCommInitRank");
    return r;
  }
  return newComm(comm, nranks, commId, rank, cfg);
}

ATTN_EXPORT attncclResult_t attncclCommSplit(attncclComm_t comm, int color, int key, attncclComm_t* newcomm,
                                             attncclConfig_t* config) {
  ATTN_CHECK(checkComm(comm, "attncclCommSplit"));
  ATTN_ARG(newcomm != nullptr, "attncclCommSplit: newcomm is NULL");
  ATTN_ARG(color >= 0 || color == ATTNCCL_SPLIT_NOCOLOR,
           "attncclCommSplit: color is %d (>= 0, or ATTNCCL_SPLIT_NOCOLOR)", color);
  *newcomm = nullptr;
  CommConfig cfg;
  ATTN_CHECK(resolveConfig(config, &comm->config, &cfg));
  if (config == nullptr) cfg.cpuThreads = 0;  // re-plan threads for the new membership
  if (!comm->config.blocking) {
    // Keep it simple: a split of a non-blocking communicator waits for its queue first.
    if (!comm->worker->drain(comm->config.timeoutMs)) {
      return fail(attncclTimeout, "attncclCommSplit: the communicator's queued calls did not finish");
    }
    ATTN_CHECK(checkComm(comm, "attncclCommSplit"));
  }
  struct Entry {
    int32_t color, key, rank;
  };
  std::vector<Entry> all(comm->nranks);
  Entry me = {color, key, comm->rank};
  logSetRank(comm->rank);
  ATTN_CHECK(comm->engine.allGatherSmall(&me, sizeof(me), all.data()));
  if (color == ATTNCCL_SPLIT_NOCOLOR) return attncclSuccess;
  std::vector<Entry> members;
  for (const Entry& e : all) {
    if (e.color == color) members.push_back(e);
  }
  std::stable_sort(members.begin(), members.end(),
                   [](const Entry& a, const Entry& b) { return a.key != b.key ? a.key < b.key : a.rank < b.rank; });
  int newRank = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].rank == comm->rank) newRank = static_cast<int>(i);
  }
  // The new rank 0 creates the id and hands it to the others over the parent communicator.
  attncclUniqueId id;
  if (newRank == 0) {
    ATTN_CHECK(bootstrapGetUniqueId(&id));
    for (size_t i = 1; i < members.size(); ++i) {
      ATTN_CHECK(comm->engine.send(members[i].rank, kTagInternal, &id, sizeof(id)));
    }
  } else {
    ATTN_CHECK(comm->engine.recv(members[0].rank, kTagInternal, &id, sizeof(id)));
  }
  comm->splitCount++;
  const bool childBlocking = cfg.blocking;
  cfg.blocking = true;  // the split completes here; the child then runs in the requested mode
  attncclComm_t child = nullptr;
  attncclResult_t r = newComm(&child, static_cast<int>(members.size()), id, newRank, cfg);
  if (r != attncclSuccess) return r;
  child->config.blocking = childBlocking;
  if (!childBlocking) startWorker(child);
  *newcomm = child;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommFinalize(attncclComm_t comm) {
  if (comm == nullptr) return fail(attncclInvalidArgument, "attncclCommFinalize: comm is NULL");
  if (comm->magic != attncclComm::kMagic) return fail(attncclInvalidArgument, "attncclCommFinalize: invalid comm");
  if (comm->finalized) return attncclSuccess;
  comm->finalized = true;
  if (comm->worker && !comm->worker->idle()) {
    if (!comm->config.blocking) return attncclInProgress;
    if (!comm->worker->drain(comm->config.timeoutMs)) {
      return fail(attncclTimeout, "attncclCommFinalize: queued calls did not finish within %d ms",
                  comm->config.timeoutMs);
    }
  }
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommDestroy(attncclComm_t comm) {
  if (comm == nullptr) return attncclSuccess;  // as free(NULL)
  if (comm->magic != attncclComm::kMagic) {
    return fail(attncclInvalidArgument, "attncclCommDestroy: comm %p is not a communicator (destroyed twice?)",
                static_cast<void*>(comm));
  }
  if (comm->worker && !comm->worker->drain(comm->config.timeoutMs)) {
    // The queue is stuck (a peer vanished): abort instead of hanging.
    comm->aborted.store(true);
    comm->worker->drain(comm->config.timeoutMs);
  }
  releaseComm(comm);
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommAbort(attncclComm_t comm) {
  if (comm == nullptr) return attncclSuccess;
  if (comm->magic != attncclComm::kMagic) {
    return fail(attncclInvalidArgument, "attncclCommAbort: comm %p is not a communicator", static_cast<void*>(comm));
  }
  comm->aborted.store(true, std::memory_order_release);
  if (comm->shm) comm->shm->markClosing();  // peers see this rank gone at once
  if (comm->attnState) comm->attnState->abortSubComms();
  // Blocked calls see the flag within a few milliseconds; wait for them to leave (bounded).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (comm->inFlight.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (comm->inFlight.load() > 0) {
    // A call is stuck outside any wait (should not happen); leak rather than free under it.
    ATTN_WARN(kSubInit, "attncclCommAbort: a call is still running on comm %p; leaving it allocated",
              static_cast<void*>(comm));
    return attncclSuccess;
  }
  releaseComm(comm);
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommGetAsyncError(attncclComm_t comm, attncclResult_t* asyncError) {
  ATTN_ARG(comm != nullptr && comm->magic == attncclComm::kMagic, "attncclCommGetAsyncError: invalid comm");
  ATTN_ARG(asyncError != nullptr, "attncclCommGetAsyncError: asyncError is NULL");
  attncclResult_t e = static_cast<attncclResult_t>(comm->asyncError.load());
  if (e == attncclSuccess && comm->worker && !comm->worker->idle()) e = attncclInProgress;
  *asyncError = e;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommCount(const attncclComm_t comm, int* count) {
  ATTN_ARG(comm != nullptr && comm->magic == attncclComm::kMagic, "attncclCommCount: invalid comm");
  ATTN_ARG(count != nullptr, "attncclCommCount: count is NULL");
  *count = comm->nranks;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommUserRank(const attncclComm_t comm, int* rank) {
  ATTN_ARG(comm != nullptr && comm->magic == attncclComm::kMagic, "attncclCommUserRank: invalid comm");
  ATTN_ARG(rank != nullptr, "attncclCommUserRank: rank is NULL");
  *rank = comm->rank;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommGetStats(attncclComm_t comm, attncclCommStats_t* stats) {
  ATTN_ARG(comm != nullptr && comm->magic == attncclComm::kMagic, "attncclCommGetStats: invalid comm");
  ATTN_ARG(stats != nullptr, "attncclCommGetStats: stats is NULL");
  ATTN_ARG(stats->size >= sizeof(size_t) + 4 * sizeof(uint64_t) && stats->size <= 4096,
           "attncclCommGetStats: stats->size is %zu; set it to sizeof(attncclCommStats_t)", stats->size);
  StatsBlock& s = comm->engine.stats();
  stats->bytesSent = s.bytesSent.load();
  stats->bytesRecv = s.bytesRecv.load();
  stats->messagesSent = s.messagesSent.load();
  stats->messagesRecv = s.messagesRecv.load();
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclMemAlloc(void** ptr, size_t size) {
  ATTN_ARG(ptr != nullptr, "attncclMemAlloc: ptr is NULL");
  *ptr = nullptr;
  ATTN_ARG(size > 0, "attncclMemAlloc: size is 0");
  Region r;
  ATTN_CHECK(regionCreate(size, "attnccl-mem", &r));
  regionRegister(r);
  *ptr = r.base;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclMemFree(void* ptr) {
  if (ptr == nullptr) return attncclSuccess;
  RegionHandle h;
  if (!regionLookup(ptr, 1, &h) || h.base != reinterpret_cast<uint64_t>(ptr)) {
    return fail(attncclInvalidArgument, "attncclMemFree: %p was not returned by attncclMemAlloc", ptr);
  }
  regionUnregister(ptr);
  Region r;
  r.base = ptr;
  r.size = h.size;
  r.fd = h.fd;
  r.id = h.id;
  regionDestroy(&r);
  return attncclSuccess;
}
