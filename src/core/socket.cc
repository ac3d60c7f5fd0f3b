#include "core/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/params.h"
#include "core/result.h"

namespace attnccl {
namespace {

int msLeft(Deadline d) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d - std::chrono::steady_clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left > 1000000 ? 1000000 : left);
}

// How long one poll may sleep before the abort check runs again.
constexpr int kAbortPollMs = 20;

attncclResult_t checkAbort(const AbortFn* aborted, const char* what) {
  if (aborted && *aborted && (*aborted)()) {
    return fail(attncclInvalidUsage, "bootstrap: the communicator was aborted while %s", what);
  }
  return attncclSuccess;
}

attncclResult_t waitFd(int fd, short events, Deadline deadline, const char* what, const AbortFn* aborted = nullptr) {
  const bool sliced = aborted && *aborted;
  for (;;) {
    ATTN_CHECK(checkAbort(aborted, what));
    struct pollfd p = {fd, events, 0};
    int left = msLeft(deadline);
    int r = poll(&p, 1, sliced ? std::min(left, kAbortPollMs) : left);
    if (r > 0) return attncclSuccess;
    if (r == 0) {
      if (sliced && left > kAbortPollMs) continue;
      return fail(attncclTimeout, "bootstrap: timed out while %s", what);
    }
    if (errno != EINTR) return fail(attncclSystemError, "bootstrap: poll failed while %s: %s", what, strerror(errno));
  }
}

}  // namespace

std::string SockAddr::str() const {
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

int SockAddr::port() const {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

attncclResult_t pickListenAddr(SockAddr* out) {
  std::string want = paramString(Param::SocketIfname);
  bool exclude = !want.empty() && want[0] == '^';
  if (exclude) want = want.substr(1);
  struct ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return fail(attncclSystemError, "getifaddrs failed: %s", strerror(errno));
  const struct ifaddrs* chosen = nullptr;
  const struct ifaddrs* loopback = nullptr;
  for (const struct ifaddrs* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)) continue;
    if (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6) continue;
    bool match = want.empty() || strncmp(i->ifa_name, want.c_str(), want.size()) == 0;
    if (exclude) match = !match;
    if (!match) continue;
    if (i->ifa_flags & IFF_LOOPBACK) {
      if (!loopback && i->ifa_addr->sa_family == AF_INET) loopback = i;
      if (!want.empty() && !exclude && !chosen) chosen = i;
      continue;
    }
    if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;  // needs a scope id; skip
      if (!chosen) chosen = i;
      continue;
    }
    // Prefer IPv4 over IPv6.
    if (!chosen || chosen->ifa_addr->sa_family == AF_INET6 || (chosen->ifa_flags & IFF_LOOPBACK)) chosen = i;
  }
  if (!chosen) chosen = loopback;
  if (!chosen) {
    freeifaddrs(ifs);
    return fail(attncclSystemError, "bootstrap: no usable network interface (ATTNCCL_SOCKET_IFNAME=%s)",
                paramString(Param::SocketIfname).c_str());
  }
  *out = SockAddr();
  if (chosen->ifa_addr->sa_family == AF_INET) {
    memcpy(&out->ss, chosen->ifa_addr, sizeof(sockaddr_in));
    out->len = sizeof(sockaddr_in);
  } else {
    memcpy(&out->ss, chosen->ifa_addr, sizeof(sockaddr_in6));
    out->len = sizeof(sockaddr_in6);
  }
  freeifaddrs(ifs);
  return attncclSuccess;
}

attncclResult_t parseHostPort(const std::string& text, SockAddr* out) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fail(attncclInvalidArgument, "cannot parse address '%s' (expected [v6]:port)", text.c_str());
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return fail(attncclInvalidArgument, "cannot parse address '%s' (expected host:port)", text.c_str());
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    return fail(attncclInvalidArgument, "cannot resolve '%s': %s", text.c_str(), gai_strerror(rc));
  }
  memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  freeaddrinfo(res);
  return attncclSuccess;
}

