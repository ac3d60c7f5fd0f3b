#include "transport/shm.h"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/liveness.h"
#include "core/log.h"
#include "core/result.h"

#if defined(__SANITIZE_THREAD__)
#define ATTN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ATTN_TSAN 1
#endif
#endif
#ifdef ATTN_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace attnccl {

using shm::CtrlMsg;

attncclResult_t ShmTransport::create(const ShmParams& params, std::unique_ptr<ShmTransport>* out, std::string* blob) {
  std::unique_ptr<ShmTransport> t(new ShmTransport());
  t->params_ = params;
  t->myPid_ = getpid();
  t->localIndex_.assign(params.nranks, -1);
  for (size_t i = 0; i < params.localRanks.size(); ++i) t->localIndex_[params.localRanks[i]] = static_cast<int>(i);
  if (t->localIndex_[params.rank] < 0) return fail(attncclInternalError, "shm: rank not among the node's ranks");
  uint32_t nLocal = static_cast<uint32_t>(params.localRanks.size());
  size_t chBytes = shm::channelBytes(params.ctrlSlots, params.eagerBytes, params.chunkSlots, params.chunkBytes);
  size_t total = sizeof(shm::SegHeader) + nLocal * chBytes;
  ATTN_CHECK(regionCreate(total, "attnccl-shm", &t->segRegion_));
  auto* seg = new (t->segRegion_.base) shm::SegHeader();
  seg->magic = shm::kSegMagic;
  seg->pid = t->myPid_;
  seg->rank = params.rank;
  seg->pidStartTime = processStartTime(t->myPid_);
  seg->nLocal = nLocal;
  seg->ctrlSlots = params.ctrlSlots;
  seg->eagerBytes = params.eagerBytes;
  seg->chunkSlots = params.chunkSlots;
  seg->chunkBytes = params.chunkBytes;
  seg->channelBytes = chBytes;
  seg->closing.store(0);
  for (uint32_t i = 0; i < nLocal; ++i) new (shm::channelOf(seg, i).hdr) shm::ChannelHeader();
  t->seg_ = seg;
  std::vector<Peer> peers(params.nranks);
  t->peers_.swap(peers);
  RegionHandle h = t->segRegion_.handle();
  blob->assign(reinterpret_cast<const char*>(&h), sizeof(h));
  *out = std::move(t);
  return attncclSuccess;
}

ShmTransport::~ShmTransport() {
  markClosing();
  mapper_.clear();
  regionDestroy(&segRegion_);
}

void ShmTransport::markClosing() {
  if (!seg_) return;
  seg_->closing.store(1, std::memory_order_release);
  // Peers asleep in a wait on this rank look at once (their liveness check still rate-limits).
  seg_->bell.ring();
  for (int r : active_) {
    if (peers_[r].seg) peers_[r].seg->bell.ring();
  }
}

attncclResult_t ShmTransport::connect(const std::vector<PeerInfo>& all, const std::vector<int>& peers) {
  for (int r : peers) {
    if (localIndex_[r] < 0) return fail(attncclInternalError, "shm: rank %d is not on this node", r);
    if (all[r].shmBlob.size() != sizeof(RegionHandle)) {
      return fail(attncclInternalError, "shm: rank %d published no shm segment", r);
    }
    RegionHandle h;
    memcpy(&h, all[r].shmBlob.data(), sizeof(h));
    void* base = nullptr;
    ATTN_CHECK(mapper_.map(h, &base, /*pin=*/true));
    auto* seg = static_cast<shm::SegHeader*>(base);
    if (seg->magic != shm::kSegMagic || seg->rank != r) {
      return fail(attncclInternalError, "shm: segment of rank %d is malformed", r);
    }
    Peer& p = peers_[r];
    p.connected = true;
    p.pid = seg->pid;
    p.startTime = seg->pidStartTime;
    p.seg = seg;
    p.ownerBase = h.base;
    p.out = shm::channelOf(seg, static_cast<uint32_t>(localIndex_[params_.rank]));
    p.in = shm::channelOf(seg_, static_cast<uint32_t>(localIndex_[r]));
    p.cmaOk = params_.allowCma;
    p.cmaOnAsk = params_.allowCma || params_.cmaOnRequest;
    active_.push_back(r);
  }
  ATTN_INFO(kSubTransport, "shm: rank %d connected to %zu local peers (eager %llu B, chunk %llu B)", params_.rank,
            peers.size(), static_cast<unsigned long long>(params_.eagerBytes),
            static_cast<unsigned long long>(params_.chunkBytes));
  return attncclSuccess;
}

