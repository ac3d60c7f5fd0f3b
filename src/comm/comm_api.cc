// The public communicator calls (docs/api.md): ids, init, finalize/destroy/abort, queries, library memory
// (attncclCommSplit: comm_split.cc; attncclCommShrink: comm_shrink.cc).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <thread>

#include "comm/async_worker.h"
#include "comm/bootstrap.h"
#include "comm/comm.h"
#include "core/export.h"
#include "core/log.h"
#include "core/result.h"
#include "core/topology.h"
#include "transport/shm.h"

using namespace attnccl;

namespace attnccl {

void commStartWorker(attncclComm* comm) {
  comm->worker.reset(new AsyncWorker([comm](attncclResult_t r, const char* msg) { setAsyncError(comm, r, msg); }));
}

attncclResult_t commCreate(attncclComm_t* out, int nranks, const attncclUniqueId& id, int rank, const CommConfig& cfg,
                           const std::atomic<bool>* parentAborted, int shrinkWaitMs) {
  auto* comm = new attncclComm();
  comm->shrinkChild = shrinkWaitMs > 0;
  comm->rendezvousTimeoutMs = shrinkWaitMs;
  comm->nranks = nranks;
  comm->rank = rank;
  comm->config = cfg;
  comm->parentAborted = parentAborted;
  if (!cfg.blocking) {
    // Non-blocking: the communicator exists at once; initialisation runs on its worker and
    // attncclCommGetAsyncError reports attncclInProgress until it is done.
    commStartWorker(comm);
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

}  // namespace attnccl

namespace {

void releaseComm(attncclComm* comm) {
  comm->worker.reset();  // joins the worker (its queue is drained or failed)
  if (comm->shm) comm->shm->markClosing();
  // Quiesced, not only cancelled, before the arenas go: after an abort a receive may still be
  // fetching a rendezvous message from a live peer into the attention state's scratch, which
  // UCX would write while the transport's destructor progresses (a chaos trial's SIGSEGV in
  // ucp_rndv_data_handler under attncclCommAbort). With nothing in flight it costs nothing more.
  comm->engine.quiesce(attncclInvalidUsage);
  comm->extension.reset();
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
  const char* fn = "attncclCommInitRank";
  ATTN_ARG(comm != nullptr, "%s: comm is NULL", fn);
  *comm = nullptr;
  ATTN_ARG(nranks >= 1, "%s: nranks is %d (must be >= 1)", fn, nranks);
  ATTN_ARG(rank >= 0 && rank < nranks, "%s: rank is %d (must be in [0, %d))", fn, rank, nranks);
  attncclResult_t r = bootstrapCheckId(commId);
  if (r == attncclSuccess) {
    CommConfig cfg;
    r = resolveConfig(config, nullptr, &cfg);
    if (r == attncclSuccess) return commCreate(comm, nranks, commId, rank, cfg);
  }
  prefixLastError(fn);
  return r;
}

ATTN_EXPORT attncclResult_t attncclCommFinalize(attncclComm_t comm) {
  const char* fn = "attncclCommFinalize";
  ATTN_CHECK(checkHandle(comm, fn));
  if (comm->finalized) return fail(attncclInvalidUsage, "%s: comm %p was finalized already", fn, static_cast<void*>(comm));
  comm->finalized = true;
  if (comm->worker && !comm->worker->idle()) {
    if (!comm->config.blocking) return attncclInProgress;
    if (!comm->worker->drain(comm->config.timeoutMs)) {
      return fail(attncclTimeout, "%s: queued calls did not finish within %d ms", fn, comm->config.timeoutMs);
    }
  }
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommDestroy(attncclComm_t comm) {
  if (comm == nullptr) return attncclSuccess;  // as free(NULL)
  ATTN_CHECK(checkHandle(comm, "attncclCommDestroy"));
  if (comm->worker && !comm->worker->drain(comm->config.timeoutMs)) {
    // The queue is stuck (a peer vanished): abort instead of hanging.
    comm->aborted.store(true);
    comm->worker->cancelQueued();
    comm->worker->drain(comm->config.timeoutMs);
  }
  releaseComm(comm);
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommAbort(attncclComm_t comm) {
  if (comm == nullptr) return attncclSuccess;
  ATTN_CHECK(checkHandle(comm, "attncclCommAbort"));
  comm->aborted.store(true);
  // Queued calls of a non-blocking communicator never start; the running one (or a non-blocking
  // initialisation) sees the flag in its next wait.
  if (comm->worker) comm->worker->cancelQueued();
  if (comm->ready.load(std::memory_order_acquire)) {
    if (comm->shm) comm->shm->markClosing();  // peers see this rank gone at once
    commNotifyAbort(comm);
  }
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
  const char* fn = "attncclCommGetAsyncError";
  ATTN_CHECK(checkHandle(comm, fn));
  ATTN_ARG(asyncError != nullptr, "%s: asyncError is NULL", fn);
  attncclResult_t e = static_cast<attncclResult_t>(comm->asyncError.load());
  if (e == attncclSuccess && comm->worker && !comm->worker->idle()) e = attncclInProgress;
  *asyncError = e;
  return attncclSuccess;
}

namespace {

attncclResult_t checkIdentity(const attncclComm* comm, const char* fn) {
  ATTN_CHECK(checkHandle(comm, fn));
  if (!comm->identityKnown.load(std::memory_order_acquire)) {
    return fail(attncclInvalidUsage, "%s: comm %p is still being created by attncclCommSplit", fn,
                static_cast<const void*>(comm));
  }
  return attncclSuccess;
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclCommCount(const attncclComm_t comm, int* count) {
  ATTN_CHECK(checkIdentity(comm, "attncclCommCount"));
  ATTN_ARG(count != nullptr, "attncclCommCount: count is NULL");
  *count = comm->nranks;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommUserRank(const attncclComm_t comm, int* rank) {
  ATTN_CHECK(checkIdentity(comm, "attncclCommUserRank"));
  ATTN_ARG(rank != nullptr, "attncclCommUserRank: rank is NULL");
  *rank = comm->rank;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclCommGetStats(attncclComm_t comm, attncclCommStats_t* stats) {
  const char* fn = "attncclCommGetStats";
  ATTN_CHECK(checkHandle(comm, fn));
  ATTN_ARG(stats != nullptr, "%s: stats is NULL", fn);
  constexpr size_t kFirst = offsetof(attncclCommStats_t, bytesSent);
  ATTN_ARG(stats->size >= kFirst + sizeof(uint64_t) && stats->size <= 4096,
           "%s: stats->size is %zu; set it to sizeof(attncclCommStats_t) (%zu)", fn, stats->size,
           sizeof(attncclCommStats_t));
  StatsBlock& s = comm->engine.stats();
  const uint64_t values[4] = {s.bytesSent.load(), s.bytesRecv.load(), s.messagesSent.load(), s.messagesRecv.load()};
  // A caller compiled against an older, shorter struct gets the counters its struct has.
  const size_t n = std::min<size_t>(4, (stats->size - kFirst) / sizeof(uint64_t));
  memcpy(reinterpret_cast<char*>(stats) + kFirst, values, n * sizeof(uint64_t));
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclMemAlloc(void** ptr, size_t size) {
  const char* fn = "attncclMemAlloc";
  ATTN_ARG(ptr != nullptr, "%s: ptr is NULL", fn);
  *ptr = nullptr;
  ATTN_ARG(size > 0, "%s: size is 0", fn);
  // Far beyond any machine's memory, and the page rounding of regionCreate must not overflow.
  ATTN_ARG(size <= (static_cast<size_t>(1) << 56), "%s: size is %zu bytes (at most 2^56)", fn, size);
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
    return fail(attncclInvalidArgument, "attncclMemFree: ptr %p was not returned by attncclMemAlloc (or was freed)",
                ptr);
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
