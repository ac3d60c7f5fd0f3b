#include "comm/bootstrap.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

#include "core/log.h"
#include "core/params.h"
#include "core/result.h"

namespace attnccl {
namespace {

constexpr uint64_t kIdMagic = 0xa77cc1b007ull;
constexpr uint32_t kHelloMagic = 0xa77cb007u;

// Layout of attncclUniqueId::internal.
struct IdInternal {
  uint64_t magic;
  uint64_t key;
  uint8_t serverAtRank0;  // ATTNCCL_COMM_ID: rank 0 serves at addr
  uint8_t pad;
  uint16_t family;        // AF_INET or AF_INET6
  uint16_t port;          // network order
  uint8_t ip[16];
};

void packAddr(const SockAddr& a, IdInternal* in) {
  in->family = a.ss.ss_family;
  if (a.ss.ss_family == AF_INET) {
    auto* s4 = reinterpret_cast<const sockaddr_in*>(&a.ss);
    in->port = s4->sin_port;
    memcpy(in->ip, &s4->sin_addr, 4);
  } else {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(&a.ss);
    in->port = s6->sin6_port;
    memcpy(in->ip, &s6->sin6_addr, 16);
  }
}

SockAddr unpackAddr(const IdInternal& in) {
  SockAddr a;
  if (in.family == AF_INET) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    s4->sin_family = AF_INET;
    s4->sin_port = in.port;
    memcpy(&s4->sin_addr, in.ip, 4);
    a.len = sizeof(sockaddr_in);
  } else {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = in.port;
    memcpy(&s6->sin6_addr, in.ip, 16);
    a.len = sizeof(sockaddr_in6);
  }
  return a;
}
static_assert(sizeof(IdInternal) <= sizeof(attncclUniqueId), "unique id layout too large");

struct Hello {
  uint32_t magic;
  int32_t nranks;
  int32_t rank;
  int32_t timeoutMs;
  uint64_t key;
  int32_t pid;  // the rank's process: the server answers its own process's ranks last
  int32_t pad;
};

// In place of a round's blob length: "I have every answer, I am done" (BootstrapClient::finish).
constexpr uint64_t kDoneLen = ~0ull;

struct RoundHeader {
  int32_t status;  // attncclResult_t of the round
  int32_t nranks;
};
// RoundHeader::nranks of a rejected hello whose key belongs to another rendezvous.
constexpr int32_t kOtherRendezvous = -1;

Deadline deadlineIn(int ms) { return std::chrono::steady_clock::now() + std::chrono::milliseconds(ms); }

// The server side: one thread per unique id.
class Server {
 public:
  Server(std::shared_ptr<BootstrapListener> listener, uint64_t generation, uint64_t key, int lifetimeMs)
      : listener_(std::move(listener)), generation_(generation), key_(key), lifetimeMs_(lifetimeMs) {}
  void run();

 private:
  bool acceptAll();
  bool serveRound(bool* finished);
  bool answerDone(const Deadline& deadline);
  void failAll(attncclResult_t why);
  void closeAll();

