// UCX (ucp) transport. One ucp context and one worker per rank (transport instance); tagged
// messages carry (source rank << 32 | tag) and receives match the full 64 bits, so every
// (peer, tag) pair is its own FIFO stream (UCX keeps per-sender order for equal tags).
//
// Ownership of an operation: the poster's Op is reached only through a Pending record of ours,
// never directly from UCX. UCX callbacks get the record as user_data; when we finish an Op early
// (cancelAll, dead peer) we complete it and clear record->op, and the record lives on until UCX
// is done with the request (its callback, or destruction). So a late UCX callback never touches
// an Op its owner may already have reused.
//
// Posting: a bad argument returns an error and leaves the op alone; a post to a peer known dead
// completes the op with attncclRemoteError and returns that too. Otherwise the post returns
// attncclSuccess and the op carries the outcome, possibly already (a message that was waiting,
// a truncation, a failure UCX reports inside the call).
//
// Peers: endpoints use UCP_ERR_HANDLING_MODE_PEER. UCX 1.13 offers that on tcp and network
// devices but not on shared memory (posix, sysv), so on one node UCX moves our messages over
// tcp. A peer that exits, even cleanly, is a failed peer here: its pending ops fail, later posts
// to it fail (except receives of messages it sent before leaving, still queued in UCX).
//
// Threads: the worker is created UCS_THREAD_MODE_SERIALIZED (a rank may move between threads
// between calls) and every public call takes `mu_`, so cancelAll() may come from another thread
// while the owner is inside progress(); it then waits for that one bounded progress() call.
// UCX may invoke the endpoint error callback from its async thread: that callback only sets
// atomics, and the failure is acted upon at the next progress()/checkPeer() under `mu_`.
//
// Abort and teardown: cancelAll() completes every op and withdraws unmatched receives, but UCX
// may still read the buffers of sends in flight and write receives already fetching data until
// the transport is destroyed; destruction closes endpoints (flushing to live peers for a bounded
// time, by force otherwise) and destroys the worker, after which no buffer is touched. A wait
// that failed for good calls quiesce() instead, which does not return while any request of ours
// is still with UCX (force-closing the endpoints they use): its caller may free the buffers.
#include "transport/ucx.h"

#include <ucp/api/ucp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/result.h"
#include "core/liveness.h"

namespace attnccl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kDefaultTimeoutMs = 300000;
// Bound of the flush that closes endpoints at destruction. A flush completes once the peer
// acknowledges (UCX's tcp and peer-failure protocols need the peer to progress); a peer that is
// busy elsewhere must not hold our teardown for the whole timeout. Data already handed to the
// kernel or to shared memory is delivered even if the flush is cut short.
constexpr int kCloseFlushMs = 2000;
// ucp_worker_progress() calls per progress(): enough to drain a burst, small enough that a flood
// of incoming traffic cannot keep one progress() call (and a waiting cancelAll) busy for long.
constexpr int kMaxProgressSpins = 64;
// Bound of quiesce(): force-closed endpoints fail their requests within a few progress calls.
constexpr int kQuiesceMs = 1000;

uint64_t ucxTag(int rank, uint32_t tag) { return (static_cast<uint64_t>(static_cast<uint32_t>(rank)) << 32) | tag; }
constexpr ucp_tag_t kFullMask = ~static_cast<ucp_tag_t>(0);
constexpr ucp_tag_t kSenderMask = 0xffffffff00000000ull;

// Completion of a posted operation as seen by attnccl.
attncclResult_t resultOf(ucs_status_t st) {
  switch (st) {
    case UCS_OK: return attncclSuccess;
    case UCS_ERR_MESSAGE_TRUNCATED: return attncclInvalidUsage;
    case UCS_ERR_NO_MEMORY: return attncclSystemError;
    case UCS_ERR_INVALID_PARAM: return attncclInvalidArgument;
    default: return attncclRemoteError;  // transport or peer failure (reset, timeout, unreachable...)
  }
}

class UcxTransport;

// Every live instance of this process. Ranks that are threads of one process are often torn down
// one after another from one thread; while an instance waits for its endpoints to close it
// progresses the others (when their lock is free), so their acknowledgements arrive.
std::mutex gInstancesMu;
std::vector<UcxTransport*> gInstances;