attncclResult_t listenOn(const SockAddr& addr, int* fd, SockAddr* bound) {
  int s = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail(attncclSystemError, "socket() failed: %s", strerror(errno));
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(s, reinterpret_cast<const sockaddr*>(&addr.ss), addr.len) != 0 || listen(s, 16384) != 0) {
    int e = errno;
    close(s);
    return fail(attncclSystemError, "bootstrap: cannot listen on %s: %s", addr.str().c_str(), strerror(e));
  }
  bound->len = sizeof(bound->ss);
  getsockname(s, reinterpret_cast<sockaddr*>(&bound->ss), &bound->len);
  *fd = s;
  return attncclSuccess;
}

attncclResult_t connectTo(const SockAddr& addr, Deadline deadline, int* fd, const AbortFn* aborted) {
  int delayMs = 1;
  for (;;) {
    ATTN_CHECK(checkAbort(aborted, "connecting to the rendezvous"));
    int s = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return fail(attncclSystemError, "socket() failed: %s", strerror(errno));
    int rc = connect(s, reinterpret_cast<const sockaddr*>(&addr.ss), addr.len);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      attncclResult_t w = waitFd(s, POLLOUT, deadline, "connecting to the rendezvous", aborted);
      if (w == attncclSuccess) {
        socklen_t len = sizeof(err);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
      } else if (w == attncclInvalidUsage) {
        close(s);
        return w;
      } else {
        err = ETIMEDOUT;
      }
    }
    if (err == 0) {
      int flags = fcntl(s, F_GETFL);
      fcntl(s, F_SETFL, flags & ~O_NONBLOCK);
      int one = 1;
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      *fd = s;
      return attncclSuccess;
    }
    close(s);
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(attncclTimeout, "bootstrap: cannot connect to %s: %s", addr.str().c_str(), strerror(err));
    }
    if (err != ECONNREFUSED && err != ETIMEDOUT && err != ENETUNREACH && err != EHOSTUNREACH && err != EAGAIN &&
        err != ECONNRESET) {
      return fail(attncclSystemError, "bootstrap: connect to %s failed: %s", addr.str().c_str(), strerror(err));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delayMs));
    delayMs = delayMs < 100 ? delayMs * 2 : 100;
  }
}

attncclResult_t acceptOne(int listenFd, Deadline deadline, int* fd) {
  ATTN_CHECK(waitFd(listenFd, POLLIN, deadline, "waiting for ranks to connect"));
  int s = accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
  if (s < 0) return fail(attncclSystemError, "bootstrap: accept failed: %s", strerror(errno));
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  *fd = s;
  return attncclSuccess;
}

attncclResult_t sendAll(int fd, const void* buf, size_t bytes, Deadline deadline, const AbortFn* aborted) {
  const char* p = static_cast<const char*>(buf);
  while (bytes > 0) {
    ATTN_CHECK(waitFd(fd, POLLOUT, deadline, "sending", aborted));
    ssize_t n = send(fd, p, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(attncclRemoteError, "bootstrap: send failed: %s", strerror(errno));
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return attncclSuccess;
}

attncclResult_t recvAll(int fd, void* buf, size_t bytes, Deadline deadline, bool* eof, const AbortFn* aborted) {
  char* p = static_cast<char*>(buf);
  size_t got = 0;
  if (eof) *eof = false;
  while (got < bytes) {
    ATTN_CHECK(waitFd(fd, POLLIN, deadline, "receiving", aborted));
    ssize_t n = recv(fd, p + got, bytes - got, MSG_DONTWAIT);
    if (n == 0) {
      if (got == 0 && eof) {
        *eof = true;
        return attncclRemoteError;
      }
      return fail(attncclRemoteError, "bootstrap: connection closed by the peer");
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(attncclRemoteError, "bootstrap: recv failed: %s", strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  return attncclSuccess;
}

}  // namespace attnccl