TransportCaps ShmTransport::caps(int peer) const {
  TransportCaps c;
  c.directLoad = params_.allowDirect && peers_[peer].connected;
  return c;
}

StatsBlock* ShmTransport::localStats() { return &seg_->stats; }

StatsBlock* ShmTransport::peerStats(int peer) {
  return peers_[peer].connected ? &peers_[peer].seg->stats : nullptr;
}

attncclResult_t ShmTransport::mapRegion(int peer, const RegionHandle& h, void** out) {
  return mapper_.map(h, out);
}

// ------------------------------------------------------------------ posting

attncclResult_t ShmTransport::isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op) {
  Peer& p = peers_[peer];
  if (!p.connected) return fail(attncclInternalError, "shm: rank %d is not connected", peer);
  if (p.dead) {
    op->complete(fail(attncclRemoteError, "shm: rank %d is gone", peer), 0);
    return attncclSuccess;
  }
  Outgoing o;
  memset(&o.msg, 0, sizeof(o.msg));
  o.msg.tag = tag;
  o.msg.bytes = bytes;
  if (bytes <= params_.eagerBytes && bytes <= p.out.eagerBytes) {
    o.msg.type = shm::kEager;
    o.payload = static_cast<const char*>(buf);
    o.completeOnPush = op;
  } else {
    uint64_t id = nextMsgId_++;
    o.msg.type = shm::kRts;
    o.msg.msgId = id;
    o.msg.addr = reinterpret_cast<uint64_t>(buf);
    if (op->pull) o.msg.flags |= shm::kRtsPull;
    RegionHandle h;
    if (params_.allowDirect && regionLookup(buf, bytes, &h)) {
      o.msg.regionId = h.id;
      o.msg.regionSize = h.size;
      o.msg.regionBase = h.base;
      o.msg.regionFd = h.fd;
    }
    auto s = std::make_unique<PendingSend>();
    s->op = op;
    s->buf = static_cast<const char*>(buf);
    s->bytes = bytes;
    s->msgId = id;
    p.awaiting[id] = std::move(s);
  }
  p.outbox.push_back(o);
  flushOutbox(p);
  return attncclSuccess;
}

attncclResult_t ShmTransport::irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) {
  Peer& p = peers_[peer];
  if (!p.connected) return fail(attncclInternalError, "shm: rank %d is not connected", peer);
  auto r = std::make_unique<PendingRecv>();
  r->op = op;
  r->buf = static_cast<char*>(buf);
  r->bytes = bytes;
  auto it = p.unexpected.find(tag);
  if (it != p.unexpected.end() && !it->second.empty()) {
    Unexpected u = std::move(it->second.front());
    it->second.pop_front();
    if (u.msg.type == shm::kEager) {
      deliverEager(p, std::move(r), u.msg, u.data.data());
    } else {
      startPull(peer, p, std::move(r), u.msg);
    }
    return attncclSuccess;
  }
  if (p.dead) {
    op->complete(fail(attncclRemoteError, "shm: rank %d is gone", peer), 0);
    return attncclSuccess;
  }
  p.posted[tag].push_back(std::move(r));
  return attncclSuccess;
}

// ------------------------------------------------------------------ progress

attncclResult_t ShmTransport::progress() {
  for (int r : active_) {
    Peer& p = peers_[r];
    if (p.dead) continue;
    drainInbound(r, p);
    flushOutbox(p);
    pumpStaged(p);
  }
  return attncclSuccess;
}

void ShmTransport::syncRelease(const Peer& p, const std::atomic<uint64_t>& index, bool peerSegment) const {
#ifdef ATTN_TSAN
  // Only ranks of this process share TSan's view; another process's addresses mean nothing here.
  if (p.pid != myPid_) return;
  uintptr_t at = reinterpret_cast<uintptr_t>(&index);
  if (peerSegment) at = at - reinterpret_cast<uintptr_t>(p.seg) + p.ownerBase;
  __tsan_release(reinterpret_cast<void*>(at));
#else
  (void)p;
  (void)index;
  (void)peerSegment;
#endif
}