// Our side of one operation that UCX holds a request for.
struct Pending {
  UcxTransport* owner = nullptr;
  Op* op = nullptr;         // nullptr once the op was completed by us (cancel, dead peer)
  void* req = nullptr;      // the UCX request, once ucp_*_nbx returned it
  int peer = -1;
  uint32_t tag = 0;
  size_t posted = 0;        // bytes posted
  bool isSend = false;
  bool posting = false;     // inside ucp_*_nbx: a callback now must not recycle the record
  bool finishedEarly = false;
  Pending* prev = nullptr;  // intrusive list of outstanding records
  Pending* next = nullptr;
};

struct PeerState {
  UcxTransport* owner = nullptr;
  int rank = -1;
  ucp_ep_h ep = nullptr;
  std::atomic<bool> failed{false};    // set by the UCX error callback (any thread)
  std::atomic<int> failStatus{UCS_OK};
  bool failHandled = false;           // its ops were failed and its endpoint force-closed
};

class UcxTransport final : public Transport {
 public:
  explicit UcxTransport(const UcxParams& p) : params_(p), peers_(new PeerState[std::max(p.nranks, 1)]) {
    for (int i = 0; i < p.nranks; ++i) {
      peers_[i].owner = this;
      peers_[i].rank = i;
    }
  }
  ~UcxTransport() override;

  attncclResult_t init(std::string* blob);

  const char* name() const override { return "ucx"; }
  attncclResult_t connect(const std::vector<PeerInfo>& all, const std::vector<int>& peers) override;
  attncclResult_t isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op) override;
  attncclResult_t irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) override;
  attncclResult_t progress() override;
  attncclResult_t checkPeer(int peer) override;
  void cancelAll(attncclResult_t why) override;
  void quiesce(attncclResult_t why) override;

 private:
  static void sendCallback(void* request, ucs_status_t st, void* user);
  static void recvCallback(void* request, ucs_status_t st, const ucp_tag_recv_info_t* info, void* user);
  static void errorCallback(void* arg, ucp_ep_h, ucs_status_t st);

  attncclResult_t checkPost(const char* what, int peer, const void* buf, size_t bytes, Op* op);
  // Completes `op` with a failure; returns r so posting calls can `return failOp(...)`.
  static attncclResult_t failOp(Op* op, attncclResult_t r) {
    op->complete(r, 0);
    return r;
  }
  void finish(Pending* p, void* request, ucs_status_t st, size_t bytes);
  // Handles what ucp_*_nbx returned for record p; *still gets p when UCX keeps the request.
  attncclResult_t afterPost(Pending* p, ucs_status_ptr_t ret, size_t immBytes, const char* what,
                            Pending** still = nullptr);
  // A record for a send or receive about to be posted, linked into the pending list.
  Pending* startPending(Op* op, int peer, uint32_t tag, size_t bytes, bool isSend);
  void putPending(Pending* p);
  void link(Pending* p);
  void unlink(Pending* p);
  // Acts on peers the error callback marked failed. Returns attncclRemoteError (with a message)
  // when one failed since the last call.
  attncclResult_t handleFailedPeers();
  void failPeerOps(int peer, attncclResult_t why);
  void cancelRecvs(const std::vector<void*>& reqs);
  int endOps(attncclResult_t why);
  void closeEp(PeerState& ps, bool force);
  void reapCloses();
  int timeoutMs() const { return params_.timeoutMs > 0 ? params_.timeoutMs : kDefaultTimeoutMs; }
  void registerInstance();
  void unregisterInstance();
  // Progresses the other instances of this process whose lock is free (teardown only).
  void helpOthers();

  UcxParams params_;
  std::mutex mu_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::unique_ptr<PeerState[]> peers_;
  std::atomic<int> failedPending_{0};  // error callbacks not yet handled
  Pending* head_ = nullptr;            // outstanding records
  std::vector<Pending*> free_;         // recycled records
  std::vector<void*> closing_;         // ucp_ep_close_nbx requests not yet complete
  bool aborted_ = false;               // cancelAll ran: destruction closes endpoints by force
};

// ------------------------------------------------------------------------------------ set-up

