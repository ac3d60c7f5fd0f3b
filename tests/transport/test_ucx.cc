// The UCX transport, driven directly (no communicator): traffic between instances of one
// process (ping-pong, FIFO per tag across interleaved tags, message sizes around the protocol
// thresholds, zero-length messages, receives posted before and after arrival, truncation, a
// thread per rank) and the settings the transport gives UCX. The harness is
// transport/ucx_world.h; errors and failures are in test_ucx_failures.cc.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "transport/ucx_world.h"

namespace attnccl {
namespace {

using namespace ucx_test;

// ------------------------------------------------------------------------------ basic traffic

TEST_P(Ucx, PingPong) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(2));
  const int iters = 200;
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) {
    for (int dir = 0; dir < 2; ++dir) {
      Msg s, r;
      s.size = r.size = 64;
      s.src = r.src = dir;
      s.dst = r.dst = 1 - dir;
      s.index = r.index = i;
      s.buf.resize(64);
      r.buf.resize(64);
      fill(s.buf, 64, dir, 1 - dir, 0, i);
      ASSERT_EQ(w.t[1 - dir]->irecv(dir, 0, r.buf.data(), 64, &r.op), attncclSuccess) << lastError();
      ASSERT_EQ(w.t[dir]->isend(1 - dir, 0, s.buf.data(), 64, &s.op), attncclSuccess) << lastError();
      ASSERT_TRUE(w.waitAll({&s.op, &r.op}));
      ASSERT_EQ(s.op.result, attncclSuccess);
      ASSERT_EQ(s.op.bytes, 64u);
      ASSERT_NO_FATAL_FAILURE(expectReceived(r));
    }
  }
  printf("[ ucx %s ] 64 B round trip: %.1f us\n", GetParam().empty() ? "default" : GetParam().c_str(),
         secondsSince(t0) / iters * 1e6);
}

// Every rank sends kPer messages on each of kTags tags to every other rank, interleaving tags;
// receivers post in reverse tag order, some before the sends and the rest after. Matching must
// keep each (peer, tag) stream in order, across eager and rendezvous sizes.
void fifoInterleaved(int n) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(n));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(n));
  const uint32_t kTags = 4, kPer = 24;
  const size_t sizes[] = {0, 1, 100, 8195, 24, 3000, 70001, 512};
  auto sizeOf = [&](int src, int dst, uint32_t tag, uint32_t i) { return sizes[(src + dst + tag + i) % 8]; };
  std::vector<std::unique_ptr<Msg>> sends, recvs;
  auto postRecvs = [&](bool evenTags) {
    for (int dst = 0; dst < n; ++dst)
      for (int tag = int(kTags) - 1; tag >= 0; --tag) {
        if ((tag % 2 == 0) != evenTags) continue;
        for (uint32_t i = 0; i < kPer; ++i)
          for (int src = 0; src < n; ++src) {
            if (src == dst) continue;
            auto m = std::make_unique<Msg>();
            m->src = src, m->dst = dst, m->tag = 100 + tag, m->index = i;
            m->size = sizeOf(src, dst, tag, i);
            m->buf.resize(m->size + 16);  // larger than the message: op.bytes tells the size
            ASSERT_EQ(w.t[dst]->irecv(src, m->tag, m->buf.data(), m->buf.size(), &m->op), attncclSuccess)
                << lastError();
            recvs.push_back(std::move(m));
          }
      }
  };
  ASSERT_NO_FATAL_FAILURE(postRecvs(true));
  for (uint32_t i = 0; i < kPer; ++i)
    for (uint32_t tag = 0; tag < kTags; ++tag)
      for (int src = 0; src < n; ++src)
        for (int dst = 0; dst < n; ++dst) {
          if (src == dst) continue;
          auto m = std::make_unique<Msg>();
          m->src = src, m->dst = dst, m->tag = 100 + tag, m->index = i;
          m->size = sizeOf(src, dst, tag, i);
          m->buf.resize(m->size);
          fill(m->buf, m->size, src, dst, m->tag, i);
          ASSERT_EQ(w.t[src]->isend(dst, m->tag, m->buf.data(), m->size, &m->op), attncclSuccess) << lastError();
          sends.push_back(std::move(m));
        }
  w.spin(0.05);  // odd tags' messages arrive unexpected
  ASSERT_NO_FATAL_FAILURE(postRecvs(false));
  std::vector<Op*> all;
  for (auto& m : sends) all.push_back(&m->op);
  for (auto& m : recvs) all.push_back(&m->op);
  ASSERT_TRUE(w.waitAll(all)) << "messages did not complete";
  for (auto& m : sends) {
    ASSERT_EQ(m->op.result, attncclSuccess);
    ASSERT_EQ(m->op.bytes, m->size);
  }
  for (auto& m : recvs) ASSERT_NO_FATAL_FAILURE(expectReceived(*m));
}

