// Communicator construction: rendezvous, transport choice per peer pair, connection.
//
//   round 1: identity    {pid, host, cpuset, requested transport, version}  -> node grouping
//   (create the shm segment sized for the node's ranks, and/or the UCX worker)
//   round 2: addresses   {shm segment handle, UCX worker address, rendezvous listener} -> connect
//   round 3: barrier     every rank connected before the first message
//   finish:              every rank has every answer before any init returns (bootstrap.h)
#include "comm/comm.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <stdexcept>

#include "comm/async_worker.h"
#include "comm/bootstrap.h"
#include "core/log.h"
#include "core/params.h"
#include "core/result.h"
#include "core/serialize.h"
#include "core/topology.h"
#include "transport/shm.h"
#if ATTNCCL_HAVE_UCX
#include "transport/ucx.h"
#endif

// Transports are released before the engine: until they are gone they may complete ops that the
// engine keeps alive (abandoned waits, checksum records).
attncclComm::~attncclComm() {
  worker.reset();
  dev.reset();  // waits for the communicator's GPU work, then releases its memory
  extension.reset();
  pool.reset();
  ucx.reset();
  shm.reset();
}

namespace attnccl {
namespace {

enum class Kind { kShm, kUcx };

struct Identity {
  int32_t pid = 0;
  uint64_t hostHash = 0;
  int32_t version = ATTNCCL_VERSION_CODE;
  int32_t hasUcx = 0;
  int32_t checksum = 0;
  std::string hostname;
  std::string cpuset;
  std::string transport;
};

uint64_t computeHostHash(std::string* hostname) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  *hostname = host;
  std::string bootId;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, bootId);
  return std::hash<std::string>()(std::string(host) + "/" + bootId);
}

std::string encode(const Identity& id) {
  Writer w;
  w.put(id.pid);
  w.put(id.hostHash);
  w.put(id.version);
  w.put(id.hasUcx);
  w.put(id.checksum);
  w.putString(id.hostname);
  w.putString(id.cpuset);
  w.putString(id.transport);
  return w.data();
}

bool decode(const std::string& s, Identity* id) {
  Reader r(s);
  return r.get(&id->pid) && r.get(&id->hostHash) && r.get(&id->version) && r.get(&id->hasUcx) && r.get(&id->checksum) &&
         r.getString(&id->hostname) && r.getString(&id->cpuset) && r.getString(&id->transport);
}

// The transport of a pair, the same on both sides.
attncclResult_t chooseKind(const std::string& mode, const Identity& a, const Identity& b, int peer, Kind* kind) {
  bool sameNode = a.hostHash == b.hostHash;
  if (mode == "shm") {
    if (!sameNode) {
      return fail(attncclInvalidUsage, "transport 'shm' was forced but rank %d is on another node (%s)", peer,
                  b.hostname.c_str());
    }
    *kind = Kind::kShm;
    return attncclSuccess;
  }
  if (mode == "auto" && sameNode) {
    *kind = Kind::kShm;
    return attncclSuccess;
  }
  if (!a.hasUcx || !b.hasUcx) {
    return fail(attncclNotSupported, "rank %d (%s) needs the ucx transport, which %s was built without", peer,
                b.hostname.c_str(), a.hasUcx ? "that rank" : "this process");
  }
  *kind = Kind::kUcx;
  return attncclSuccess;
}

}  // namespace