attncclResult_t UcxTransport::init(std::string* blob) {
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return fail(attncclSystemError, "ucx: ucp_config_read failed: %s", ucs_status_string(st));

  for (const auto& kv : ucxConfigDefaults(params_.timeoutMs)) {
    st = ucp_config_modify(config, kv.first.c_str(), kv.second.c_str());
    if (st != UCS_OK) {
      ATTN_INFO(kSubTransport, "ucx: cannot set %s=%s: %s", kv.first.c_str(), kv.second.c_str(), ucs_status_string(st));
    }
  }

  char ctxName[32];
  snprintf(ctxName, sizeof(ctxName), "attnccl-r%d", params_.rank);
  ucp_params_t cp{};
  cp.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_TAG_SENDER_MASK | UCP_PARAM_FIELD_MT_WORKERS_SHARED |
                  UCP_PARAM_FIELD_ESTIMATED_NUM_EPS | UCP_PARAM_FIELD_NAME;
  cp.features = UCP_FEATURE_TAG;
  cp.tag_sender_mask = kSenderMask;
  cp.mt_workers_shared = 0;
  cp.estimated_num_eps = static_cast<size_t>(std::max(params_.nranks, 1));
  cp.name = ctxName;
  st = ucp_init(&cp, config, &context_);
  ucp_config_release(config);
  if (st != UCS_OK) {
    context_ = nullptr;
    return fail(attncclSystemError, "ucx: ucp_init failed for rank %d: %s", params_.rank, ucs_status_string(st));
  }

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
  st = ucp_worker_create(context_, &wp, &worker_);
  if (st != UCS_OK) {
    worker_ = nullptr;
    return fail(attncclSystemError, "ucx: ucp_worker_create failed for rank %d: %s", params_.rank,
                ucs_status_string(st));
  }

  ucp_worker_attr_t wa{};
  wa.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  if (ucp_worker_query(worker_, &wa) == UCS_OK && wa.thread_mode == UCS_THREAD_MODE_SINGLE) {
    // A UCX built without thread support only offers SINGLE; our mutex still serialises calls.
    ATTN_INFO(kSubTransport, "ucx: worker of rank %d runs in single-thread mode", params_.rank);
  }

  registerInstance();

  ucp_address_t* addr = nullptr;
  size_t addrLen = 0;
  st = ucp_worker_get_address(worker_, &addr, &addrLen);
  if (st != UCS_OK) {
    return fail(attncclSystemError, "ucx: ucp_worker_get_address failed for rank %d: %s", params_.rank,
                ucs_status_string(st));
  }
  blob->assign(reinterpret_cast<const char*>(addr), addrLen);
  ucp_worker_release_address(worker_, addr);
  ATTN_INFO(kSubTransport, "ucx: rank %d/%d worker up, address %zu bytes", params_.rank, params_.nranks, addrLen);
  return attncclSuccess;
}

attncclResult_t UcxTransport::connect(const std::vector<PeerInfo>& all, const std::vector<int>& peers) {
  std::lock_guard<std::mutex> lock(mu_);
  ATTN_ARG(static_cast<int>(all.size()) == params_.nranks, "ucx connect: %zu peer infos for %d ranks", all.size(),
           params_.nranks);
  for (int peer : peers) {
    ATTN_ARG(peer >= 0 && peer < params_.nranks && peer != params_.rank, "ucx connect: peer %d invalid (rank %d of %d)",
             peer, params_.rank, params_.nranks);
    PeerState& ps = peers_[peer];
    if (ps.ep != nullptr || ps.failed.load()) continue;  // already connected (or already gone)
    const std::string& blob = all[peer].ucxBlob;
    if (blob.empty()) return fail(attncclInvalidUsage, "ucx connect: rank %d has no UCX address", peer);

    // Creating an endpoint from a worker address is local: wire-up messages go out later, during
    // progress, so this never waits for the peer.
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(blob.data());
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &UcxTransport::errorCallback;
    ep.err_handler.arg = &ps;
    ucs_status_t st = ucp_ep_create(worker_, &ep, &ps.ep);
    if (st != UCS_OK) {
      ps.ep = nullptr;
      // UCX's tcp connects at once, and on this node a dead peer's port refuses at once: that is
      // the peer's failure (it died after publishing its address), not a configuration problem.
      // A killed process closes its sockets a moment before /proc shows it dead: look a while.
      if (st == UCS_ERR_UNREACHABLE && all[peer].hostHash == all[params_.rank].hostHash && all[peer].pid > 0 &&
          all[peer].pid != all[params_.rank].pid) {
        const Clock::time_point until = Clock::now() + std::chrono::milliseconds(500);
        bool alive = processAlive(all[peer].pid, 0);
        while (alive && Clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          alive = processAlive(all[peer].pid, 0);
        }
        if (!alive) {
          return fail(attncclRemoteError, "ucx: rank %d (pid %d) died before rank %d could connect to it", peer,
                      all[peer].pid, params_.rank);
        }
      }
      // UCX 1.13 gives shared-memory transports (posix, sysv) no peer-failure handling, so a
      // UCX_TLS without tcp or a network device has no lane for a PEER-mode endpoint.
      return fail(attncclSystemError, "ucx: ucp_ep_create from rank %d to rank %d failed: %s%s", params_.rank, peer,
                  ucs_status_string(st),
                  st == UCS_ERR_UNREACHABLE ? " (UCX_TLS must include a transport with peer failure handling, e.g. tcp)"
                                            : "");
    }
  }
  ATTN_INFO(kSubTransport, "ucx: rank %d connected to %zu peers", params_.rank, peers.size());
  return attncclSuccess;
}