TEST_P(Ucx, FifoInterleavedTags2) { fifoInterleaved(2); }
TEST_P(Ucx, FifoInterleavedTags3) { fifoInterleaved(3); }
TEST_P(Ucx, FifoInterleavedTags5) { fifoInterleaved(5); }

// A ring of n ranks moves each size from r to r+1; receives are posted larger than the message.
void ringSizes(int n) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(n));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(n));
  const size_t sizes[] = {0, 1, 8192, 1 << 20, 33u << 20};
  uint32_t index = 0;
  for (size_t size : sizes) {
    std::vector<std::unique_ptr<Msg>> sends, recvs;
    for (int r = 0; r < n; ++r) {
      auto rm = std::make_unique<Msg>();
      rm->src = (r + n - 1) % n, rm->dst = r, rm->tag = 7, rm->index = index, rm->size = size;
      rm->buf.resize(size + 8);
      ASSERT_EQ(w.t[r]->irecv(rm->src, 7, rm->buf.data(), rm->buf.size(), &rm->op), attncclSuccess) << lastError();
      recvs.push_back(std::move(rm));
      auto sm = std::make_unique<Msg>();
      sm->src = r, sm->dst = (r + 1) % n, sm->tag = 7, sm->index = index, sm->size = size;
      sm->buf.resize(size);
      fill(sm->buf, size, sm->src, sm->dst, 7, index);
      ASSERT_EQ(w.t[r]->isend(sm->dst, 7, sm->buf.data(), size, &sm->op), attncclSuccess) << lastError();
      sends.push_back(std::move(sm));
    }
    std::vector<Op*> all;
    for (int r = 0; r < n; ++r) all.push_back(&sends[r]->op), all.push_back(&recvs[r]->op);
    ASSERT_TRUE(w.waitAll(all)) << "size " << size << " did not complete";
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(sends[r]->op.result, attncclSuccess) << "size " << size;
      ASSERT_NO_FATAL_FAILURE(expectReceived(*recvs[r]));
    }
    ++index;
  }
}

TEST_P(Ucx, Sizes2) { ringSizes(2); }
TEST_P(Ucx, Sizes3) { ringSizes(3); }

// Zero-length messages with no buffer at all.
TEST_P(Ucx, ZeroLengthNullBuffer) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(2));
  Op s, r;
  r.bytes = 99;
  ASSERT_EQ(w.t[1]->irecv(0, 3, nullptr, 0, &r), attncclSuccess) << lastError();
  ASSERT_EQ(w.t[0]->isend(1, 3, nullptr, 0, &s), attncclSuccess) << lastError();
  ASSERT_TRUE(w.waitAll({&s, &r}));
  EXPECT_EQ(s.result, attncclSuccess);
  EXPECT_EQ(r.result, attncclSuccess);
  EXPECT_EQ(r.bytes, 0u);
}