attncclResult_t resolveConfig(const attncclConfig_t* config, const CommConfig* inherit, CommConfig* out) {
  CommConfig c;
  if (inherit) {
    c = *inherit;
  } else {
    c.timeoutMs = static_cast<int>(paramInt(Param::TimeoutMs));
    c.cpuThreads = static_cast<int>(paramInt(Param::CpuThreads));
    c.transport = paramString(Param::Transport);
    c.hybridGroupSize = static_cast<int>(paramInt(Param::HybridGroup));
  }
  if (config) {
    ATTN_ARG(config->magic == ATTNCCL_CONFIG_MAGIC,
             "config->magic is 0x%x, not ATTNCCL_CONFIG_MAGIC: initialise configs with ATTNCCL_CONFIG_INITIALIZER",
             config->magic);
    ATTN_ARG(config->size >= offsetof(attncclConfig_t, hybridGroupSize) && config->size <= 4096,
             "config->size is %zu; initialise configs with ATTNCCL_CONFIG_INITIALIZER", config->size);
    const int undef = ATTNCCL_CONFIG_UNDEF_INT;
    if (config->device != undef) {
      ATTN_ARG(config->device >= ATTNCCL_DEVICE_CPU, "config->device is %d (use ATTNCCL_DEVICE_CPU or a CUDA ordinal)",
               config->device);
      c.device = config->device;
    }
    if (config->blocking != undef) {
      ATTN_ARG(config->blocking == 0 || config->blocking == 1, "config->blocking is %d (0 or 1)", config->blocking);
      c.blocking = config->blocking == 1;
    }
    if (config->timeoutMs != undef && config->timeoutMs != 0) {
      ATTN_ARG(config->timeoutMs > 0, "config->timeoutMs is %d (> 0, or 0 for the default)", config->timeoutMs);
      c.timeoutMs = config->timeoutMs;
    }
    if (config->cpuThreads != undef && config->cpuThreads != 0) {
      ATTN_ARG(config->cpuThreads > 0 && config->cpuThreads <= 4096, "config->cpuThreads is %d (1..4096, or 0 = auto)",
               config->cpuThreads);
      c.cpuThreads = config->cpuThreads;
    }
    if (config->transport != nullptr) c.transport = config->transport;
    if (config->size >= sizeof(attncclConfig_t) && config->hybridGroupSize != undef && config->hybridGroupSize != 0) {
      ATTN_ARG(config->hybridGroupSize > 0, "config->hybridGroupSize is %d (> 0, or 0 = ranks per node)",
               config->hybridGroupSize);
      c.hybridGroupSize = config->hybridGroupSize;
    }
  }
  if (c.transport.empty()) c.transport = "auto";
  ATTN_ARG(c.transport == "auto" || c.transport == "shm" || c.transport == "ucx",
           "transport is '%s' (auto, shm or ucx)", c.transport.c_str());
  ATTN_ARG(c.timeoutMs > 0, "timeout is %d ms (ATTNCCL_TIMEOUT_MS must be > 0)", c.timeoutMs);
  ATTN_ARG(c.cpuThreads >= 0, "cpuThreads is %d (ATTNCCL_CPU_THREADS must be >= 0)", c.cpuThreads);
  if (c.device != ATTNCCL_DEVICE_CPU && !ATTNCCL_HAVE_CUDA) {
    return fail(attncclNotSupported, "config->device is %d but this attnccl was built without CUDA", c.device);
  }
  if (c.device != ATTNCCL_DEVICE_CPU) ATTN_CHECK(deviceCheckOrdinal(c.device));
  *out = c;
  return attncclSuccess;
}