// ------------------------------------------------------------------------- posting and completion

Pending* UcxTransport::startPending(Op* op, int peer, uint32_t tag, size_t bytes, bool isSend) {
  Pending* p;
  if (!free_.empty()) {
    p = free_.back();
    free_.pop_back();
    *p = Pending{};
  } else {
    p = new Pending{};
  }
  p->owner = this;
  p->op = op;
  p->peer = peer;
  p->tag = tag;
  p->posted = bytes;
  p->isSend = isSend;
  p->posting = true;
  link(p);
  return p;
}

void UcxTransport::putPending(Pending* p) { free_.push_back(p); }

void UcxTransport::link(Pending* p) {
  p->prev = nullptr;
  p->next = head_;
  if (head_ != nullptr) head_->prev = p;
  head_ = p;
}

void UcxTransport::unlink(Pending* p) {
  if (p->prev != nullptr) p->prev->next = p->next;
  else head_ = p->next;
  if (p->next != nullptr) p->next->prev = p->prev;
  p->prev = p->next = nullptr;
}

attncclResult_t UcxTransport::checkPost(const char* what, int peer, const void* buf, size_t bytes, Op* op) {
  ATTN_ARG(op != nullptr, "ucx %s: op is NULL", what);
  ATTN_ARG(peer >= 0 && peer < params_.nranks, "ucx %s: peer %d out of range [0, %d)", what, peer, params_.nranks);
  ATTN_ARG(peer != params_.rank, "ucx %s: peer %d is this rank (self traffic never uses a transport)", what, peer);
  ATTN_ARG(buf != nullptr || bytes == 0, "ucx %s: buffer is NULL for %zu bytes", what, bytes);
  if (peers_[peer].ep == nullptr && !peers_[peer].failed.load()) {
    return fail(attncclInvalidUsage, "ucx %s: rank %d is not connected to rank %d", what, params_.rank, peer);
  }
  return attncclSuccess;
}

// Runs in UCX callbacks and in afterPost(): completes the Op (if still ours) and releases the
// request and the record.
void UcxTransport::finish(Pending* p, void* request, ucs_status_t st, size_t bytes) {
  if (Op* op = p->op) {
    p->op = nullptr;
    attncclResult_t r = resultOf(st);
    if (st == UCS_ERR_MESSAGE_TRUNCATED) {
      fail(r, "ucx: message from rank %d tag %u is larger than the posted receive of %zu bytes", p->peer, p->tag,
           p->posted);
      bytes = 0;
    } else if (r != attncclSuccess) {
      fail(r, "ucx: %s %s rank %d tag %u (%zu bytes) failed: %s", p->isSend ? "send" : "receive",
           p->isSend ? "to" : "from", p->peer, p->tag, p->posted, ucs_status_string(st));
      bytes = 0;
    }
    op->complete(r, bytes);  // the owner may reuse op from here on: do not touch it again
  }
  if (request != nullptr) ucp_request_free(request);
  if (p->posting) {
    p->finishedEarly = true;  // afterPost() recycles it
    return;
  }
  unlink(p);
  putPending(p);
}

void UcxTransport::sendCallback(void* request, ucs_status_t st, void* user) {
  Pending* p = static_cast<Pending*>(user);
  p->owner->finish(p, request, st, p->posted);
}

void UcxTransport::recvCallback(void* request, ucs_status_t st, const ucp_tag_recv_info_t* info, void* user) {
  Pending* p = static_cast<Pending*>(user);
  p->owner->finish(p, request, st, (st == UCS_OK && info != nullptr) ? info->length : 0);
}

