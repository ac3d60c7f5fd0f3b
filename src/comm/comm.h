// The communicator: identity, resolved configuration, peers and their transports, the
// point-to-point engine, the rank's compute pool and its error state. One communicator is used
// by one thread at a time (as in NCCL); a non-blocking communicator runs its calls on its own
// worker thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attnccl.h"
#include "core/thread_pool.h"
#include "comm/device_hooks.h"
#include "transport/engine.h"
#include "transport/transport.h"

namespace attnccl {
class ShmTransport;
class AsyncWorker;
class BootstrapListener;
struct Topology;

// State that a higher layer keeps per communicator (the attention collectives' scratch arena,
// cached decisions and hybrid groups). The communicator knows nothing of it: the owning layer
// creates it on first use (commExtension), the communicator destroys it in its teardown, after
// its worker has stopped and before its pool and transports go, and tells it of an abort or of
// a failure that leaves the communicator unusable through onAbort.
class CommExtension {
 public:
  virtual ~CommExtension() = default;
  // May run on another thread than the communicator's calls, while one of them waits: it must
  // only flag, never block or free.
  virtual void onAbort() = 0;
};

struct CommConfig {
  int device = ATTNCCL_DEVICE_CPU;
  bool blocking = true;
  int timeoutMs = 300000;
  int cpuThreads = 1;  // resolved: >= 1
  std::string transport = "auto";
  int hybridGroupSize = 0;
};

}  // namespace attnccl

struct attncclComm {
  uint64_t magic = kMagic;
  static constexpr uint64_t kMagic = 0xa77cc1c0a77cc1c0ull;

  int rank = 0;
  int nranks = 1;
  uint64_t commHash = 0;  // same on every rank of the communicator
  attnccl::CommConfig config;
  std::vector<attnccl::PeerInfo> peers;
  std::vector<int> localRanks;  // ranks on this node, increasing (this rank included)
  int localRank = 0;            // index of this rank in localRanks
  std::unique_ptr<attnccl::Topology> topo;

  std::unique_ptr<attnccl::ShmTransport> shm;
  std::unique_ptr<attnccl::Transport> ucx;
  attnccl::Engine engine;
  std::unique_ptr<attnccl::ThreadPool> pool;

  std::atomic<bool> aborted{false};
  std::atomic<int> asyncError{attncclSuccess};
  std::mutex asyncErrorMutex;
  std::string asyncErrorText;   // message of the async error
  std::atomic<int> inFlight{0};  // calls running on this communicator (abort waits for them)
  std::atomic<bool> ready{false};  // initialisation finished (non-blocking init runs on the worker)
  // False while rank and nranks are not known yet: the child of a non-blocking split learns them
  // on a worker, after attncclCommSplit has returned it.
  std::atomic<bool> identityKnown{true};
  // The abort flag of the communicator whose call creates this one (split children while they
  // initialise): its abort ends this one's waits too.
  const std::atomic<bool>* parentAborted = nullptr;
  bool finalized = false;
  std::unique_ptr<attnccl::AsyncWorker> worker;  // non-blocking communicators only
  // The higher layer's per-communicator state (see CommExtension); extensionMutex guards its
  // creation against onAbort from another thread.
  std::unique_ptr<attnccl::CommExtension> extension;
  std::mutex extensionMutex;
  uint64_t splitCount = 0;  // splits made from this communicator (seeds child ids)
  // A listening socket this rank keeps so that it can serve a rendezvous alone (the new root of
  // attncclCommShrink), and every rank's address of one (packed, bootstrapIdAt; empty where a
  // rank could not listen), exchanged in init's round 2. See comm_shrink.cc.
  std::shared_ptr<attnccl::BootstrapListener> listener;
  std::vector<std::string> rendezvousAddrs;
  // This communicator is a shrink's: its rendezvous may at first answer for an earlier one, and
  // waits rendezvousTimeoutMs (not config.timeoutMs) for its ranks.
  bool shrinkChild = false;
  int rendezvousTimeoutMs = 0;
  std::vector<char> collScratch;  // staging of the building-block collectives, reused
  // CUDA communicators (config.device >= 0): streams, scratch, peer windows.
  std::unique_ptr<attnccl::DeviceComm, attnccl::DeviceCommDeleter> dev;

  ~attncclComm();
};

namespace attnccl {

// Validates a comm handle passed to a query (null, not a communicator), naming it and its value.
attncclResult_t checkHandle(const attncclComm* comm, const char* fn);
// Validates a comm handle passed to a call that uses the communicator: checkHandle, then its
// state (aborted, failed, finalized, still being created).
attncclResult_t checkComm(attncclComm* comm, const char* fn);
// True when this communicator or the one whose call created it was aborted.
bool commAborted(const attncclComm* comm);
// Records a failure that leaves the communicator unusable as its async error. Its shm peers see
// it leave at once (so ranks waiting on it fail within a liveness check, not at their timeout),
// and its extension hears of it (onAbort; the attention layer ends the waits of its views).
void setAsyncError(attncclComm* comm, attncclResult_t r, const char* message);
// Builds a communicator (the body of attncclCommInitRank, also used by split).
attncclResult_t commInit(attncclComm* comm, const attncclUniqueId& id);
// Creates a communicator and initialises it: at once when cfg.blocking (returning the result),
// else on its worker (returning attncclInProgress). parentAborted: see attncclComm.
// shrinkWaitMs > 0: a shrink's communicator, whose rendezvous waits that long (see attncclComm).
attncclResult_t commCreate(attncclComm_t* out, int nranks, const attncclUniqueId& id, int rank, const CommConfig& cfg,
                           const std::atomic<bool>* parentAborted = nullptr, int shrinkWaitMs = 0);
// The communicator's extension, created by `make` on the first call. Thread-safe.
CommExtension* commExtension(attncclComm* comm, CommExtension* (*make)());
// Tells the extension, if there is one, that the communicator was aborted or failed.
void commNotifyAbort(attncclComm* comm);
// Starts the worker thread of a non-blocking communicator.
void commStartWorker(attncclComm* comm);
// Resolves a user config (may be null) over defaults; inherit, if given, supplies the defaults.
attncclResult_t resolveConfig(const attncclConfig_t* config, const CommConfig* inherit, CommConfig* out);

// Runs a data call: inline on a blocking communicator (returning its result), queued on the
// worker of a non-blocking one (returning attncclInProgress; the result lands in asyncError).
// A failure of a blocking call also becomes the communicator's async error when it leaves the
// communicator unusable (timeouts, remote errors).
attncclResult_t commRun(attncclComm* comm, const char* fn, std::function<attncclResult_t()> work);

}  // namespace attnccl