attncclResult_t commInit(attncclComm* comm, const attncclUniqueId& uid) {
  logSetRank(comm->rank);
  const int n = comm->nranks;
  const int me = comm->rank;
  comm->topo.reset(new Topology());
  ATTN_CHECK(Topology::detect(comm->topo.get()));

  BootstrapClient bs;
  bs.setAbort([comm] { return commAborted(comm); });
  bs.setRetryOtherRendezvous(comm->shrinkChild);
  ATTN_CHECK(bs.connect(uid, n, me, comm->shrinkChild ? comm->rendezvousTimeoutMs : comm->config.timeoutMs));

  // Round 1: identities.
  Identity mine;
  mine.pid = getpid();
  mine.hostHash = computeHostHash(&mine.hostname);
#if ATTNCCL_HAVE_UCX
  mine.hasUcx = ucxAvailable() ? 1 : 0;
#endif
  mine.cpuset = comm->topo->cpusetText;
  mine.transport = comm->config.transport;
  mine.checksum = paramInt(Param::Checksum) != 0 ? 1 : 0;
  std::vector<std::string> blobs;
  ATTN_CHECK(bs.allGather(encode(mine), &blobs));
  std::vector<Identity> ids(n);
  for (int r = 0; r < n; ++r) {
    if (!decode(blobs[r], &ids[r])) return fail(attncclInternalError, "bootstrap: malformed identity of rank %d", r);
    if (ids[r].version != mine.version) {
      return fail(attncclInvalidUsage, "rank %d runs attnccl version %d, this rank %d", r, ids[r].version,
                  mine.version);
    }
    if (ids[r].transport != mine.transport) {
      return fail(attncclInvalidUsage, "ranks disagree on the transport: rank %d asks for '%s', this rank for '%s'", r,
                  ids[r].transport.c_str(), mine.transport.c_str());
    }
    if (ids[r].checksum != mine.checksum) {
      return fail(attncclInvalidUsage, "ranks disagree on ATTNCCL_CHECKSUM: rank %d has %d, this rank %d", r,
                  ids[r].checksum, mine.checksum);
    }
  }
  comm->peers.resize(n);
  int sharers = 0, shareIndex = 0;
  for (int r = 0; r < n; ++r) {
    comm->peers[r].rank = r;
    comm->peers[r].pid = ids[r].pid;
    comm->peers[r].hostHash = ids[r].hostHash;
    comm->peers[r].hostname = ids[r].hostname;
    if (ids[r].hostHash == mine.hostHash) {
      if (r == me) comm->localRank = static_cast<int>(comm->localRanks.size());
      comm->localRanks.push_back(r);
      if (ids[r].cpuset == mine.cpuset) {
        if (r == me) shareIndex = sharers;
        ++sharers;
      }
    }
  }

  // Compute threads, and whether the node's ranks have more of them than cores (the choices of
  // the shm copy path and of sleeping waits below depend on it).
  int threads = 1;
  std::vector<int> cpus;
  planThreads(*comm->topo, sharers, shareIndex, comm->config.cpuThreads, &threads, &cpus);
  comm->config.cpuThreads = threads;
  const bool oversubscribed = static_cast<size_t>(sharers) * threads > comm->topo->cores.size();

  // Transports per pair.
  std::vector<int> shmPeers, ucxPeers;
  std::vector<Kind> kinds(n, Kind::kShm);
  for (int r = 0; r < n; ++r) {
    if (r == me) continue;
    ATTN_CHECK(chooseKind(comm->config.transport, mine, ids[r], r, &kinds[r]));
    (kinds[r] == Kind::kShm ? shmPeers : ucxPeers).push_back(r);
  }
  std::string shmBlob, ucxBlob;
  if (!shmPeers.empty()) {
    ShmParams sp;
    sp.rank = me;
    sp.nranks = n;
    sp.localRanks = comm->localRanks;
    sp.eagerBytes = static_cast<uint64_t>(std::max<int64_t>(0, paramInt(Param::ShmEagerBytes)));
    sp.chunkBytes = static_cast<uint64_t>(std::max<int64_t>(4096, paramInt(Param::ShmChunkBytes)));
    // Another process's malloc'ed buffer: on dedicated cores the staged ring (sender and receiver
    // copying at once, the chunks staying in cache) beat CMA's single copy, whose page pinning
    // halves its rate here: 2 processes on 2 cores, 1-64 MiB, 1.05-2.3x for sendrecv, one-way,
    // all-gather, all-to-all and reduce-scatter (alltoall/one-way at 1 MiB at par). With more
    // ranks than cores the staged pipeline stalls whenever its peer is not running, and CMA won
    // at 1-4 MiB (4 processes: all-to-all 0.41-0.70x staged/CMA). perf/RESULTS.md, "Which copy".
    // Whatever the rule, a sender may ask for CMA (Op::pull: a broadcast root, whose core has
    // its own copy and other peers to serve; measured in perf/RESULTS.md, "Which copy, again"),
    // except where the staged ring is forced (0).
    const int64_t cma = paramInt(Param::ShmCma);
    sp.allowCma = cma == 1 || (cma == 2 && oversubscribed);
    sp.cmaOnRequest = cma != 0;
    sp.allowDirect = paramInt(Param::ShmDirect) != 0;
    ATTN_CHECK(ShmTransport::create(sp, &comm->shm, &shmBlob));
  }
#if ATTNCCL_HAVE_UCX
  if (!ucxPeers.empty()) {
    UcxParams up;
    up.rank = me;
    up.nranks = n;
    up.timeoutMs = comm->config.timeoutMs;
    ATTN_CHECK(ucxTransportCreate(up, &comm->ucx, &ucxBlob));
  }
#endif

  // This rank's own rendezvous listener (attncclCommShrink). Without one the communicator still
  // works; only a shrink whose new root is this rank fails, and says why.
  std::string listenAddr;
  if (bootstrapListen(&comm->listener, &listenAddr) != attncclSuccess) {
    ATTN_INFO(kSubInit, "no rendezvous listener for a later shrink: %s", lastError());
    comm->listener.reset();
    listenAddr.clear();
  }

  // Round 2: addresses.
  Writer w;
  w.putString(shmBlob);
  w.putString(ucxBlob);
  w.putString(listenAddr);
  ATTN_CHECK(bs.allGather(w.data(), &blobs));
  comm->rendezvousAddrs.assign(n, std::string());
  for (int r = 0; r < n; ++r) {
    Reader rd(blobs[r]);
    if (!rd.getString(&comm->peers[r].shmBlob) || !rd.getString(&comm->peers[r].ucxBlob) ||
        !rd.getString(&comm->rendezvousAddrs[r])) {
      return fail(attncclInternalError, "bootstrap: malformed addresses of rank %d", r);
    }
  }
  comm->engine.configure(me, n, comm->config.timeoutMs, comm->shm ? comm->shm->localStats() : nullptr,
                         &comm->aborted);
  comm->engine.setParentAbortFlag(comm->parentAborted);
  comm->engine.setChecksums(mine.checksum != 0);
  // Liveness checks run at most every ATTNCCL_HEARTBEAT_MS, and at least four times per timeout.
  const int64_t beat = std::max<int64_t>(10, paramInt(Param::HeartbeatMs));
  comm->engine.setLivenessInterval(static_cast<int>(std::min<int64_t>(beat, std::max(10, comm->config.timeoutMs / 4))));
  if (comm->shm) {
    ATTN_CHECK(comm->shm->connect(comm->peers, shmPeers));
    comm->engine.addTransport(comm->shm.get());
    for (int r : shmPeers) {
      comm->engine.setRoute(r, comm->shm.get());
      comm->engine.setPeerStats(r, comm->shm->peerStats(r));
    }
  }
  if (comm->ucx) {
    ATTN_CHECK(comm->ucx->connect(comm->peers, ucxPeers));
    comm->engine.addTransport(comm->ucx.get());
    for (int r : ucxPeers) comm->engine.setRoute(r, comm->ucx.get());
  }

  if (commAborted(comm)) return fail(attncclInvalidUsage, "the communicator was aborted during initialisation");
  // Round 3: everyone is connected.
  ATTN_CHECK(bs.allGather(std::string(), &blobs));
  ATTN_CHECK(bs.finish());

  comm->pool.reset(new ThreadPool(threads, cpus));
  // Waiting ranks sleep (doorbell.h) when this node's ranks have more compute threads than cores:
  // then a polling rank takes a core from one that computes. On dedicated cores polling is
  // faster: a sleeping process may be woken onto its waker's core (measured: 2 processes on 2
  // cores, sendrecv 64 MiB 5.2 -> 3.3 GB/s when they slept).
  const int64_t sleepMode = paramInt(Param::WaitSleep);
  const bool sleeps = sleepMode == 1 || (sleepMode == 2 && oversubscribed);
  comm->engine.setSpinMicros(sleeps ? static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(paramInt(Param::SpinUs), 1000000)))
                                    : -1);
  comm->commHash = bootstrapIdKey(uid);
  if (comm->config.device != ATTNCCL_DEVICE_CPU) ATTN_CHECK(deviceCommInit(comm));
  ATTN_INFO(kSubInit, "comm %p rank %d/%d ready: %zu on this node (%zu shm, %zu ucx peers), %d compute thread(s)%s",
            static_cast<void*>(comm), me, n, comm->localRanks.size(), shmPeers.size(), ucxPeers.size(), threads,
            cpus.empty() ? "" : " bound");
  comm->ready.store(true, std::memory_order_release);
  return attncclSuccess;
}