attncclResult_t UcxTransport::afterPost(Pending* p, ucs_status_ptr_t ret, size_t immBytes, const char* what,
                                        Pending** still) {
  p->posting = false;
  if (p->finishedEarly) {  // a callback already ran during the call
    unlink(p);
    putPending(p);
    return attncclSuccess;
  }
  if (ret == nullptr) {  // completed immediately: no callback will come
    finish(p, nullptr, UCS_OK, immBytes);
    return attncclSuccess;
  }
  if (UCS_PTR_IS_ERR(ret)) {
    ucs_status_t st = UCS_PTR_STATUS(ret);
    finish(p, nullptr, st, 0);
    // Truncation of a message that was already waiting is the receive's result, not a post error.
    if (st == UCS_ERR_MESSAGE_TRUNCATED) return attncclSuccess;
    return fail(resultOf(st), "ucx: %s with rank %d failed: %s", what, p->peer, ucs_status_string(st));
  }
  p->req = ret;
  if (still != nullptr) *still = p;
  return attncclSuccess;
}

attncclResult_t UcxTransport::isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op) {
  std::lock_guard<std::mutex> lock(mu_);
  ATTN_CHECK(checkPost("isend", peer, buf, bytes, op));
  PeerState& ps = peers_[peer];
  if (ps.failed.load() || ps.ep == nullptr) {
    fail(attncclRemoteError, "ucx isend: rank %d is unreachable (%s)", peer,
         ucs_status_string(static_cast<ucs_status_t>(ps.failStatus.load())));
    return failOp(op, attncclRemoteError);
  }
  Pending* p = startPending(op, peer, tag, bytes, true);

  ucp_request_param_t rp{};
  // Host memory only: naming the memory type spares UCX a lookup per message.
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  rp.cb.send = &UcxTransport::sendCallback;
  rp.user_data = p;
  rp.memory_type = UCS_MEMORY_TYPE_HOST;
  ucs_status_ptr_t ret = ucp_tag_send_nbx(ps.ep, buf, bytes, ucxTag(params_.rank, tag), &rp);
  return afterPost(p, ret, bytes, "send");
}

attncclResult_t UcxTransport::irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) {
  std::lock_guard<std::mutex> lock(mu_);
  ATTN_CHECK(checkPost("irecv", peer, buf, bytes, op));
  const uint64_t utag = ucxTag(peer, tag);
  const bool peerFailed = peers_[peer].failed.load();
  if (peerFailed) {
    handleFailedPeers();
    // A dead peer's message may still wait in UCX's unexpected queue (it was sent before the
    // peer exited): take it if so; otherwise nothing can ever arrive.
    ucp_tag_recv_info_t info;
    if (ucp_tag_probe_nb(worker_, utag, kFullMask, 0, &info) == nullptr) {
      fail(attncclRemoteError, "ucx irecv: rank %d is unreachable", peer);
      return failOp(op, attncclRemoteError);
    }
  }
  Pending* p = startPending(op, peer, tag, bytes, false);

  ucp_request_param_t rp{};
  // UCX 1.13 does not fill recv_info when a receive completes at once (a message that was
  // already waiting), so the size would be lost: deny immediate completion and let the callback,
  // which then runs inside ucp_tag_recv_nbx, report it.
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMORY_TYPE |
                    UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  rp.cb.recv = &UcxTransport::recvCallback;
  rp.user_data = p;
  rp.memory_type = UCS_MEMORY_TYPE_HOST;
  ucs_status_ptr_t ret = ucp_tag_recv_nbx(worker_, buf, bytes, utag, kFullMask, &rp);
  Pending* still = nullptr;
  attncclResult_t r = afterPost(p, ret, 0, "receive", &still);
  if (peerFailed && still != nullptr) {
    // The dead peer's leftover message did not complete at once (rendezvous): its data can no
    // longer come. The record stays with UCX until the request ends or the worker goes.
    if (Op* o = still->op) {
      still->op = nullptr;
      o->complete(attncclRemoteError, 0);
    }
    cancelRecvs({still->req});
    return fail(attncclRemoteError, "ucx irecv: rank %d died before its message could be fetched", peer);
  }
  return r;
}

// ------------------------------------------------------------------------- progress and failures

void UcxTransport::errorCallback(void* arg, ucp_ep_h, ucs_status_t st) {
  PeerState* ps = static_cast<PeerState*>(arg);
  ps->failStatus.store(st);
  if (!ps->failed.exchange(true)) ps->owner->failedPending_.fetch_add(1);
}

void UcxTransport::cancelRecvs(const std::vector<void*>& reqs) {
  // ucp_request_cancel may run the callback (and recycle the record) inside the call, so the
  // requests were collected first and the record list is not walked here.
  for (void* r : reqs) ucp_request_cancel(worker_, r);
}