void ShmTransport::syncAcquire(const Peer& p, const std::atomic<uint64_t>& index, bool peerSegment) const {
#ifdef ATTN_TSAN
  if (p.pid != myPid_) return;
  uintptr_t at = reinterpret_cast<uintptr_t>(&index);
  if (peerSegment) at = at - reinterpret_cast<uintptr_t>(p.seg) + p.ownerBase;
  __tsan_acquire(reinterpret_cast<void*>(at));
#else
  (void)p;
  (void)index;
  (void)peerSegment;
#endif
}

void ShmTransport::drainInbound(int peer, Peer& p) {
  uint64_t head = p.in.hdr->ctrlHead.value.load(std::memory_order_acquire);
  if (p.inTail == head) return;
  syncAcquire(p, p.in.hdr->ctrlHead.value, false);
  while (p.inTail < head) {
    CtrlMsg m = *p.in.slot(p.inTail);
    handle(peer, p, m, p.in.inlineData(p.inTail));
    ++p.inTail;
    syncRelease(p, p.in.hdr->ctrlTail.value, false);
    p.in.hdr->ctrlTail.value.store(p.inTail, std::memory_order_release);
  }
  p.seg->bell.ring();  // slots (and maybe chunks) are free again: a sender may wait for them
}

void ShmTransport::handle(int peer, Peer& p, const CtrlMsg& m, const char* inlineData) {
  switch (m.type) {
    case shm::kEager:
    case shm::kRts: {
      auto it = p.posted.find(m.tag);
      if (it != p.posted.end() && !it->second.empty()) {
        std::unique_ptr<PendingRecv> r = std::move(it->second.front());
        it->second.pop_front();
        if (m.type == shm::kEager) {
          deliverEager(p, std::move(r), m, inlineData);
        } else {
          startPull(peer, p, std::move(r), m);
        }
      } else {
        Unexpected u;
        u.msg = m;
        if (m.type == shm::kEager) u.data.assign(inlineData, inlineData + m.bytes);
        p.unexpected[m.tag].push_back(std::move(u));
      }
      break;
    }
    case shm::kFin: {
      auto it = p.awaiting.find(m.msgId);
      if (it == p.awaiting.end()) break;
      std::unique_ptr<PendingSend> s = std::move(it->second);
      p.awaiting.erase(it);
      if (m.flags & 1u) {
        s->op->complete(fail(attncclInvalidUsage, "shm: rank %d's receive was smaller than the %zu-byte message",
                             peer, s->bytes),
                        0);
      } else {
        s->op->complete(attncclSuccess, s->bytes);
      }
      break;
    }
    case shm::kCts: {
      auto it = p.awaiting.find(m.msgId);
      if (it == p.awaiting.end()) break;
      std::unique_ptr<PendingSend> s = std::move(it->second);
      p.awaiting.erase(it);
      s->recvId = m.addr;
      s->offset = 0;
      p.staged.push_back(std::move(s));
      break;
    }
    case shm::kData: {
      auto it = p.stagedRecvs.find(m.msgId);
      const char* chunk = p.in.chunk(p.chunkTail);
      if (it != p.stagedRecvs.end()) {
        PendingRecv& r = *it->second;
        memcpy(r.buf + m.addr, chunk, m.bytes);
        r.received += m.bytes;
        if (r.received >= r.msgBytes) {
          r.op->complete(attncclSuccess, r.msgBytes);
          p.stagedRecvs.erase(it);
        }
      }
      ++p.chunkTail;
      syncRelease(p, p.in.hdr->chunkTail.value, false);
      p.in.hdr->chunkTail.value.store(p.chunkTail, std::memory_order_release);
      break;
    }
    default:
      ATTN_WARN(kSubTransport, "shm: unknown control message type %u from rank %d", m.type, peer);
  }
}

