// Shared-memory transport between ranks of one node (processes or threads, any mix).
//
// Every rank owns a segment (a memfd region) with one inbound channel per rank of the node; a
// sender writes control messages into its channel of the receiver's segment. Small messages
// travel inline (eager). A larger message is announced (RTS) and pulled by the receiver when it
// matches a receive, by the cheapest path that applies:
//   1. in place: the source lies in a library region (attncclMemAlloc, library windows) or in
//      this same process -> one memcpy by the receiver (zero-copy for the sender);
//   2. CMA: process_vm_readv from the sender's address space -> one kernel copy;
//   3. staged: the receiver answers CTS and the sender streams chunks through the chunk ring
//      (two copies, pipelined).
// The receiver's FIN releases the sender's buffer after 1 and 2.
//
// Liveness: a peer whose process is gone (/proc/<pid>/stat: missing, a zombie, or a new process
// with the same pid, told by its start time) or whose communicator left or failed (the
// `closing` flag of its segment, set by destroy, abort and any failure that makes its
// communicator unusable) turns pending operations with it into attncclRemoteError. A waiting rank
// checks the peers it waits for every ATTNCCL_HEARTBEAT_MS (engine.cc). No heartbeat counter is
// kept: a dead process is seen by the kernel's account of it, and a live rank that stopped
// calling (stuck or stopped) is indistinguishable from a slow one, which only the timeout can
// judge; a failed rank's closing flag makes failures cascade through chains of waiting ranks in
// one check interval per hop.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "transport/shm_layout.h"
#include "transport/shm_region.h"
#include "transport/transport.h"

namespace attnccl {

struct ShmParams {
  int rank = 0;
  int nranks = 1;
  std::vector<int> localRanks;  // ranks of this node, increasing, this rank included
  uint64_t eagerBytes = 8192;
  uint64_t chunkBytes = 262144;
  uint32_t ctrlSlots = 64;
  uint32_t chunkSlots = 4;
  bool allowCma = true;      // CMA for every receive of another process's ordinary buffer
  bool cmaOnRequest = true;  // CMA for those whose sender asked for it (kRtsPull) when !allowCma
  bool allowDirect = true;
};

class ShmTransport : public Transport {
 public:
  static attncclResult_t create(const ShmParams& params, std::unique_ptr<ShmTransport>* out, std::string* blob);
  ~ShmTransport() override;

  const char* name() const override { return "shm"; }
  attncclResult_t connect(const std::vector<PeerInfo>& all, const std::vector<int>& peers) override;
  attncclResult_t isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op) override;
  attncclResult_t irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) override;
  attncclResult_t progress() override;
  attncclResult_t checkPeer(int peer) override;
  void cancelAll(attncclResult_t why) override;
  TransportCaps caps(int peer) const override;
  Doorbell* doorbell() override { return seg_ ? &seg_->bell : nullptr; }

  // Whether receives of another process's unregistered buffers use CMA (else the staged ring).
  bool cmaAllowed() const { return params_.allowCma; }
  // Large receives so far that neither read library memory nor a same-process buffer in place,
  // by the copy that moved them: CMA or the staged ring.
  struct PullCounts {
    uint64_t cma = 0, staged = 0;
  };
  PullCounts pullCounts() const { return pulls_; }
  // This rank's counters, in its segment (peers update them on direct loads).
  StatsBlock* localStats();
  // A connected peer's counters (mapped), or nullptr.
  StatsBlock* peerStats(int peer);
  // Maps a peer's library region for in-place access (attention windows).
  attncclResult_t mapRegion(int peer, const RegionHandle& h, void** out);
  // Marks this rank as gone for its peers (destroy/abort).
  void markClosing();

 private:
  struct PendingSend {
    Op* op;
    const char* buf;
    size_t bytes;
    uint64_t msgId;
    uint64_t recvId = 0;
    size_t offset = 0;
  };
  struct PendingRecv {
    Op* op;
    char* buf;
    size_t bytes;
    size_t msgBytes = 0;
    size_t received = 0;
  };
  struct Unexpected {
    shm::CtrlMsg msg;
    std::vector<char> data;  // eager payload
  };
  struct Outgoing {
    shm::CtrlMsg msg;
    const char* payload = nullptr;  // eager payload, copied into the slot
    Op* completeOnPush = nullptr;
  };
  struct Peer {
    bool connected = false;
    bool dead = false;
    bool cmaOk = true;      // CMA for every pull from this peer (ShmParams::allowCma)
    bool cmaOnAsk = true;   // CMA for pulls the peer asked for (ShmParams::cmaOnRequest)
    int pid = 0;
    uint64_t startTime = 0;
    shm::SegHeader* seg = nullptr;
    uint64_t ownerBase = 0;  // the segment's address in its owner's process (sync keys, below)
    shm::ChannelView out;  // my channel in the peer's segment
    shm::ChannelView in;   // the peer's channel in my segment
    uint64_t outHead = 0, inTail = 0, chunkHead = 0, chunkTail = 0;
    std::deque<Outgoing> outbox;
    std::map<uint32_t, std::deque<std::unique_ptr<PendingRecv>>> posted;
    std::map<uint32_t, std::deque<Unexpected>> unexpected;
    std::unordered_map<uint64_t, std::unique_ptr<PendingSend>> awaiting;  // RTS sent, FIN/CTS due
    std::deque<std::unique_ptr<PendingSend>> staged;                       // CTS received
    std::unordered_map<uint64_t, std::unique_ptr<PendingRecv>> stagedRecvs;
  };

  ShmTransport() = default;
  void drainInbound(int peer, Peer& p);
  void handle(int peer, Peer& p, const shm::CtrlMsg& m, const char* inlineData);
  void deliverEager(Peer& p, std::unique_ptr<PendingRecv> r, const shm::CtrlMsg& m, const char* data);
  void startPull(int peer, Peer& p, std::unique_ptr<PendingRecv> r, const shm::CtrlMsg& rts);
  bool pullDirect(int peer, Peer& p, PendingRecv& r, const shm::CtrlMsg& rts, attncclResult_t* err);
  void flushOutbox(Peer& p);
  void pumpStaged(Peer& p);
  void failPeer(int peer, Peer& p, attncclResult_t why);
  bool peerAlive(const Peer& p) const;
  // ThreadSanitizer cannot see that two mappings of one segment are the same memory, so the
  // ring indices' release/acquire pairs do not order, in its eyes, what a thread-rank did before
  // publishing (say, reading a peer's send buffer in place) and what the peer does after seeing
  // it (reusing that buffer). These name each index by its address in the owner's mapping and
  // report the pair to TSan explicitly; they compile to nothing in other builds.
  void syncRelease(const Peer& p, const std::atomic<uint64_t>& index, bool peerSegment) const;
  void syncAcquire(const Peer& p, const std::atomic<uint64_t>& index, bool peerSegment) const;

  ShmParams params_;
  Region segRegion_;
  shm::SegHeader* seg_ = nullptr;
  std::vector<int> localIndex_;  // rank -> index in localRanks, -1 elsewhere
  std::vector<Peer> peers_;
  std::vector<int> active_;      // connected peer ranks
  RegionMapper mapper_;
  PullCounts pulls_;  // pullDirect and the staged path, for tests and statistics
  uint64_t nextMsgId_ = 1;
  uint64_t nextRecvId_ = 1;
  int myPid_ = 0;
};

}  // namespace attnccl
