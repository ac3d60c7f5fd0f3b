// Shared by the UCX transport's test programs (test_ucx.cc: traffic; test_ucx_failures.cc:
// errors, cancel, quiesce, dying peers): N instances in one process exchange their addresses in
// memory, connect, and move messages whose bytes encode (src, dst, tag, index). Every test runs
// with UCX_TLS=tcp (the inter-node path) and with UCX's default choice (UCX 1.13 gives shared
// memory no peer-failure handling, so on one node that is tcp for messages too).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "transport/ucx.h"

namespace attnccl {
namespace ucx_test {

using Clock = std::chrono::steady_clock;

// Timeout handed to the transport: bounds its teardown and sets UCX keepalive to 500 ms.
constexpr int kTimeoutMs = 4000;
// Bound of every wait in these tests: a broken transport fails the test instead of hanging it.
constexpr double kWaitSeconds = 20.0;

inline double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ------------------------------------------------------------------------------ payloads

inline uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline uint64_t seedOf(int src, int dst, uint32_t tag, uint32_t index) {
  return (uint64_t(src) << 56) ^ (uint64_t(dst) << 48) ^ (uint64_t(tag) << 32) ^ index;
}
inline void fill(std::vector<char>& buf, size_t n, int src, int dst, uint32_t tag, uint32_t index) {
  const uint64_t seed = seedOf(src, dst, tag, index);
  for (size_t off = 0; off < n; off += 8) {
    uint64_t w = mix(seed ^ (off * 0x100000001b3ull));
    memcpy(buf.data() + off, &w, std::min<size_t>(8, n - off));
  }
}
// Offset of the first wrong byte, or SIZE_MAX when all n bytes are right.
inline size_t firstWrong(const std::vector<char>& buf, size_t n, int src, int dst, uint32_t tag, uint32_t index) {
  const uint64_t seed = seedOf(src, dst, tag, index);
  for (size_t off = 0; off < n; off += 8) {
    uint64_t w = mix(seed ^ (off * 0x100000001b3ull));
    size_t k = std::min<size_t>(8, n - off);
    if (memcmp(buf.data() + off, &w, k) != 0) return off;
  }
  return SIZE_MAX;
}

// ------------------------------------------------------------------------------ the ranks

// Sets (value) or clears (nullptr) one environment variable while it lives.
class EnvVarScope {
 public:
  EnvVarScope(const char* name, const char* value) : name_(name) {
    const char* old = getenv(name);
    hadOld_ = old != nullptr;
    if (hadOld_) old_ = old;
    if (value == nullptr) unsetenv(name);
    else setenv(name, value, 1);
  }
  ~EnvVarScope() {
    if (hadOld_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  EnvVarScope(const EnvVarScope&) = delete;
  EnvVarScope& operator=(const EnvVarScope&) = delete;

 private:
  std::string name_;
  bool hadOld_ = false;
  std::string old_;
};

// Sets UCX_TLS (or clears it for "") for the instances created while it lives.
class TlsScope : public EnvVarScope {
 public:
  explicit TlsScope(const std::string& tls) : EnvVarScope("UCX_TLS", tls.empty() ? nullptr : tls.c_str()) {}
};

inline PeerInfo infoOf(int rank, const std::string& blob, int pid) {
  PeerInfo pi;
  pi.rank = rank;
  pi.pid = pid;
  pi.hostHash = 1;
  pi.hostname = "localhost";
  pi.ucxBlob = blob;
  return pi;
}

// N transport instances of one job; connect() joins every pair.
struct World {
  std::vector<std::unique_ptr<Transport>> t;
  std::vector<PeerInfo> infos;

  void create(int n, int nranks = -1) {
    if (nranks < 0) nranks = n;
    t.resize(nranks);
    infos.resize(nranks);
    for (int r = 0; r < n; ++r) {
      UcxParams p;
      p.rank = r;
      p.nranks = nranks;
      p.timeoutMs = kTimeoutMs;
      std::string blob;
      ASSERT_EQ(ucxTransportCreate(p, &t[r], &blob), attncclSuccess) << lastError();
      ASSERT_FALSE(blob.empty());
      infos[r] = infoOf(r, blob, getpid());
    }
  }
  void connectAll(int n) {
    for (int r = 0; r < n; ++r) {
      std::vector<int> peers;
      for (int q = 0; q < n; ++q)
        if (q != r) peers.push_back(q);
      ASSERT_EQ(t[r]->connect(infos, peers), attncclSuccess) << lastError();
    }
  }
  void progressAll() {
    for (auto& x : t)
      if (x) x->progress();
  }
  // Progresses every instance until all ops are done; false after kWaitSeconds.
  bool waitAll(const std::vector<Op*>& ops, double seconds = kWaitSeconds) {
    const auto t0 = Clock::now();
    for (;;) {
      if (std::all_of(ops.begin(), ops.end(), [](Op* o) { return o->done(); })) return true;
      if (secondsSince(t0) > seconds) return false;
      progressAll();
    }
  }
  void spin(double seconds) {
    const auto t0 = Clock::now();
    while (secondsSince(t0) < seconds) progressAll();
  }
};

// One message: its buffer, op and identity.
struct Msg {
  int src = 0, dst = 0;
  uint32_t tag = 0, index = 0;
  size_t size = 0;
  std::vector<char> buf;
  Op op;
};

inline void expectReceived(Msg& m) {
  ASSERT_TRUE(m.op.done());
  ASSERT_EQ(m.op.result, attncclSuccess) << "recv " << m.src << "->" << m.dst << " tag " << m.tag << " #" << m.index
                                         << ": " << lastError();
  ASSERT_EQ(m.op.bytes, m.size) << "recv " << m.src << "->" << m.dst << " tag " << m.tag << " #" << m.index;
  size_t bad = firstWrong(m.buf, m.size, m.src, m.dst, m.tag, m.index);
  ASSERT_EQ(bad, SIZE_MAX) << "recv " << m.src << "->" << m.dst << " tag " << m.tag << " #" << m.index << " size "
                           << m.size << ": wrong data at byte " << bad;
}

class Ucx : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { tls_.reset(new TlsScope(GetParam())); }
  void TearDown() override { tls_.reset(); }
  std::unique_ptr<TlsScope> tls_;
};

}  // namespace ucx_test
}  // namespace attnccl
