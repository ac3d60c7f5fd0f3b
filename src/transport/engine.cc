#include "transport/engine.h"

#include <sched.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "core/log.h"
#include "core/result.h"
#include "transport/thread_clock.h"

namespace attnccl {

OpArray::OpArray(Engine& engine, size_t n) : engine_(engine), ops_(new Op[n == 0 ? 1 : n]), n_(n) {}

OpArray::~OpArray() {
  for (size_t i = 0; i < n_; ++i) {
    if (!ops_[i].done()) {
      engine_.adopt(std::move(ops_));
      return;
    }
  }
}

Engine::~Engine() = default;

void Engine::configure(int rank, int nranks, int timeoutMs, StatsBlock* stats, const std::atomic<bool>* abortFlag) {
  rank_ = rank;
  nranks_ = nranks;
  timeoutMs_ = timeoutMs;
  if (stats) stats_ = stats;
  abort_ = abortFlag;
  routes_.assign(nranks, nullptr);
  peerStats_.assign(nranks, nullptr);
}

void Engine::setRoute(int peer, Transport* t) { routes_[peer] = t; }
void Engine::addTransport(Transport* t) { transports_.push_back(t); }
void Engine::setPeerStats(int peer, StatsBlock* stats) { peerStats_[peer] = stats; }

namespace {

thread_local double tWaitSeconds = 0, tPostSeconds = 0;

// Adds its lifetime to one of the calling thread's clocks.
class ThreadClock {
 public:
  explicit ThreadClock(double& into) : into_(into), start_(std::chrono::steady_clock::now()) {}
  ~ThreadClock() { into_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  ThreadClock(const ThreadClock&) = delete;
  ThreadClock& operator=(const ThreadClock&) = delete;

 private:
  double& into_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

double waitSecondsThisThread() { return tWaitSeconds; }
double postSecondsThisThread() { return tPostSeconds; }

attncclResult_t Engine::isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op, bool pull) {
  ThreadClock clock(tPostSeconds);
  op->reset();
  op->peer = peer;
  op->isSend = true;
  op->pull = pull;
  if (peer == rank_) {
    op->stats = nullptr;
    auto& posted = selfPosted_[tag];
    if (!posted.empty()) {
      SelfRecv r = posted.front();
      posted.pop_front();
      if (bytes > r.bytes) {
        r.op->complete(fail(attncclInvalidUsage, "self message of %zu bytes exceeds its receive of %zu bytes", bytes,
                            r.bytes),
                       0);
      } else {
        if (bytes) memcpy(r.buf, buf, bytes);
        r.op->complete(attncclSuccess, bytes);
      }
    } else {
      SelfMsg m;
      m.data.assign(static_cast<const char*>(buf), static_cast<const char*>(buf) + bytes);
      selfUnexpected_[tag].push_back(std::move(m));
    }
    op->complete(attncclSuccess, bytes);
    return attncclSuccess;
  }
  op->stats = stats_;
  Transport* t = routes_[peer];
  if (t == nullptr) return fail(attncclInternalError, "no transport to rank %d", peer);
  if (checksums_) return postChecked(t, peer, tag, const_cast<void*>(buf), bytes, op, true);
  return t->isend(peer, tag, buf, bytes, op);
}

attncclResult_t Engine::irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) {
  ThreadClock clock(tPostSeconds);
  op->reset();
  op->peer = peer;
  op->isSend = false;
  if (peer == rank_) {
    op->stats = nullptr;
    auto& unexpected = selfUnexpected_[tag];
    if (!unexpected.empty()) {
      SelfMsg m = std::move(unexpected.front());
      unexpected.pop_front();
      if (m.data.size() > bytes) {
        op->complete(fail(attncclInvalidUsage, "self message of %zu bytes exceeds its receive of %zu bytes",
                          m.data.size(), bytes),
                     0);
      } else {
        if (!m.data.empty()) memcpy(buf, m.data.data(), m.data.size());
        op->complete(attncclSuccess, m.data.size());
      }
    } else {
      selfPosted_[tag].push_back({buf, bytes, op});
    }
    return attncclSuccess;
  }
  op->stats = stats_;
  Transport* t = routes_[peer];
  if (t == nullptr) return fail(attncclInternalError, "no transport to rank %d", peer);
  if (checksums_) return postChecked(t, peer, tag, buf, bytes, op, false);
  return t->irecv(peer, tag, buf, bytes, op);
}

attncclResult_t Engine::postChecked(Transport* t, int peer, uint32_t tag, void* buf, size_t bytes, Op* user,
                                    bool isSend) {
  // The record is the engine's before anything is posted: the transport may keep pointers to its
  // ops (and the received trailer) until they complete, whatever happens to the caller's wait.
  checked_.emplace_back(new Checked());
  Checked& c = *checked_.back();
  c.user = user;
  c.buf = buf;
  c.isSend = isSend;
  c.peer = peer;
  c.tag = tag;
  for (Op* o : {&c.data, &c.trailer}) {
    o->reset();
    o->peer = peer;
    o->isSend = isSend;
  }
  c.data.stats = user->stats;  // the payload counts in the statistics, the trailer does not
  user->stats = nullptr;
  if (isSend) {
    c.sum.hash = checksum64(buf, bytes);
    c.sum.bytes = bytes;
  }
  struct Post {
    Op* op;
    void* buf;
    size_t bytes;
  };
  for (Post p : {Post{&c.data, buf, bytes}, Post{&c.trailer, &c.sum, sizeof(c.sum)}}) {
    attncclResult_t r = isSend ? t->isend(peer, tag, p.buf, p.bytes, p.op) : t->irecv(peer, tag, p.buf, p.bytes, p.op);
    if (r != attncclSuccess) {
      // A post that returns an error holds no reference to its op (transport.h).
      if (!p.op->done()) p.op->complete(r, 0);
      if (p.op == &c.data && !c.trailer.done()) c.trailer.complete(r, 0);
      return r;
    }
  }
  return attncclSuccess;
}

void Engine::finishChecked() {
  size_t keep = 0;
  for (size_t i = 0; i < checked_.size(); ++i) {
    Checked& c = *checked_[i];
    if (!c.data.done() || !c.trailer.done()) {
      checked_[keep++] = std::move(checked_[i]);
      continue;
    }
    attncclResult_t r = c.data.result != attncclSuccess ? c.data.result : c.trailer.result;
    if (r == attncclSuccess && !c.isSend) {
      if (c.trailer.bytes != sizeof(ChecksumTrailer)) {
        r = fail(attncclRemoteError,
                 "checksum: the trailer of a message from rank %d (tag %u) is %zu bytes, not %zu: do all ranks set "
                 "ATTNCCL_CHECKSUM alike?", c.peer, c.tag, c.trailer.bytes, sizeof(ChecksumTrailer));
      } else {
        if (c.data.bytes > 0 && corruptForTest_.load(std::memory_order_relaxed) > 0) {
          corruptForTest_.fetch_sub(1);
          static_cast<unsigned char*>(c.buf)[c.data.bytes / 2] ^= 0x10;
        }
        uint64_t got = checksum64(c.buf, c.data.bytes);
        if (got != c.sum.hash || c.data.bytes != c.sum.bytes) {
          r = fail(attncclRemoteError,
                   "checksum mismatch on a message from rank %d (tag %u): %zu bytes arrived with hash 0x%016llx, the "
                   "sender sent %llu bytes with hash 0x%016llx", c.peer, c.tag, c.data.bytes,
                   static_cast<unsigned long long>(got), static_cast<unsigned long long>(c.sum.bytes),
                   static_cast<unsigned long long>(c.sum.hash));
          ATTN_WARN(kSubTransport, "%s", lastError());
        }
      }
    }
    c.user->complete(r, r == attncclSuccess ? c.data.bytes : 0);
  }
  checked_.resize(keep);
}

attncclResult_t Engine::progress() {
  attncclResult_t res = attncclSuccess;
  for (Transport* t : transports_) {
    attncclResult_t r = t->progress();
    if (r != attncclSuccess && res == attncclSuccess) res = r;
  }
  if (!checked_.empty()) finishChecked();
  return res;
}

std::chrono::steady_clock::time_point Engine::deadline() const {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs_);
}

attncclResult_t Engine::checkWait(std::chrono::steady_clock::time_point deadline, const char* what, const Op* ops,
                                  size_t n) {
  if ((abort_ && abort_->load(std::memory_order_acquire)) ||
      (parentAbort_ && parentAbort_->load(std::memory_order_acquire))) {
    return fail(attncclInvalidUsage, "%s: communicator was aborted", what);
  }
  auto now = std::chrono::steady_clock::now();
  if (now - lastLivenessCheck_ > std::chrono::milliseconds(livenessMs_)) {
    lastLivenessCheck_ = now;
    // Only peers this wait depends on: a peer that finished and left is not a failure.
    for (size_t i = 0; i < n; ++i) {
      int p = ops[i].peer;
      if (ops[i].done() || p < 0 || p == rank_ || routes_[p] == nullptr) continue;
      attncclResult_t r = routes_[p]->checkPeer(p);
      // A peer that left may have delivered this op's message first (checkPeer drains it).
      if (r != attncclSuccess && !ops[i].done()) {
        return fail(attncclRemoteError, "%s: rank %d is unreachable (process exited, left the communicator, or the "
                                        "link failed)", what, p);
      }
    }
  }
  if (now > deadline) {
    return fail(attncclTimeout, "%s: no progress for %d ms (timeoutMs); a peer may be stuck or not calling", what,
                timeoutMs_);
  }
  return attncclSuccess;
}

attncclResult_t Engine::wait(Op* op) { return waitAll(op, 1); }

// The doorbell every pending op's peer rings, or nullptr when some pending op's transport has
// none (or they differ): then the wait polls.
Doorbell* Engine::commonDoorbell(const Op* ops, size_t n) const {
  Doorbell* bell = nullptr;
  for (size_t i = 0; i < n; ++i) {
    const int p = ops[i].peer;
    if (ops[i].done() || p < 0 || p == rank_) continue;
    Transport* t = routes_[p];
    Doorbell* b = t ? t->doorbell() : nullptr;
    if (b == nullptr || (bell != nullptr && b != bell)) return nullptr;
    bell = b;
  }
  return bell;
}

// Polls the transports; once nothing completed for spinUs_ (ATTNCCL_SPIN_US), sleeps on the
// doorbell when the pending ops have one, else keeps polling with sched_yield. A sleep lasts at
// most kMaxSleepUs, so the abort flag, the deadline and the peers' liveness are still checked.
attncclResult_t Engine::waitAll(Op* ops, size_t n) {
  constexpr int64_t kMaxSleepUs = 1000;
  ThreadClock clock(tWaitSeconds);
  // The deadline bounds time without progress: it moves whenever an op succeeds. Only a
  // success is progress: an op that failed (a peer that left, an endpoint that timed out)
  // leaves the deadline where it was, so the wait's other ops with unreachable peers time out
  // `timeoutMs` after the last success, not again after the failure (which chained two
  // timeouts into one wait under a node's loss: survivors failing at 2x the timeout).
  auto dl = deadline();
  size_t firstPending = 0, okBeforeFirstPending = 0;
  size_t doneCount = 0, okCount = 0;
  unsigned idle = 0;
  std::chrono::steady_clock::time_point idleSince{};
  auto countDone = [&](size_t* ok = nullptr) {
    for (; firstPending < n && ops[firstPending].done(); ++firstPending) {
      okBeforeFirstPending += ops[firstPending].result == attncclSuccess ? 1 : 0;
    }
    size_t d = firstPending, k = okBeforeFirstPending;
    for (size_t i = firstPending; i < n; ++i) {
      if (!ops[i].done()) continue;
      ++d;
      k += ops[i].result == attncclSuccess ? 1 : 0;
    }
    if (ok != nullptr) *ok = k;
    return d;
  };
  for (;;) {
    size_t nowOk = 0;
    const size_t nowDone = countDone(&nowOk);
    if (nowDone == n) break;
    if (nowDone != doneCount) {
      doneCount = nowDone;
      if (nowOk != okCount) dl = deadline();
      okCount = nowOk;
      idle = 0;
      // An op that failed does not end the wait early: a peer may still be reading one of the
      // other ops' buffers in place (shm direct loads of a same-process send buffer), which no
      // local cancel can stop, and the caller frees those buffers once the wait returns.
    }
    // A transport failure completes the affected ops with an error; the scan above counts them
    // done, and the wait ends once every op is (or at its deadline).
    (void)progress();
    if ((++idle & 0x3f) == 0) {
      const attncclResult_t r = checkWait(dl, "wait", ops, n);
      if (r != attncclSuccess) return isFatal(r) ? failedWait(r) : r;
    }
    if (spinUs_ < 0 || idle < 64) {  // waits that never sleep read no clock
      if (idle > 256) sched_yield();    // let co-located ranks run when oversubscribed
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (idle == 64) idleSince = now;
    Doorbell* bell = now - idleSince >= std::chrono::microseconds(spinUs_)
                         ? commonDoorbell(ops + firstPending, n - firstPending)
                         : nullptr;
    if (bell == nullptr) {
      if (idle > 256) sched_yield();  // let co-located ranks run when oversubscribed
      continue;
    }
    const uint32_t seen = bell->arm();
    (void)progress();
    if (countDone() != doneCount) {
      bell->cancel();
      continue;
    }
    bell->sleep(seen, kMaxSleepUs);
  }
  for (size_t i = 0; i < n; ++i) {
    if (ops[i].result != attncclSuccess) return isFatal(ops[i].result) ? failedWait(ops[i].result) : ops[i].result;
  }
  return attncclSuccess;
}

// attncclRemoteError and attncclTimeout leave the communicator failed (comm.cc keeps them).
bool Engine::isFatal(attncclResult_t r) { return r == attncclRemoteError || r == attncclTimeout; }

// The caller of a failed wait returns at once and may free what it posted: every transport ends
// its pending ops and lets go of their buffers first (Transport::quiesce). The failure's message
// is the one the caller reads, whatever the transports record meanwhile.
attncclResult_t Engine::failedWait(attncclResult_t r) {
  const std::string message = lastError();
  quiesce(r);
  return fail(r, "%s", message.c_str());
}

void Engine::quiesce(attncclResult_t why) {
  for (Transport* t : transports_) t->quiesce(why);
  finishChecked();  // the transports completed the records' ops
  endSelfOps(why);
}

attncclResult_t Engine::send(int peer, uint32_t tag, const void* buf, size_t bytes) {
  OpArray op(*this, 1);
  ATTN_CHECK(isend(peer, tag, buf, bytes, &op[0]));
  return waitAll(op);
}

attncclResult_t Engine::recv(int peer, uint32_t tag, void* buf, size_t bytes) {
  OpArray op(*this, 1);
  ATTN_CHECK(irecv(peer, tag, buf, bytes, &op[0]));
  return waitAll(op);
}

attncclResult_t Engine::sendrecv(int sendPeer, const void* sbuf, size_t sbytes, int recvPeer, void* rbuf,
                                 size_t rbytes, uint32_t tag) {
  OpArray ops(*this, 2);
  ATTN_CHECK(irecv(recvPeer, tag, rbuf, rbytes, &ops[0]));
  ATTN_CHECK(isend(sendPeer, tag, sbuf, sbytes, &ops[1]));
  return waitAll(ops);
}

// Ring all-gather of a small record: n-1 steps, each forwards the record received last.
attncclResult_t Engine::allGatherSmall(const void* mine, size_t bytes, void* all) {
  char* out = static_cast<char*>(all);
  memcpy(out + static_cast<size_t>(rank_) * bytes, mine, bytes);
  int next = (rank_ + 1) % nranks_, prev = (rank_ - 1 + nranks_) % nranks_;
  for (int step = 0; step < nranks_ - 1; ++step) {
    int sendIdx = (rank_ - step + nranks_) % nranks_;
    int recvIdx = (rank_ - step - 1 + nranks_) % nranks_;
    ATTN_CHECK(sendrecv(next, out + static_cast<size_t>(sendIdx) * bytes, bytes, prev,
                        out + static_cast<size_t>(recvIdx) * bytes, bytes, kTagInternal));
  }
  return attncclSuccess;
}

// Dissemination barrier: log2(n) rounds of zero-byte messages.
attncclResult_t Engine::barrier() {
  char dummy = 0;
  for (int dist = 1; dist < nranks_; dist *= 2) {
    ATTN_CHECK(sendrecv((rank_ + dist) % nranks_, &dummy, 0, (rank_ - dist + nranks_) % nranks_, &dummy, 1,
                        kTagInternal));
  }
  return attncclSuccess;
}

void Engine::countDirectLoad(int peer, size_t bytes) {
  if (peer == rank_ || bytes == 0) return;
  stats_->bytesRecv.fetch_add(bytes, std::memory_order_relaxed);
  stats_->messagesRecv.fetch_add(1, std::memory_order_relaxed);
  if (StatsBlock* p = peerStats_[peer]) {
    p->bytesSent.fetch_add(bytes, std::memory_order_relaxed);
    p->messagesSent.fetch_add(1, std::memory_order_relaxed);
  }
}

void Engine::countDirectStore(int peer, size_t bytes) {
  if (peer == rank_ || bytes == 0) return;
  stats_->bytesSent.fetch_add(bytes, std::memory_order_relaxed);
  stats_->messagesSent.fetch_add(1, std::memory_order_relaxed);
  if (StatsBlock* p = peerStats_[peer]) {
    p->bytesRecv.fetch_add(bytes, std::memory_order_relaxed);
    p->messagesRecv.fetch_add(1, std::memory_order_relaxed);
  }
}

void Engine::cancelAll(attncclResult_t why) {
  for (Transport* t : transports_) t->cancelAll(why);
  finishChecked();  // the transports completed the records' ops
  endSelfOps(why);
}

// Self traffic never reaches a transport: its posted receives end here, unmatched messages go.
void Engine::endSelfOps(attncclResult_t why) {
  for (auto& kv : selfPosted_) {
    for (auto& r : kv.second) r.op->complete(why, 0);
    kv.second.clear();
  }
  selfUnexpected_.clear();
}

}  // namespace attnccl