// Receives posted before the message arrives and after it waits unexpected, eager and rendezvous.
TEST_P(Ucx, RecvBeforeAndAfterArrival) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(2));
  uint32_t index = 0;
  for (size_t size : {size_t(16), size_t(8192), size_t(4) << 20}) {
    for (bool recvFirst : {true, false}) {
      Msg s, r;
      s.src = r.src = 0, s.dst = r.dst = 1, s.tag = r.tag = 9, s.index = r.index = index++;
      s.size = r.size = size;
      s.buf.resize(size);
      r.buf.resize(size);
      fill(s.buf, size, 0, 1, 9, s.index);
      if (recvFirst) {
        ASSERT_EQ(w.t[1]->irecv(0, 9, r.buf.data(), size, &r.op), attncclSuccess) << lastError();
        w.spin(0.02);
        ASSERT_FALSE(r.op.done());
        ASSERT_EQ(w.t[0]->isend(1, 9, s.buf.data(), size, &s.op), attncclSuccess) << lastError();
      } else {
        ASSERT_EQ(w.t[0]->isend(1, 9, s.buf.data(), size, &s.op), attncclSuccess) << lastError();
        w.spin(0.05);
        ASSERT_EQ(w.t[1]->irecv(0, 9, r.buf.data(), size, &r.op), attncclSuccess) << lastError();
      }
      ASSERT_TRUE(w.waitAll({&s.op, &r.op})) << "size " << size << " recvFirst " << recvFirst;
      ASSERT_EQ(s.op.result, attncclSuccess);
      ASSERT_NO_FATAL_FAILURE(expectReceived(r));
    }
  }
}

// A message larger than its receive fails that receive with attncclInvalidUsage; the stream
// goes on with the next message.
TEST_P(Ucx, Truncation) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(2));
  uint32_t index = 0;
  for (size_t size : {size_t(100), size_t(1) << 20}) {
    for (bool recvFirst : {true, false}) {
      Msg big, small, next, rnext;
      big.size = size;
      big.buf.resize(size);
      fill(big.buf, size, 0, 1, 4, index);
      small.buf.resize(size / 2);
      next.src = rnext.src = 0, next.dst = rnext.dst = 1, next.tag = rnext.tag = 4;
      next.index = rnext.index = index + 1;
      next.size = rnext.size = 300;
      next.buf.resize(300);
      rnext.buf.resize(300);
      fill(next.buf, 300, 0, 1, 4, next.index);
      if (recvFirst) {
        ASSERT_EQ(w.t[1]->irecv(0, 4, small.buf.data(), size / 2, &small.op), attncclSuccess);
      }
      ASSERT_EQ(w.t[0]->isend(1, 4, big.buf.data(), size, &big.op), attncclSuccess) << lastError();
      ASSERT_EQ(w.t[0]->isend(1, 4, next.buf.data(), 300, &next.op), attncclSuccess) << lastError();
      if (!recvFirst) {
        w.spin(0.05);
        ASSERT_EQ(w.t[1]->irecv(0, 4, small.buf.data(), size / 2, &small.op), attncclSuccess);
      }
      ASSERT_EQ(w.t[1]->irecv(0, 4, rnext.buf.data(), 300, &rnext.op), attncclSuccess);
      ASSERT_TRUE(w.waitAll({&big.op, &small.op, &next.op, &rnext.op})) << "size " << size;
      EXPECT_EQ(small.op.result, attncclInvalidUsage) << "size " << size << " recvFirst " << recvFirst;
      EXPECT_NE(std::string(lastError()).find("larger than the posted receive"), std::string::npos) << lastError();
      EXPECT_EQ(small.op.bytes, 0u);
      EXPECT_EQ(big.op.result, attncclSuccess);  // the sender is not told of the truncation
      EXPECT_EQ(next.op.result, attncclSuccess);
      ASSERT_NO_FATAL_FAILURE(expectReceived(rnext));
      index += 2;
    }
  }
}

// One thread per rank, each driving only its own instance (created on the main thread, so the
// workers use them from another thread than their creator).
TEST_P(Ucx, ThreadPerRank) {
  const int n = 3, iters = 60;
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(n));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(n));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      Transport* t = w.t[r].get();
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      for (int i = 0; i < iters; ++i) {
        const size_t size = (i % 3 == 0) ? (size_t(1) << 20) + i : 64 + i;
        std::vector<char> sb(size), rb(size);
        fill(sb, size, r, next, 11, i);
        Op s, rv;
        if (t->irecv(prev, 11, rb.data(), size, &rv) != attncclSuccess ||
            t->isend(next, 11, sb.data(), size, &s) != attncclSuccess) {
          failures++;
          return;
        }
        const auto t0 = Clock::now();
        while (!(s.done() && rv.done()) && secondsSince(t0) < kWaitSeconds) t->progress();
        if (!s.done() || !rv.done() || s.result != attncclSuccess || rv.result != attncclSuccess ||
            rv.bytes != size || firstWrong(rb, size, prev, r, 11, i) != SIZE_MAX) {
          failures++;
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Tls, Ucx, ::testing::Values(std::string("tcp"), std::string("")),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           return i.param.empty() ? std::string("Default") : std::string("Tcp");
                         });