void UcxTransport::failPeerOps(int peer, attncclResult_t why) {
  std::vector<void*> recvs;
  for (Pending* p = head_; p != nullptr; p = p->next) {
    if (p->peer != peer) continue;
    if (Op* op = p->op) {
      p->op = nullptr;
      op->complete(why, 0);
    }
    if (!p->isSend && p->req != nullptr) recvs.push_back(p->req);
  }
  cancelRecvs(recvs);
}

void UcxTransport::closeEp(PeerState& ps, bool force) {
  if (ps.ep == nullptr) return;
  ucp_request_param_t rp{};
  if (force) {
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
  }
  ucs_status_ptr_t ret = ucp_ep_close_nbx(ps.ep, &rp);
  ps.ep = nullptr;
  if (ret != nullptr && !UCS_PTR_IS_ERR(ret)) closing_.push_back(ret);
}

void UcxTransport::reapCloses() {
  size_t keep = 0;
  for (void* r : closing_) {
    if (ucp_request_check_status(r) == UCS_INPROGRESS) {
      closing_[keep++] = r;
    } else {
      ucp_request_free(r);
    }
  }
  closing_.resize(keep);
}

attncclResult_t UcxTransport::handleFailedPeers() {
  if (failedPending_.load() == 0) return attncclSuccess;
  attncclResult_t res = attncclSuccess;
  for (int i = 0; i < params_.nranks; ++i) {
    PeerState& ps = peers_[i];
    if (!ps.failed.load() || ps.failHandled) continue;
    ps.failHandled = true;
    failedPending_.fetch_sub(1);
    const char* why = ucs_status_string(static_cast<ucs_status_t>(ps.failStatus.load()));
    // A peer that finished and closed its endpoints (its communicator destroyed, its process
    // gone) fails our endpoint to it too, a moment later: nothing of ours is lost then, and a
    // healthy job's teardown must not warn. Only a loss with operations still pending on that
    // peer is a failure here; a later operation with it fails through checkPeer (engine.cc).
    bool pending = false;
    for (Pending* p = head_; p != nullptr && !pending; p = p->next) pending = p->peer == i && p->op != nullptr;
    if (!pending) {
      ATTN_INFO(kSubTransport, "ucx: rank %d: the endpoint to rank %d closed (%s) with nothing pending on it",
                params_.rank, i, why);
    } else {
      ATTN_WARN(kSubTransport, "ucx: rank %d lost rank %d: %s", params_.rank, i, why);
      res = fail(attncclRemoteError, "ucx: rank %d lost connection to rank %d: %s", params_.rank, i, why);
    }
    failPeerOps(i, attncclRemoteError);
    // A failed endpoint can only be released by force; this also fails its pending sends.
    closeEp(ps, /*force=*/true);
  }
  return res;
}

attncclResult_t UcxTransport::progress() {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < kMaxProgressSpins && ucp_worker_progress(worker_) != 0; ++i) {
  }
  attncclResult_t r = handleFailedPeers();
  if (!closing_.empty()) reapCloses();
  return r;
}

attncclResult_t UcxTransport::checkPeer(int peer) {
  std::lock_guard<std::mutex> lock(mu_);
  ATTN_ARG(peer >= 0 && peer < params_.nranks, "ucx checkPeer: peer %d out of range [0, %d)", peer, params_.nranks);
  handleFailedPeers();
  if (peers_[peer].failed.load()) {
    return fail(attncclRemoteError, "ucx: rank %d is unreachable from rank %d: %s", peer, params_.rank,
                ucs_status_string(static_cast<ucs_status_t>(peers_[peer].failStatus.load())));
  }
  return attncclSuccess;
}

// Completes every op still ours with `why` and withdraws the unmatched receives (their records
// stay until UCX calls back). Returns how many ops it ended. Caller holds mu_.
int UcxTransport::endOps(attncclResult_t why) {
  std::vector<void*> recvs;
  int ended = 0;
  for (Pending* p = head_; p != nullptr; p = p->next) {
    if (Op* op = p->op) {
      p->op = nullptr;
      op->complete(why, 0);
      ++ended;
    }
    if (!p->isSend && p->req != nullptr) recvs.push_back(p->req);
  }
  cancelRecvs(recvs);
  return ended;
}

void UcxTransport::cancelAll(attncclResult_t why) {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  // A receive already fetching a rendezvous message, and sends in flight, stay with UCX until
  // they finish or the transport is destroyed (quiesce() does not leave them).
  endOps(why);
  ATTN_INFO(kSubTransport, "ucx: rank %d cancelled all pending operations (%d)", params_.rank, static_cast<int>(why));
}

