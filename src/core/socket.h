// TCP sockets for the bootstrap: interface choice, listen, connect with retries, and whole-buffer
// send/receive bounded by a deadline. Nothing here blocks past its deadline.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "attnccl.h"

namespace attnccl {

using Deadline = std::chrono::steady_clock::time_point;
// Asked every few milliseconds during a wait; true ends the wait with attncclInvalidUsage (the
// communicator being created was aborted).
using AbortFn = std::function<bool()>;

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string str() const;
  int port() const;
};

// The address the bootstrap listens on: ATTNCCL_SOCKET_IFNAME (an interface name prefix, or
// "^prefix" to exclude), else the first non-loopback IPv4 interface that is up, else loopback.
attncclResult_t pickListenAddr(SockAddr* out);
// Parses "host:port" (IPv4 literal or resolvable name, or [v6]:port).
attncclResult_t parseHostPort(const std::string& text, SockAddr* out);

// Listens on addr (port 0 = any); returns the fd and the bound address (with its port).
attncclResult_t listenOn(const SockAddr& addr, int* fd, SockAddr* bound);
// Connects, retrying refused/unreachable attempts until the deadline.
attncclResult_t connectTo(const SockAddr& addr, Deadline deadline, int* fd, const AbortFn* aborted = nullptr);
// Accepts one connection or times out.
attncclResult_t acceptOne(int listenFd, Deadline deadline, int* fd);
attncclResult_t sendAll(int fd, const void* buf, size_t bytes, Deadline deadline, const AbortFn* aborted = nullptr);
// *eof (may be null) is set when the peer closed before the first byte.
attncclResult_t recvAll(int fd, void* buf, size_t bytes, Deadline deadline, bool* eof = nullptr,
                        const AbortFn* aborted = nullptr);

}  // namespace attnccl
