// The narrow interface every transport implements. A transport moves opaque byte messages
// between ranks of one communicator: post a send or a receive, progress, complete. Messages
// from one sender to one receiver with the same tag are matched in posting order (MPI/NCCL
// semantics); different tags are independent streams, so a message waiting for its receive on
// one tag never blocks another tag. Transports never block: progress() does what it can and
// returns. Waiting, timeouts and statistics live in the engine (engine.h), above all transports.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "attnccl.h"
#include "transport/doorbell.h"

namespace attnccl {

// Counters of one rank (attncclCommGetStats). They live in shared memory when the shm transport
// is up, so a peer that loads from this rank's memory directly can count this rank's sent bytes.
struct StatsBlock {
  std::atomic<uint64_t> bytesSent{0}, bytesRecv{0}, messagesSent{0}, messagesRecv{0};
};

// Completion record of one posted operation. The poster owns it and keeps it alive (and at the
// same address) until done; the transport calls complete() with the result and the payload size
// (sends: bytes sent; receives: bytes that arrived), which also counts the statistics.
struct Op {
  enum : int { kPending = 0, kDone = 1 };
  std::atomic<int> state{kPending};
  attncclResult_t result = attncclSuccess;
  size_t bytes = 0;  // receives: bytes that arrived (<= the posted size)
  int peer = -1;     // filled by the engine, for statistics and error messages
  bool isSend = false;
  // Sends: the receiver should read this buffer itself where it can (one copy, on its side),
  // because the sender has other work meanwhile (a broadcast root feeding several peers and
  // copying its own result). A hint: transports without such a read ignore it.
  bool pull = false;
  StatsBlock* stats = nullptr;  // set by the engine for traffic that crosses to another rank

  bool done() const { return state.load(std::memory_order_acquire) == kDone; }
  void complete(attncclResult_t r, size_t n) {
    result = r;
    bytes = n;
    if (r == attncclSuccess && stats != nullptr) {
      if (isSend) {
        stats->bytesSent.fetch_add(n, std::memory_order_relaxed);
        stats->messagesSent.fetch_add(1, std::memory_order_relaxed);
      } else {
        stats->bytesRecv.fetch_add(n, std::memory_order_relaxed);
        stats->messagesRecv.fetch_add(1, std::memory_order_relaxed);
      }
    }
    state.store(kDone, std::memory_order_release);
  }
  void reset() {
    state.store(kPending, std::memory_order_relaxed);
    result = attncclSuccess;
    bytes = 0;
    pull = false;
  }
};

// What a rank tells everyone at bootstrap, and what the comm knows about each peer.
struct PeerInfo {
  int rank = -1;
  int pid = 0;
  uint64_t hostHash = 0;   // same value <=> same node
  std::string hostname;
  std::string shmBlob;     // the shm transport's address (empty if it has none)
  std::string ucxBlob;     // the ucx transport's address (empty if UCX is unavailable)
};

struct TransportCaps {
  bool directLoad = false;  // a peer's library-allocated memory can be read in place
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;

  // Connects to the given peers (those this transport serves), using every rank's PeerInfo.
  // Collective over those peers only in the sense that both ends call it; it must not wait on
  // anything that the peer provides later than its own connect call.
  virtual attncclResult_t connect(const std::vector<PeerInfo>& all, const std::vector<int>& peers) = 0;

  // Post a send / receive. The buffer must stay untouched until op->done(). A receive may be
  // larger than the message (op->bytes tells what arrived); a message larger than its receive
  // fails that receive with attncclInvalidUsage.
  virtual attncclResult_t isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op) = 0;
  virtual attncclResult_t irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) = 0;

  // Advance every posted operation as far as possible without blocking. A hard failure of a
  // peer completes that peer's ops with an error (attncclRemoteError) and is also returned.
  virtual attncclResult_t progress() = 0;

  // attncclSuccess while the peer looks alive; attncclRemoteError once it is known dead.
  virtual attncclResult_t checkPeer(int peer) = 0;

  // Complete every pending op with `why` and release what can be released without the peers'
  // help (used by abort; must not block).
  virtual void cancelAll(attncclResult_t why) = 0;

  // After a wait failed for good (a peer died or stopped answering: attncclRemoteError or
  // attncclTimeout, which leave the communicator failed): end every pending op with `why` and
  // make sure that nothing of this transport touches a posted buffer once the failed call has
  // returned, since its caller may free those buffers at once. May block for a bounded time.
  // The default is cancelAll: transports whose transfers move only inside progress() need no more.
  virtual void quiesce(attncclResult_t why) { cancelAll(why); }

  virtual TransportCaps caps(int peer) const { return {}; }

  // This rank's doorbell when every peer of this transport rings it after publishing anything
  // this rank may wait for (doorbell.h); nullptr when waits on this transport must poll.
  virtual Doorbell* doorbell() { return nullptr; }
};

}  // namespace attnccl