// A wait failed for good, or the communicator is going (abort, destroy). Its caller returns and
// may free every buffer it posted, but a send may still be in flight and a receive already
// matched may still be fetching a rendezvous message from a live peer, whose data would land in
// freed memory (the crash it fixes: a survivor of a peer's death in ucp_rndv_data_handler). So:
// every op ends with `why`, unmatched receives leave UCX's queue, the endpoints of peers that
// still have requests with us are closed by force (which fails those requests), and the worker
// is progressed until no request is left. The communicator has failed or is going anyway
// (comm.cc keeps the error), so no later call needs them. With nothing in flight it only marks
// the transport aborted, as cancelAll does.
void UcxTransport::quiesce(attncclResult_t why) {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  const int ended = endOps(why);
  std::vector<bool> busy(params_.nranks, false);
  for (Pending* p = head_; p != nullptr; p = p->next)
    if (p->req != nullptr) busy[p->peer] = true;
  int closed = 0;
  for (int i = 0; i < params_.nranks; ++i) {
    if (!busy[i] || peers_[i].ep == nullptr) continue;
    closeEp(peers_[i], /*force=*/true);
    ++closed;
  }
  auto held = [this] {
    for (Pending* p = head_; p != nullptr; p = p->next)
      if (p->req != nullptr) return true;
    return false;
  };
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kQuiesceMs);
  while (held() && Clock::now() < deadline) {
    ucp_worker_progress(worker_);
    if (!closing_.empty()) reapCloses();
  }
  if (held()) {
    int left = 0;
    for (Pending* p = head_; p != nullptr; p = p->next) left += p->req != nullptr ? 1 : 0;
    ATTN_WARN(kSubTransport, "ucx: rank %d: %d requests still with UCX %d ms after quiescing", params_.rank, left,
              kQuiesceMs);
  } else if (ended > 0 || closed > 0) {
    ATTN_INFO(kSubTransport, "ucx: rank %d quiesced: %d ops ended, %d endpoints closed by force", params_.rank, ended,
              closed);
  }
}

// ------------------------------------------------------------------------------------ teardown

void UcxTransport::registerInstance() {
  std::lock_guard<std::mutex> lock(gInstancesMu);
  gInstances.push_back(this);
}

void UcxTransport::unregisterInstance() {
  std::lock_guard<std::mutex> lock(gInstancesMu);
  gInstances.erase(std::remove(gInstances.begin(), gInstances.end(), this), gInstances.end());
}

void UcxTransport::helpOthers() {
  // Only try_lock: an instance in use (or itself tearing down and helping) is skipped, so two
  // helpers never wait on each other.
  std::lock_guard<std::mutex> lock(gInstancesMu);
  for (UcxTransport* o : gInstances) {
    if (o == this || !o->mu_.try_lock()) continue;
    for (int i = 0; i < kMaxProgressSpins && ucp_worker_progress(o->worker_) != 0; ++i) {
    }
    o->mu_.unlock();
  }
}