void ShmTransport::deliverEager(Peer& p, std::unique_ptr<PendingRecv> r, const CtrlMsg& m, const char* data) {
  if (m.bytes > r->bytes) {
    r->op->complete(fail(attncclInvalidUsage, "shm: a %llu-byte message arrived for a %zu-byte receive",
                         static_cast<unsigned long long>(m.bytes), r->bytes),
                    0);
    return;
  }
  if (m.bytes) memcpy(r->buf, data, m.bytes);
  r->op->complete(attncclSuccess, m.bytes);
}

bool ShmTransport::pullDirect(int peer, Peer& p, PendingRecv& r, const CtrlMsg& rts, attncclResult_t* err) {
  *err = attncclSuccess;
  size_t n = rts.bytes;
  if (params_.allowDirect && rts.regionId != 0) {
    RegionHandle h;
    h.pid = p.pid;
    h.fd = rts.regionFd;
    h.id = rts.regionId;
    h.size = rts.regionSize;
    h.base = rts.regionBase;
    void* base = nullptr;
    if (mapper_.map(h, &base) == attncclSuccess) {
      memcpy(r.buf, static_cast<const char*>(base) + (rts.addr - rts.regionBase), n);
      return true;
    }
  }
  if (params_.allowDirect && p.pid == myPid_) {
    memcpy(r.buf, reinterpret_cast<const void*>(rts.addr), n);
    return true;
  }
  if (p.cmaOk || (p.cmaOnAsk && (rts.flags & shm::kRtsPull) != 0)) {
    size_t done = 0;
    while (done < n) {
      struct iovec local = {r.buf + done, n - done};
      struct iovec remote = {reinterpret_cast<void*>(rts.addr + done), n - done};
      ssize_t got = process_vm_readv(p.pid, &local, 1, &remote, 1, 0);
      if (got <= 0) {
        if (got < 0 && errno == ESRCH) {
          *err = fail(attncclRemoteError, "shm: rank %d (pid %d) is gone", peer, p.pid);
          return false;
        }
        if (done == 0) {
          ATTN_INFO(kSubTransport, "shm: CMA to rank %d unavailable (%s); using the staged path", peer,
                    strerror(errno));
          p.cmaOk = false;
          p.cmaOnAsk = false;
          return false;
        }
        *err = fail(attncclSystemError, "shm: process_vm_readv from rank %d failed midway: %s", peer, strerror(errno));
        return false;
      }
      done += static_cast<size_t>(got);
    }
    ++pulls_.cma;
    return true;
  }
  return false;
}

void ShmTransport::startPull(int peer, Peer& p, std::unique_ptr<PendingRecv> r, const CtrlMsg& rts) {
  Outgoing reply;
  memset(&reply.msg, 0, sizeof(reply.msg));
  reply.msg.msgId = rts.msgId;
  if (rts.bytes > r->bytes) {
    r->op->complete(fail(attncclInvalidUsage, "shm: a %llu-byte message from rank %d arrived for a %zu-byte receive",
                         static_cast<unsigned long long>(rts.bytes), peer, r->bytes),
                    0);
    reply.msg.type = shm::kFin;
    reply.msg.flags = 1;
    p.outbox.push_back(reply);
    flushOutbox(p);
    return;
  }
  attncclResult_t err;
  if (pullDirect(peer, p, *r, rts, &err)) {
    reply.msg.type = shm::kFin;
    p.outbox.push_back(reply);
    flushOutbox(p);
    r->op->complete(attncclSuccess, rts.bytes);
    return;
  }
  if (err != attncclSuccess) {
    r->op->complete(err, 0);
    return;
  }
  uint64_t id = nextRecvId_++;
  ++pulls_.staged;
  r->msgBytes = rts.bytes;
  reply.msg.type = shm::kCts;
  reply.msg.addr = id;
  p.stagedRecvs[id] = std::move(r);
  p.outbox.push_back(reply);
  flushOutbox(p);
}

