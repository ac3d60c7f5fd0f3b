// The point-to-point engine of a communicator: routes each peer's messages to the transport
// chosen for that pair (or to the self queue), progresses every transport, waits with the
// communicator's timeout while watching peers' liveness and the abort flag, and counts the
// bytes and messages of attncclCommGetStats. Collectives and executors are written over it.
//
// Checksum mode (ATTNCCL_CHECKSUM=1, transport/checksum.h): a message to another rank is posted
// as two transport operations, the payload and a trailer with its hash, both owned by a Checked
// record of the engine; progress() completes the caller's Op once both are done, after verifying
// the hash on the receiving side. A mismatch fails the receive with attncclRemoteError.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "transport/checksum.h"
#include "transport/transport.h"

namespace attnccl {

// Tags of the internal streams. Each collective call completes before the next one starts on a
// communicator, and matching is FIFO per (peer, tag), so calls may reuse the same tags.
enum Tag : uint32_t {
  kTagUser = 0,         // attncclSend/attncclRecv
  kTagColl = 1,         // building-block collectives
  kTagInternal = 2,     // small internal exchanges (split, window handles, barriers)
  kTagTune = 3,         // the tuner's link measurement between nodes
  kTagAttnBase = 16,    // attention executors: kTagAttnBase + stream index
  // Head all-to-all exchanges (Ulysses, hybrid groups, attncclHeadAllToAll): + exchange index
  // (< 2^24). Above every attn::itemTag (kTagAttnBase + at most 2^31).
  kTagHeadExchange = 0xF0000000u,
  // The KV cache's combine (attn/kvcache/attend.cc): one stream, above the head exchanges.
  kTagKvCache = 0xF1000000u,
};

class Engine;

// The ops of one wait. Transports keep pointers to posted ops until they complete; if a wait
// fails (timeout, dead peer, abort) the ops are abandoned while still posted, so the array hands
// them to the engine, which keeps them alive until the communicator is torn down.
class OpArray {
 public:
  OpArray(Engine& engine, size_t n);
  ~OpArray();
  OpArray(const OpArray&) = delete;
  OpArray& operator=(const OpArray&) = delete;
  Op& operator[](size_t i) { return ops_[i]; }
  Op* data() { return ops_.get(); }
  size_t size() const { return n_; }

 private:
  Engine& engine_;
  std::unique_ptr<Op[]> ops_;
  size_t n_;
};

class Engine {
 public:
  Engine() = default;
  ~Engine();

  // Set up: rank identity, timeout and where the counters live (nullptr: private block).
  void configure(int rank, int nranks, int timeoutMs, StatsBlock* stats, const std::atomic<bool>* abortFlag);
  // peer -> transport (not owned). nullptr for self.
  void setRoute(int peer, Transport* t);
  void addTransport(Transport* t);  // every transport progress() must drive
  // Counters of a peer's rank (for direct loads), nullptr if not reachable.
  void setPeerStats(int peer, StatsBlock* stats);
  // How often a wait checks the liveness of the peers it waits for (ATTNCCL_HEARTBEAT_MS).
  void setLivenessInterval(int ms) { livenessMs_ = ms; }
  int livenessInterval() const { return livenessMs_; }
  // How long a wait polls without progress before it sleeps on its transport's doorbell
  // (ATTNCCL_SPIN_US; negative: never sleep).
  void setSpinMicros(int us) { spinUs_ = us; }
  int spinMicros() const { return spinUs_; }
  // A second abort flag (the creating communicator's, see attncclComm::parentAborted).
  void setParentAbortFlag(const std::atomic<bool>* flag) { parentAbort_ = flag; }
  // Checksum mode: every message to another rank carries a trailer with the payload's hash.
  void setChecksums(bool on) { checksums_ = on; }
  bool checksums() const { return checksums_; }
  // Test hook: the next `count` verified receives have one payload bit flipped before the check,
  // as if the transfer had corrupted it.
  void corruptReceivesForTest(int count) { corruptForTest_.store(count); }

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  Transport* route(int peer) const { return routes_[peer]; }
  int timeoutMs() const { return timeoutMs_; }