attncclResult_t checkHandle(const attncclComm* comm, const char* fn) {
  if (comm == nullptr) return fail(attncclInvalidArgument, "%s: comm is NULL", fn);
  if (comm->magic != attncclComm::kMagic) {
    return fail(attncclInvalidArgument, "%s: comm %p is not a communicator (destroyed or corrupt)", fn,
                static_cast<const void*>(comm));
  }
  return attncclSuccess;
}

bool commAborted(const attncclComm* comm) {
  return comm->aborted.load(std::memory_order_acquire) ||
         (comm->parentAborted != nullptr && comm->parentAborted->load(std::memory_order_acquire));
}

attncclResult_t checkComm(attncclComm* comm, const char* fn) {
  ATTN_CHECK(checkHandle(comm, fn));
  if (comm->aborted.load()) return fail(attncclInvalidUsage, "%s: the communicator was aborted", fn);
  if (comm->finalized) {
    return fail(attncclInvalidUsage, "%s: the communicator was finalized (only attncclCommDestroy may follow)", fn);
  }
  if (!comm->identityKnown.load(std::memory_order_acquire) ||
      (!comm->ready.load(std::memory_order_acquire) && comm->config.blocking)) {
    return fail(attncclInvalidUsage,
                "%s: the communicator is still being created (wait until attncclCommGetAsyncError reports "
                "attncclSuccess)", fn);
  }
  int async = comm->asyncError.load();
  if (async != attncclSuccess && async != attncclInProgress) {
    std::lock_guard<std::mutex> lock(comm->asyncErrorMutex);
    return fail(static_cast<attncclResult_t>(async), "%s: the communicator failed earlier: %s", fn,
                comm->asyncErrorText.c_str());
  }
  return attncclSuccess;
}