// ------------------------------------------------------------------------------ UCX settings

std::string valueOf(const std::vector<std::pair<std::string, std::string>>& kv, const std::string& name) {
  for (const auto& e : kv)
    if (e.first == name) return e.second;
  return "<unset>";
}

TEST(UcxConfig, DefaultsAndTheUsersChoice) {
  EnvVarScope poll("UCX_TCP_MAX_POLL", nullptr), ka("UCX_KEEPALIVE_INTERVAL", nullptr), tls("UCX_TLS", nullptr);
  auto kv = ucxConfigDefaults(4000);
  // One tcp event per epoll_wait (UCX 1.13's stale-event abort when a peer dies), keepalive an
  // eighth of the timeout, UCX's shared-memory transports left out.
  EXPECT_EQ(valueOf(kv, "MAX_POLL"), "1");
  EXPECT_EQ(valueOf(kv, "KEEPALIVE_INTERVAL"), "500ms");
  EXPECT_EQ(valueOf(kv, "TLS"), "^posix,sysv");
  EXPECT_EQ(valueOf(ucxConfigDefaults(0), "KEEPALIVE_INTERVAL"), "5000ms");  // default timeout 300 s, capped
  EXPECT_EQ(valueOf(ucxConfigDefaults(100), "KEEPALIVE_INTERVAL"), "250ms");  // floor
  {
    EnvVarScope mine("UCX_TCP_MAX_POLL", "8");
    EXPECT_EQ(valueOf(ucxConfigDefaults(4000), "MAX_POLL"), "<unset>");
  }
  {
    EnvVarScope mine("UCX_KEEPALIVE_INTERVAL", "1s");
    EXPECT_EQ(valueOf(ucxConfigDefaults(4000), "KEEPALIVE_INTERVAL"), "<unset>");
  }
  {
    EnvVarScope mine("UCX_TLS", "tcp");
    EXPECT_EQ(valueOf(ucxConfigDefaults(4000), "TLS"), "<unset>");
  }
}

// UCX accepts a misspelt key from ucp_config_modify without an error and only warns, on its
// log (stdout), that no transport used it ("invalid configuration: ..."), then runs on its own
// default: a wrong name would silently undo the setting. Two connected instances that exchange
// a message must leave no such warning.
TEST(UcxConfig, UcxUsesEverySetting) {
  EnvVarScope poll("UCX_TCP_MAX_POLL", nullptr), ka("UCX_KEEPALIVE_INTERVAL", nullptr), tls("UCX_TLS", "tcp");
  char path[] = "/tmp/attnccl-ucx-log-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  fflush(stdout);
  const int saved = dup(1);
  ASSERT_GE(saved, 0);
  dup2(fd, 1);
  bool moved = false;
  {
    World w;
    w.create(2);
    w.connectAll(2);
    std::vector<char> sb(4096), rb(4096);
    fill(sb, sb.size(), 0, 1, 3, 0);
    Op s, r;
    if (w.t[1]->irecv(0, 3, rb.data(), rb.size(), &r) == attncclSuccess &&
        w.t[0]->isend(1, 3, sb.data(), sb.size(), &s) == attncclSuccess && w.waitAll({&s, &r})) {
      moved = r.result == attncclSuccess && firstWrong(rb, rb.size(), 0, 1, 3, 0) == SIZE_MAX;
    }
  }
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream log;
  log << in.rdbuf();
  unlink(path);
  EXPECT_TRUE(moved) << log.str();
  EXPECT_EQ(log.str().find("invalid configuration"), std::string::npos) << log.str();
}

}  // namespace
}  // namespace attnccl