void ShmTransport::flushOutbox(Peer& p) {
  const uint64_t before = p.outHead;
  while (!p.outbox.empty()) {
    uint64_t tail = p.out.hdr->ctrlTail.value.load(std::memory_order_acquire);
    if (p.outHead - tail >= p.out.ctrlSlots) break;
    syncAcquire(p, p.out.hdr->ctrlTail.value, true);
    Outgoing& o = p.outbox.front();
    *p.out.slot(p.outHead) = o.msg;
    if (o.payload && o.msg.bytes) memcpy(p.out.inlineData(p.outHead), o.payload, o.msg.bytes);
    ++p.outHead;
    syncRelease(p, p.out.hdr->ctrlHead.value, true);
    p.out.hdr->ctrlHead.value.store(p.outHead, std::memory_order_release);
    if (o.completeOnPush) o.completeOnPush->complete(attncclSuccess, o.msg.bytes);
    p.outbox.pop_front();
  }
  if (p.outHead != before) p.seg->bell.ring();
}

void ShmTransport::pumpStaged(Peer& p) {
  const uint64_t before = p.outHead;
  while (!p.staged.empty() && p.outbox.empty()) {
    PendingSend& s = *p.staged.front();
    uint64_t chunkTail = p.out.hdr->chunkTail.value.load(std::memory_order_acquire);
    if (p.chunkHead - chunkTail >= p.out.chunkSlots) break;
    uint64_t ctrlTail = p.out.hdr->ctrlTail.value.load(std::memory_order_acquire);
    if (p.outHead - ctrlTail >= p.out.ctrlSlots) break;
    syncAcquire(p, p.out.hdr->chunkTail.value, true);
    syncAcquire(p, p.out.hdr->ctrlTail.value, true);
    size_t len = std::min<size_t>(p.out.chunkBytes, s.bytes - s.offset);
    memcpy(p.out.chunk(p.chunkHead), s.buf + s.offset, len);
    ++p.chunkHead;
    p.out.hdr->chunkHead.value.store(p.chunkHead, std::memory_order_release);
    CtrlMsg m;
    memset(&m, 0, sizeof(m));
    m.type = shm::kData;
    m.msgId = s.recvId;
    m.bytes = len;
    m.addr = s.offset;
    *p.out.slot(p.outHead) = m;
    ++p.outHead;
    syncRelease(p, p.out.hdr->ctrlHead.value, true);
    p.out.hdr->ctrlHead.value.store(p.outHead, std::memory_order_release);
    s.offset += len;
    if (s.offset >= s.bytes) {
      s.op->complete(attncclSuccess, s.bytes);
      p.staged.pop_front();
    }
  }
  if (p.outHead != before) p.seg->bell.ring();
}

// ------------------------------------------------------------------ failures

bool ShmTransport::peerAlive(const Peer& p) const {
  if (p.seg->closing.load(std::memory_order_acquire)) return false;
  if (p.pid == myPid_) return true;
  return processAlive(p.pid, p.startTime);
}

attncclResult_t ShmTransport::checkPeer(int peer) {
  Peer& p = peers_[peer];
  if (!p.connected) return attncclSuccess;
  if (p.dead) return attncclRemoteError;
  if (!peerAlive(p)) {
    // Messages the peer left before going stay readable; consume them first.
    drainInbound(peer, p);
    failPeer(peer, p, attncclRemoteError);
    return attncclRemoteError;
  }
  return attncclSuccess;
}

void ShmTransport::failPeer(int peer, Peer& p, attncclResult_t why) {
  p.dead = true;
  fail(why, "shm: rank %d (pid %d) left or died with operations pending", peer, p.pid);
  for (auto& kv : p.posted) {
    for (auto& r : kv.second) r->op->complete(why, 0);
  }
  p.posted.clear();
  for (auto& kv : p.awaiting) kv.second->op->complete(why, 0);
  p.awaiting.clear();
  for (auto& s : p.staged) s->op->complete(why, 0);
  p.staged.clear();
  for (auto& kv : p.stagedRecvs) kv.second->op->complete(why, 0);
  p.stagedRecvs.clear();
  for (auto& o : p.outbox) {
    if (o.completeOnPush) o.completeOnPush->complete(why, 0);
  }
  p.outbox.clear();
}

void ShmTransport::cancelAll(attncclResult_t why) {
  for (int r : active_) {
    Peer& p = peers_[r];
    bool wasDead = p.dead;
    failPeer(r, p, why);
    p.dead = wasDead;
  }
}

}  // namespace attnccl