  // pull: Op::pull, the hint that the receiver should read the buffer itself.
  attncclResult_t isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op, bool pull = false);
  attncclResult_t irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op);
  attncclResult_t progress();
  // Wait for completion, bounded by the timeout; returns the op's result (or timeout/abort).
  attncclResult_t wait(Op* op);
  // Adds its duration to the calling thread's wait clock (transport/thread_clock.h).
  attncclResult_t waitAll(Op* ops, size_t n);
  attncclResult_t waitAll(OpArray& ops) { return waitAll(ops.data(), ops.size()); }
  // A wait that ends failed for good (an op's result or the wait's own check isFatal) quiesces
  // every transport before it returns (failedWait), so nothing touches the caller's buffers
  // afterwards.
  static bool isFatal(attncclResult_t r);
  // Keeps ops that may still be referenced by a transport (see OpArray).
  void adopt(std::unique_ptr<Op[]> ops) { orphans_.push_back(std::move(ops)); }
  // Blocking conveniences.
  attncclResult_t send(int peer, uint32_t tag, const void* buf, size_t bytes);
  attncclResult_t recv(int peer, uint32_t tag, void* buf, size_t bytes);
  attncclResult_t sendrecv(int sendPeer, const void* sbuf, size_t sbytes, int recvPeer, void* rbuf, size_t rbytes,
                           uint32_t tag);
  // Small internal collectives over the engine (ring algorithms; for metadata, not bulk data).
  attncclResult_t allGatherSmall(const void* mine, size_t bytes, void* all);
  attncclResult_t barrier();

  // Record payload that this rank loaded directly from peer's memory (no message).
  void countDirectLoad(int peer, size_t bytes);
  void countDirectStore(int peer, size_t bytes);
  StatsBlock& stats() { return *stats_; }

  // Fail every pending operation (abort). Does not block.
  void cancelAll(attncclResult_t why);
  // As cancelAll, and every transport lets go of the buffers of what it still had in flight
  // (Transport::quiesce; bounded, may block). Before buffers the ops point into are freed, e.g.
  // the communicator's own arenas at destroy or abort.
  void quiesce(attncclResult_t why);
  // Deadline helper for waits built outside the engine.
  std::chrono::steady_clock::time_point deadline() const;
  // Checks the abort flag, the liveness of the peers of the pending ops among ops[0..n) (rate
  // limited) and the deadline; non-success ends a wait.
  attncclResult_t checkWait(std::chrono::steady_clock::time_point deadline, const char* what, const Op* ops = nullptr,
                            size_t n = 0);

 private:
  struct SelfMsg {
    std::vector<char> data;
  };
  struct SelfRecv {
    void* buf;
    size_t bytes;
    Op* op;
  };
  // One message of checksum mode (see the file comment).
  struct Checked {
    Op data, trailer;
    ChecksumTrailer sum;  // sent: computed at posting; received: what the sender computed
    Op* user = nullptr;
    void* buf = nullptr;
    bool isSend = false;
    int peer = -1;
    uint32_t tag = 0;
  };
  attncclResult_t postChecked(Transport* t, int peer, uint32_t tag, void* buf, size_t bytes, Op* user, bool isSend);
  // Completes the callers' ops of finished Checked records (verifying receives).
  void finishChecked();
  attncclResult_t failedWait(attncclResult_t r);
  void endSelfOps(attncclResult_t why);
  void matchSelf(uint32_t tag);
  Doorbell* commonDoorbell(const Op* ops, size_t n) const;

  int rank_ = 0, nranks_ = 1, timeoutMs_ = 0;
  std::vector<Transport*> routes_;
  std::vector<Transport*> transports_;
  std::vector<StatsBlock*> peerStats_;
  StatsBlock ownStats_;
  StatsBlock* stats_ = &ownStats_;
  const std::atomic<bool>* abort_ = nullptr;
  const std::atomic<bool>* parentAbort_ = nullptr;
  std::map<uint32_t, std::deque<SelfMsg>> selfUnexpected_;
  std::map<uint32_t, std::deque<SelfRecv>> selfPosted_;
  std::chrono::steady_clock::time_point lastLivenessCheck_{};
  int livenessMs_ = 200;
  int spinUs_ = -1;  // set by the communicator (comm.cc)
  bool checksums_ = false;
  std::atomic<int> corruptForTest_{0};
  std::vector<std::unique_ptr<Checked>> checked_;
  std::vector<std::unique_ptr<Op[]>> orphans_;
};

}  // namespace attnccl