void setAsyncError(attncclComm* comm, attncclResult_t r, const char* message) {
  {
    std::lock_guard<std::mutex> lock(comm->asyncErrorMutex);
    int cur = comm->asyncError.load();
    if (cur != attncclSuccess && cur != attncclInProgress) return;  // the first failure stays
    comm->asyncErrorText = message ? message : "";
    comm->asyncError.store(r);
  }
  ATTN_INFO(kSubInit, "comm %p rank %d failed (%s): %s", static_cast<void*>(comm), comm->rank,
            attncclGetErrorString(r), message ? message : "");
  // The transports, and whatever the extension made over them, exist once initialisation
  // finished (a failure during a non-blocking init runs on the worker that is building them).
  if (!comm->ready.load(std::memory_order_acquire)) return;
  if (comm->shm) comm->shm->markClosing();
  commNotifyAbort(comm);
}

CommExtension* commExtension(attncclComm* comm, CommExtension* (*make)()) {
  std::lock_guard<std::mutex> lock(comm->extensionMutex);
  if (!comm->extension) comm->extension.reset(make());
  return comm->extension.get();
}

void commNotifyAbort(attncclComm* comm) {
  std::lock_guard<std::mutex> lock(comm->extensionMutex);
  if (comm->extension) comm->extension->onAbort();
}

// A data call's work allocates (schedules, plans, staging, received items). Nothing thrown may
// unwind into a C caller, and the in-flight count must still drop (abort waits for it), so the
// work runs inside this guard: out of memory is a system error, anything else a bug.
static attncclResult_t runGuarded(const char* fn, const std::function<attncclResult_t()>& work) {
  try {
    return work();
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "%s: out of memory (std::bad_alloc)", fn);
  } catch (const std::exception& e) {
    return fail(attncclInternalError, "%s: unexpected exception: %s", fn, e.what());
  } catch (...) {
    return fail(attncclInternalError, "%s: unexpected exception of unknown type", fn);
  }
}

attncclResult_t commRun(attncclComm* comm, const char* fn, std::function<attncclResult_t()> work) {
  if (!comm->config.blocking) {
    try {  // queueing allocates too (the task, its captures, the queue's node)
      comm->worker->push([comm, fn, work = std::move(work)] {
        if (commAborted(comm)) return fail(attncclInvalidUsage, "%s: the communicator was aborted", fn);
        comm->inFlight.fetch_add(1);
        logSetRank(comm->rank);
        attncclResult_t r = runGuarded(fn, work);
        comm->inFlight.fetch_sub(1);
        return r;
      });
    } catch (const std::bad_alloc&) {
      return fail(attncclSystemError, "%s: out of memory queueing the call (std::bad_alloc)", fn);
    }
    return attncclInProgress;
  }
  // Counted before the abort flag is read again: attncclCommAbort sets the flag, then waits for
  // the count to drop, so either it waits for this call or this call sees the flag.
  comm->inFlight.fetch_add(1);
  if (commAborted(comm)) {
    comm->inFlight.fetch_sub(1);
    return fail(attncclInvalidUsage, "%s: the communicator was aborted", fn);
  }
  logSetRank(comm->rank);
  attncclResult_t r = runGuarded(fn, work);
  comm->inFlight.fetch_sub(1);
  if (r == attncclRemoteError || r == attncclTimeout || r == attncclSystemError || r == attncclInternalError) {
    std::string msg = std::string(fn) + ": " + lastError();
    setAsyncError(comm, r, msg.c_str());
  }
  return r;
}

}  // namespace attnccl