UcxTransport::~UcxTransport() {
  unregisterInstance();  // before taking mu_: helpers hold the registry lock while they lock mu_
  std::lock_guard<std::mutex> lock(mu_);
  if (worker_ != nullptr) {
    handleFailedPeers();
    std::vector<void*> recvs;
    std::vector<bool> sendsInFlight(params_.nranks, false);
    int orphaned = 0;
    for (Pending* p = head_; p != nullptr; p = p->next) {
      if (Op* op = p->op) {
        p->op = nullptr;
        op->complete(attncclInvalidUsage, 0);
        ++orphaned;
      }
      if (p->isSend) sendsInFlight[p->peer] = true;
      else if (p->req != nullptr) recvs.push_back(p->req);
    }
    if (orphaned > 0) {
      ATTN_WARN(kSubTransport, "ucx: rank %d destroyed with %d pending operations (failed)", params_.rank, orphaned);
    }
    cancelRecvs(recvs);
    // A flush close delivers what was sent (eager sends complete before the data left); force
    // closing is for peers that cannot answer, after an abort, or with sends nobody will receive.
    for (int i = 0; i < params_.nranks; ++i) {
      PeerState& ps = peers_[i];
      closeEp(ps, aborted_ || ps.failed.load() || sendsInFlight[i]);
    }
    // Flush closes complete when peers acknowledge; force closes discard their lanes during
    // progress and then fail the endpoint's sends through their callbacks.
    auto sendsLeft = [this] {
      for (Pending* p = head_; p != nullptr; p = p->next)
        if (p->isSend && p->req != nullptr) return true;
      return false;
    };
    const int waitMs = std::min(timeoutMs(), kCloseFlushMs);
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(waitMs);
    while ((!closing_.empty() || sendsLeft()) && Clock::now() < deadline) {
      ucp_worker_progress(worker_);
      reapCloses();
      if (!closing_.empty()) helpOthers();
    }
    if (!closing_.empty() || sendsLeft()) {
      ATTN_INFO(kSubTransport, "ucx: rank %d: %zu endpoints not flushed within %d ms, closing them anyway",
                params_.rank, closing_.size(), waitMs);
    }
    for (void* r : closing_) ucp_request_free(r);
    closing_.clear();
    // Requests still with UCX (sends to dead peers, receives fetching data) are released without
    // callbacks; destroying the worker then stops all their traffic.
    for (Pending* p = head_; p != nullptr; p = p->next) {
      if (p->req != nullptr) ucp_request_free(p->req);
    }
    ucp_worker_destroy(worker_);
    worker_ = nullptr;
  }
  if (context_ != nullptr) ucp_cleanup(context_);
  while (head_ != nullptr) {
    Pending* p = head_;
    unlink(p);
    delete p;
  }
  for (Pending* p : free_) delete p;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ucxConfigDefaults(int timeoutMs) {
  std::vector<std::pair<std::string, std::string>> out;
  auto userSet = [](const char* name) { return getenv((std::string("UCX_") + name).c_str()) != nullptr; };
  const int timeout = timeoutMs > 0 ? timeoutMs : kDefaultTimeoutMs;

  // UCX checks peers with keepalive rounds, 20 s apart by default. A peer whose host vanishes
  // without closing its connections is found only by them, so make a round fit several times
  // into our timeout.
  if (!userSet("KEEPALIVE_INTERVAL")) {
    char value[32];
    snprintf(value, sizeof(value), "%dms", std::min(5000, std::max(250, timeout / 8)));
    out.emplace_back("KEEPALIVE_INTERVAL", value);
  }

  // UCX's shared-memory transports (posix, sysv) cannot carry our endpoints (no peer failure
  // handling, see connect), yet every worker would create receive segments with them, and a
  // posix segment is a file in /dev/shm from its creation until UCX unlinks it a moment later: a
  // rank killed in between leaves it behind for good. Leave them out; nothing we send would use
  // them.
  if (!userSet("TLS")) out.emplace_back("TLS", "^posix,sysv");

  // UCX's tcp progress takes up to 16 socket events from one epoll_wait and then handles them
  // in turn. When a peer dies, the handler of one socket can fail and close another endpoint
  // to that peer (a reply sent from a receive handler meets the dead socket) whose event is
  // still in the batch; UCX 1.13.1 (master too, as of 2026-12) then aborts in
  // uct_tcp_iface_handle_events on "ep->conn_state != UCT_TCP_EP_CONN_STATE_CLOSED". A
  // survivor of the fresh-clone chaos test met it once (trial attn-bwd/ring over ucx). With
  // one event per epoll_wait no stale event is left behind: a closed endpoint's socket has left
  // the epoll set before the next wait. Cost on tcp/lo, 2 and 4 processes: none measurable
  // (perf/RESULTS.md "One tcp event per epoll_wait").
  //
  // The name is the field's, without the "TCP_" of the environment variable: UCX matches a
  // key set through ucp_config_modify against every transport's fields by bare name (it warns
  // "invalid configuration: TCP_MAX_POLL=1" and ignores that spelling). cuda_copy and cuda_ipc
  // have a MAX_POLL too; they move none of our traffic (every buffer we hand UCX is host
  // memory), so the setting reaches tcp alone in effect.
  if (!userSet("TCP_MAX_POLL")) out.emplace_back("MAX_POLL", "1");
  return out;
}

bool ucxAvailable() { return true; }

attncclResult_t ucxTransportCreate(const UcxParams& params, std::unique_ptr<Transport>* out, std::string* blob) {
  ATTN_ARG(out != nullptr && blob != nullptr, "ucxTransportCreate: out or blob is NULL");
  ATTN_ARG(params.nranks >= 1 && params.rank >= 0 && params.rank < params.nranks,
           "ucxTransportCreate: rank %d of %d invalid", params.rank, params.nranks);
  std::unique_ptr<UcxTransport> t(new UcxTransport(params));
  attncclResult_t r = t->init(blob);
  if (r != attncclSuccess) return r;  // t's destructor releases what init created
  *out = std::move(t);
  return attncclSuccess;
}

}  // namespace attnccl