  std::shared_ptr<BootstrapListener> listener_;
  uint64_t generation_;
  uint64_t key_;
  int lifetimeMs_;
  int nranks_ = -1;
  int timeoutMs_ = 0;
  std::vector<int> fds_;
  std::vector<int> pids_;
};

// True when the peer of a connected socket has gone (closed or reset), even with bytes unread.
bool peerGone(int fd) {
  struct pollfd p = {fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

bool Server::acceptAll() {
  // Until the first rank says which timeout its communicator uses, wait as long as the default.
  // Then wait no longer than that timeout: ranks that are still missing (dead before they
  // connected) make the others give up at their own timeout, and this thread must not outlive
  // them by much.
  //
  // A communicator's own listener serves rendezvous one after the other (bootstrapServe, for
  // attncclCommShrink): one server accepts at a time. A request for the key of the one that is
  // accepting extends its wait (a retry of the same shrink: it serves the retry, ranks that
  // come again replace their earlier, closed connections); a request for another key takes
  // over (this one gives up within a slice).
  std::lock_guard<std::mutex> acceptLock(listener_->acceptMutex);
  Deadline deadline = deadlineIn(lifetimeMs_);
  {
    std::lock_guard<std::mutex> lock(listener_->mutex);
    if (listener_->generation != generation_) return false;  // taken over before it began
    listener_->accepting = true;
    listener_->acceptingKey = key_;
  }
  auto stopAccepting = [this] {
    std::lock_guard<std::mutex> lock(listener_->mutex);
    if (listener_->generation == generation_) listener_->accepting = false;
  };
  int connected = 0;
  while (nranks_ < 0 || connected < nranks_) {
    {
      std::lock_guard<std::mutex> lock(listener_->mutex);
      if (listener_->generation != generation_) {
        ATTN_INFO(kSubBootstrap, "rendezvous: a newer rendezvous on this listener took over (%d of %d connected)",
                  connected, nranks_);
        if (connected > 0) failAll(attncclRemoteError);
        return false;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        deadline = std::max(deadline, listener_->extendTo);
        if (std::chrono::steady_clock::now() >= deadline) {
          listener_->accepting = false;
          ATTN_WARN(kSubBootstrap, "rendezvous: gave up waiting for ranks (%d of %d connected)", connected, nranks_);
          return false;
        }
      }
    }
    int fd = -1;
    if (acceptOne(listener_->fd(), std::min(deadline, deadlineIn(50)), &fd) != attncclSuccess) continue;
    Hello h;
    if (recvAll(fd, &h, sizeof(h), deadlineIn(10000)) != attncclSuccess || h.magic != kHelloMagic) {
      ::close(fd);  // a stray connection, not one of ours
      continue;
    }
    if (h.key != key_) {
      // A rank of another rendezvous on this address (survivors of a shrink that disagree on the
      // excluded ranks, or a rank early for the next one): tell it so rather than let it time out.
      RoundHeader reject = {attncclInvalidUsage, kOtherRendezvous};
      sendAll(fd, &reject, sizeof(reject), deadlineIn(1000));
      ::close(fd);
      continue;
    }
    if (nranks_ < 0) {
      nranks_ = h.nranks;
      fds_.assign(nranks_, -1);
      pids_.assign(nranks_, 0);
    }
    RoundHeader ack = {attncclSuccess, nranks_};
    const bool valid = h.nranks == nranks_ && h.rank >= 0 && h.rank < nranks_;
    // A rank that comes again after its earlier connection closed (it gave up, and retries).
    const bool again = valid && fds_[h.rank] >= 0 && peerGone(fds_[h.rank]);
    if (!valid || (fds_[h.rank] >= 0 && !again)) {
      ack.status = attncclInvalidUsage;  // inconsistent nranks, bad or duplicate rank
      sendAll(fd, &ack, sizeof(ack), deadlineIn(1000));
      ::close(fd);
      ATTN_WARN(kSubBootstrap, "rendezvous: rejected rank %d of %d (expected %d ranks)", h.rank, h.nranks, nranks_);
      continue;
    }
    if (sendAll(fd, &ack, sizeof(ack), deadlineIn(10000)) != attncclSuccess) {
      ::close(fd);
      continue;
    }
    if (connected == 0 && h.timeoutMs > 0) deadline = std::min(deadline, deadlineIn(h.timeoutMs + 1000));
    if (again) {
      ::close(fds_[h.rank]);
      deadline = std::max(deadline, deadlineIn(h.timeoutMs + 1000));
    } else {
      ++connected;
    }
    timeoutMs_ = std::max(timeoutMs_, h.timeoutMs);
    fds_[h.rank] = fd;
    pids_[h.rank] = h.pid;
    if (connected == nranks_) {
      // Ranks that gave up while others were still missing (an attempt that a retry now
      // completes) have closed their connections: wait for them to come again.
      for (int r = 0; r < nranks_; ++r) {
        if (fds_[r] >= 0 && peerGone(fds_[r])) {
          ::close(fds_[r]);
          fds_[r] = -1;
          --connected;
        }
      }
    }
  }
  stopAccepting();
  return true;
}

void Server::failAll(attncclResult_t why) {
  RoundHeader hdr = {why, nranks_};
  for (int fd : fds_) {
    if (fd >= 0) sendAll(fd, &hdr, sizeof(hdr), deadlineIn(1000));
  }
}

void Server::closeAll() {
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

bool Server::serveRound(bool* finished) {
  std::vector<std::string> blobs(nranks_);
  Deadline deadline = deadlineIn(timeoutMs_);
  int closedCount = 0, doneCount = 0;
  for (int r = 0; r < nranks_; ++r) {
    uint64_t len = 0;
    bool eof = false;
    attncclResult_t res = recvAll(fds_[r], &len, sizeof(len), deadline, &eof);
    if (eof) {
      ++closedCount;
      continue;
    }
    if (res == attncclSuccess && len == kDoneLen) {
      ++doneCount;
      continue;
    }
    if (res == attncclSuccess && len < (1ull << 30)) {
      blobs[r].resize(len);
      res = recvAll(fds_[r], &blobs[r][0], len, deadline);
    }
    if (res != attncclSuccess) {
      ATTN_WARN(kSubBootstrap, "rendezvous: rank %d failed during a round: %s", r, lastError());
      failAll(attncclRemoteError);
      return false;
    }
  }
  if (closedCount == nranks_) {
    *finished = true;
    return true;
  }
  if (doneCount == nranks_) {
    *finished = true;
    return answerDone(deadline);
  }
  // A rank that left is reported before ranks that disagree on the number of rounds: when a rank
  // dies after the last round, the others have already said done, and their error is the death
  // (RemoteError), not a usage error of theirs.
  if (closedCount > 0) {
    ATTN_WARN(kSubBootstrap, "rendezvous: %d of %d ranks left during initialisation", closedCount, nranks_);
    failAll(attncclRemoteError);
    return false;
  }
  if (doneCount > 0) {
    ATTN_WARN(kSubBootstrap, "rendezvous: %d of %d ranks finished while others sent another round", doneCount,
              nranks_);
    failAll(attncclInvalidUsage);
    return false;
  }
  std::string reply;
  RoundHeader hdr = {attncclSuccess, nranks_};
  reply.append(reinterpret_cast<const char*>(&hdr), sizeof(hdr));
  for (const auto& b : blobs) {
    uint64_t len = b.size();
    reply.append(reinterpret_cast<const char*>(&len), sizeof(len));
    reply.append(b);
  }
  for (int r = 0; r < nranks_; ++r) {
    if (sendAll(fds_[r], reply.data(), reply.size(), deadline) != attncclSuccess) {
      failAll(attncclRemoteError);
      return false;
    }
  }
  return true;
}

// Every rank has every round's answer: tell them so. The ranks of this server's own process hear
// it last, so that once they have, every other rank's answer is in its socket: the kernel
// delivers it even if this process exits right after (every byte the ranks sent was read, so the
// close is orderly). Init returns only after this answer, on every rank or on none.
bool Server::answerDone(const Deadline& deadline) {
  RoundHeader hdr = {attncclSuccess, nranks_};
  const int self = getpid();
  for (int pass = 0; pass < 2; ++pass) {
    for (int r = 0; r < nranks_; ++r) {
      if ((pids_[r] == self) != (pass == 1)) continue;
      if (sendAll(fds_[r], &hdr, sizeof(hdr), deadline) != attncclSuccess) {
        ATTN_WARN(kSubBootstrap, "rendezvous: rank %d left before its last answer: %s", r, lastError());
        failAll(attncclRemoteError);
        return false;
      }
    }
  }
  return true;
}

void Server::run() {
  if (acceptAll()) {
    bool finished = false;
    while (!finished && serveRound(&finished)) {
    }
  }
  closeAll();
}

uint64_t randomKey() {
  std::random_device rd;
  uint64_t k = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
  return k ? k : 1;
}

// lifetimeMs: how long the server waits for the first rank (then: that rank's timeout + 1 s).
void serveOn(const std::shared_ptr<BootstrapListener>& listener, uint64_t key, int lifetimeMs) {
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(listener->mutex);
    if (listener->accepting && listener->acceptingKey == key) {
      listener->extendTo = std::max(listener->extendTo, deadlineIn(lifetimeMs));
      ATTN_INFO(kSubBootstrap, "rendezvous: the server still waiting for ranks of this key serves it again");
      return;  // the server of this key, still waiting for ranks, serves this request too
    }
    generation = ++listener->generation;
  }
  std::thread([listener, generation, key, lifetimeMs] { Server(listener, generation, key, lifetimeMs).run(); })
      .detach();
}

attncclResult_t startServer(const SockAddr& addr, uint64_t key, SockAddr* bound) {
  int fd = -1;
  ATTN_CHECK(listenOn(addr, &fd, bound));
  // The default timeout is read here, not on the server's thread: a process often forks its
  // ranks right after attncclGetUniqueId, and a child must not inherit the parameters' lock held
  // by that thread.
  serveOn(std::make_shared<BootstrapListener>(fd), key, static_cast<int>(paramInt(Param::TimeoutMs)));
  ATTN_INFO(kSubBootstrap, "rendezvous server listening on %s", bound->str().c_str());
  return attncclSuccess;
}

}  // namespace

attncclResult_t bootstrapGetUniqueId(attncclUniqueId* id) {
  memset(id, 0, sizeof(*id));
  IdInternal in;
  memset(&in, 0, sizeof(in));
  in.magic = kIdMagic;
  in.key = randomKey();
  std::string commId = paramString(Param::CommId);
  SockAddr addr;
  if (!commId.empty()) {
    ATTN_CHECK(parseHostPort(commId, &addr));
    in.serverAtRank0 = 1;
    // A fixed address: every process derives the same key from it.
    in.key = std::hash<std::string>()(commId) | 1;
  } else {
    SockAddr want;
    ATTN_CHECK(pickListenAddr(&want));
    ATTN_CHECK(startServer(want, in.key, &addr));
  }
  packAddr(addr, &in);
  memcpy(id->internal, &in, sizeof(in));
  return attncclSuccess;
}

uint64_t bootstrapIdKey(const attncclUniqueId& id) {
  IdInternal in;
  memcpy(&in, id.internal, sizeof(in));
  return in.key;
}

attncclResult_t bootstrapCheckId(const attncclUniqueId& id) {
  IdInternal in;
  memcpy(&in, id.internal, sizeof(in));
  if (in.magic != kIdMagic) {
    return fail(attncclInvalidArgument, "commId is not a unique id from attncclGetUniqueId (magic 0x%llx)",
                static_cast<unsigned long long>(in.magic));
  }
  if (in.family != AF_INET && in.family != AF_INET6) {
    return fail(attncclInvalidArgument, "commId holds address family %u (corrupt id?)", in.family);
  }
  return attncclSuccess;
}

BootstrapListener::~BootstrapListener() {
  if (fd_ >= 0) ::close(fd_);
}

attncclResult_t bootstrapListen(std::shared_ptr<BootstrapListener>* out, std::string* address) {
  SockAddr want, bound;
  ATTN_CHECK(pickListenAddr(&want));
  int fd = -1;
  ATTN_CHECK(listenOn(want, &fd, &bound));
  *out = std::make_shared<BootstrapListener>(fd);
  IdInternal in;
  memset(&in, 0, sizeof(in));
  packAddr(bound, &in);
  address->assign(reinterpret_cast<const char*>(&in), sizeof(in));
  return attncclSuccess;
}

attncclResult_t bootstrapIdAt(const std::string& address, uint64_t key, attncclUniqueId* id) {
  IdInternal in;
  if (address.size() != sizeof(in)) {
    return fail(attncclInternalError, "bootstrap: a listener address of %zu bytes (expected %zu)", address.size(),
                sizeof(in));
  }
  memcpy(&in, address.data(), sizeof(in));
  in.magic = kIdMagic;
  in.key = key ? key : 1;
  in.serverAtRank0 = 0;
  memset(id, 0, sizeof(*id));
  memcpy(id->internal, &in, sizeof(in));
  return attncclSuccess;
}

attncclResult_t bootstrapServe(const std::shared_ptr<BootstrapListener>& listener, uint64_t key, int timeoutMs) {
  if (!listener) return fail(attncclInternalError, "bootstrap: no listener to serve a rendezvous on");
  serveOn(listener, key ? key : 1, timeoutMs + 1000);
  return attncclSuccess;
}

BootstrapClient::~BootstrapClient() { close(); }

void BootstrapClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

attncclResult_t BootstrapClient::connect(const attncclUniqueId& id, int nranks, int rank, int timeoutMs) {
  ATTN_CHECK(bootstrapCheckId(id));
  IdInternal in;
  memcpy(&in, id.internal, sizeof(in));
  nranks_ = nranks;
  rank_ = rank;
  timeoutMs_ = timeoutMs;
  SockAddr addr = unpackAddr(in);
  if (in.serverAtRank0 && nranks == 1) {
    // Nobody to meet, and no server yet (rank 0 would start it): rounds are answered locally.
    // Serving would make every process that creates a private one-rank communicator while
    // ATTNCCL_COMM_ID names the job's address fight over that address.
    local_ = true;
    return attncclSuccess;
  }
  if (in.serverAtRank0 && rank == 0) {
    SockAddr bound;
    ATTN_CHECK(startServer(addr, in.key, &bound));
  }
  Deadline deadline = deadlineIn(timeoutMs);
  const AbortFn* ab = &aborted_;
  RoundHeader ack;
  auto servesAnother = [&] {
    return fail(attncclInvalidUsage,
                "bootstrap: the rendezvous at %s serves another communicator (another unique id; for "
                "attncclCommShrink: survivors that disagree on excludeRanks)",
                addr.str().c_str());
  };
  // Whether an earlier attempt was told that another rendezvous holds the listener. If the
  // deadline then runs out inside a later attempt (it may start with only ~50 ms left, too few
  // for a loaded server to answer, or meet the listener between two servers), that refusal is
  // the answer to report, not the timeout: the caller's ranks disagree, and a retry that fixes
  // them must know it (seen in the ASan CI run of test_comm_shrink, 2026-12-06).
  bool toldOther = false;
  for (;;) {
    attncclResult_t res = connectTo(addr, deadline, &fd_, ab);
    Hello h = {kHelloMagic, nranks, rank, timeoutMs, in.key, static_cast<int32_t>(getpid()), 0};
    if (res == attncclSuccess) res = sendAll(fd_, &h, sizeof(h), deadline, ab);
    bool acked = false;
    if (res == attncclSuccess) {
      res = recvAll(fd_, &ack, sizeof(ack), deadline, nullptr, ab);
      acked = res == attncclSuccess;
      if (!acked && !toldOther)
        prefixLastError("bootstrap: the rendezvous did not acknowledge this rank (is the id from a live process?)");
    }
    if (!acked) {
      if (toldOther && res == attncclTimeout) {
        close();
        return servesAnother();
      }
      return res;
    }
    toldOther |= ack.status != attncclSuccess && ack.nranks == kOtherRendezvous;
    // Another rendezvous on this listener may still be waiting (an abandoned shrink) until its
    // server gives up or the one for this id takes over: ask again.
    if (!(retryOther_ && ack.status != attncclSuccess && ack.nranks == kOtherRendezvous &&
          std::chrono::steady_clock::now() + std::chrono::milliseconds(50) < deadline)) {
      break;
    }
    close();
    if (ab && *ab && (*ab)()) return fail(attncclInvalidUsage, "bootstrap: aborted while connecting to the rendezvous");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (ack.status != attncclSuccess && ack.nranks == kOtherRendezvous) return servesAnother();
  if (ack.status != attncclSuccess) {
    return fail(attncclInvalidUsage,
                "bootstrap: rank %d of %d was rejected: rank out of range, rank already taken, or ranks disagree "
                "on nranks (the first rank said %d)",
                rank, nranks, ack.nranks);
  }
  ATTN_INFO(kSubBootstrap, "rank %d/%d connected to rendezvous %s", rank, nranks, addr.str().c_str());
  return attncclSuccess;
}

attncclResult_t BootstrapClient::allGather(const std::string& mine, std::vector<std::string>* all) {
  if (local_) {
    all->assign(1, mine);
    return attncclSuccess;
  }
  Deadline deadline = deadlineIn(timeoutMs_);
  const AbortFn* ab = &aborted_;
  uint64_t len = mine.size();
  ATTN_CHECK(sendAll(fd_, &len, sizeof(len), deadline, ab));
  ATTN_CHECK(sendAll(fd_, mine.data(), mine.size(), deadline, ab));
  RoundHeader hdr;
  attncclResult_t res = recvAll(fd_, &hdr, sizeof(hdr), deadline, nullptr, ab);
  if (res != attncclSuccess) {
    prefixLastError("bootstrap: the rendezvous did not answer");
    return res;
  }
  if (hdr.status != attncclSuccess) {
    return fail(static_cast<attncclResult_t>(hdr.status),
                "bootstrap: another rank failed or left during initialisation");
  }
  if (hdr.nranks != nranks_) return fail(attncclInvalidUsage, "bootstrap: ranks disagree on nranks");
  all->assign(nranks_, std::string());
  for (int r = 0; r < nranks_; ++r) {
    ATTN_CHECK(recvAll(fd_, &len, sizeof(len), deadline, nullptr, ab));
    (*all)[r].resize(len);
    if (len) ATTN_CHECK(recvAll(fd_, &(*all)[r][0], len, deadline, nullptr, ab));
  }
  return attncclSuccess;
}

attncclResult_t BootstrapClient::finish() {
  if (local_) return attncclSuccess;
  Deadline deadline = deadlineIn(timeoutMs_);
  const AbortFn* ab = &aborted_;
  const uint64_t done = kDoneLen;
  ATTN_CHECK(sendAll(fd_, &done, sizeof(done), deadline, ab));
  RoundHeader hdr;
  attncclResult_t res = recvAll(fd_, &hdr, sizeof(hdr), deadline, nullptr, ab);
  if (res != attncclSuccess) {
    prefixLastError("bootstrap: the rendezvous did not confirm that every rank finished");
    return res;
  }
  if (hdr.status != attncclSuccess) {
    return fail(static_cast<attncclResult_t>(hdr.status), "bootstrap: another rank failed or left during initialisation");
  }
  close();
  return attncclSuccess;
}

}  // namespace attnccl
