// The UCX transport, driven directly (no communicator), when things go wrong: invalid arguments,
// cancelAll, quiesce with a rendezvous receive in flight, a UCX without peer-failure handling, a
// peer that leaves, and a peer process that SIGKILLs itself (a child: this binary run again).
// The harness is transport/ucx_world.h.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "transport/ucx_world.h"

namespace attnccl {
namespace {

using namespace ucx_test;

// ------------------------------------------------------------------------------ errors

TEST_P(Ucx, InvalidArguments) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(3));
  ASSERT_EQ(w.t[0]->connect(w.infos, {1}), attncclSuccess) << lastError();
  char buf[8];
  Op op;
  EXPECT_EQ(w.t[0]->isend(0, 0, buf, 8, &op), attncclInvalidArgument);
  EXPECT_NE(std::string(lastError()).find("this rank"), std::string::npos) << lastError();
  EXPECT_EQ(w.t[0]->isend(3, 0, buf, 8, &op), attncclInvalidArgument);
  EXPECT_EQ(w.t[0]->irecv(-1, 0, buf, 8, &op), attncclInvalidArgument);
  EXPECT_EQ(w.t[0]->isend(1, 0, nullptr, 8, &op), attncclInvalidArgument);
  EXPECT_EQ(w.t[0]->isend(1, 0, buf, 8, nullptr), attncclInvalidArgument);
  EXPECT_EQ(w.t[0]->irecv(2, 0, buf, 8, &op), attncclInvalidUsage);  // never connected to 2
  EXPECT_NE(std::string(lastError()).find("not connected"), std::string::npos) << lastError();
  EXPECT_EQ(w.t[0]->checkPeer(5), attncclInvalidArgument);
  EXPECT_EQ(w.t[0]->checkPeer(1), attncclSuccess);
  EXPECT_FALSE(op.done());
  EXPECT_EQ(w.t[0]->connect(w.infos, {0}), attncclInvalidArgument);
  UcxParams bad;
  bad.rank = 2;
  bad.nranks = 2;
  std::unique_ptr<Transport> t;
  std::string blob;
  EXPECT_EQ(ucxTransportCreate(bad, &t, &blob), attncclInvalidArgument);
}

// cancelAll completes every pending op at once with the given result (progress running on
// another thread meanwhile), the transport stays usable, and teardown is prompt.
TEST_P(Ucx, CancelAll) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(2));
  std::vector<char> big(8 << 20, 1), r1(64), r2(1 << 20), r3(64);
  Op send, recvA, recvB, recvC;
  ASSERT_EQ(w.t[0]->isend(1, 5, big.data(), big.size(), &send), attncclSuccess);  // nobody receives it
  ASSERT_EQ(w.t[1]->irecv(0, 6, r1.data(), r1.size(), &recvA), attncclSuccess);   // nobody sends these
  ASSERT_EQ(w.t[1]->irecv(0, 7, r2.data(), r2.size(), &recvB), attncclSuccess);
  ASSERT_EQ(w.t[0]->irecv(1, 6, r3.data(), r3.size(), &recvC), attncclSuccess);
  std::atomic<bool> stop{false};
  std::thread driver([&] {
    while (!stop.load()) w.progressAll();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(send.done());
  ASSERT_FALSE(recvA.done());
  w.t[0]->cancelAll(attncclTimeout);
  EXPECT_TRUE(send.done() && recvC.done());
  EXPECT_FALSE(recvA.done());
  w.t[1]->cancelAll(attncclRemoteError);
  stop = true;
  driver.join();
  ASSERT_TRUE(recvA.done() && recvB.done());
  EXPECT_EQ(send.result, attncclTimeout);
  EXPECT_EQ(recvC.result, attncclTimeout);
  EXPECT_EQ(recvA.result, attncclRemoteError);
  EXPECT_EQ(recvB.result, attncclRemoteError);

  Msg s, r;  // still usable afterwards
  s.src = r.src = 1, s.dst = r.dst = 0, s.tag = r.tag = 8, s.size = r.size = 1000;
  s.buf.resize(1000);
  r.buf.resize(1000);
  fill(s.buf, 1000, 1, 0, 8, 0);
  ASSERT_EQ(w.t[0]->irecv(1, 8, r.buf.data(), 1000, &r.op), attncclSuccess);
  ASSERT_EQ(w.t[1]->isend(0, 8, s.buf.data(), 1000, &s.op), attncclSuccess);
  ASSERT_TRUE(w.waitAll({&s.op, &r.op}));
  ASSERT_NO_FATAL_FAILURE(expectReceived(r));

  const auto t0 = Clock::now();
  w.t.clear();
  // kWaitSeconds bounds a hang (a teardown waiting on a cancelled op forever), not a speed.
  EXPECT_LT(secondsSince(t0), kWaitSeconds) << "teardown after cancelAll hangs";
}

// quiesce() after a failed wait: the op ends with the failure and UCX lets go of the buffer at
// once, even while a rendezvous receive is fetching a large message from a live peer. The
// receive buffer is made inaccessible right after, and both ranks go on progressing: any write
// UCX still made into it would crash the test (what cancelAll() alone allows: a matched
// receive stays with UCX until it finishes). The failed rank's later posts fail cleanly.
TEST_P(Ucx, QuiesceLetsGoOfBuffersInFlight) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(2));
  const size_t n = 256u << 20;
  void* region = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  std::vector<char> big(n, 7);
  Op send, recv;
  ASSERT_EQ(w.t[0]->irecv(1, 9, region, n, &recv), attncclSuccess);
  ASSERT_EQ(w.t[1]->isend(0, 9, big.data(), n, &send), attncclSuccess);
  // Let the rendezvous start (the receive is matched, fragments begin to arrive), a few progress
  // calls only: 256 MiB cannot have arrived yet.
  for (int i = 0; i < 8 && !recv.done(); ++i) w.progressAll();
  ASSERT_FALSE(recv.done()) << "the whole message arrived before quiesce: nothing left in flight to check";
  w.t[0]->quiesce(attncclRemoteError);
  ASSERT_TRUE(recv.done());
  EXPECT_EQ(recv.result, attncclRemoteError);
  ASSERT_EQ(mprotect(region, n, PROT_NONE), 0);
  w.spin(0.5);  // a late write into `region` would be a SIGSEGV here
  Op late;
  std::vector<char> small(64);
  EXPECT_NE(w.t[0]->isend(1, 10, small.data(), small.size(), &late), attncclSuccess);
  w.t[1]->cancelAll(attncclRemoteError);
  w.t.clear();
  munmap(region, n);
}

// Shared-memory transports alone offer UCX 1.13 no peer-failure handling: connect says so.
TEST(UcxNoPeerFailureTransport, ConnectFailsClearly) {
  TlsScope tls("posix");
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2));
  attncclResult_t r = w.t[0]->connect(w.infos, {1});
  if (r == attncclSuccess) GTEST_SKIP() << "this UCX handles peer failures over shared memory";
  EXPECT_EQ(r, attncclSystemError);
  EXPECT_NE(std::string(lastError()).find("UCX_TLS"), std::string::npos) << lastError();
  char buf[4];
  Op op;
  EXPECT_EQ(w.t[0]->isend(1, 0, buf, 4, &op), attncclInvalidUsage);  // not connected
}

// A peer that exits cleanly (its transport destroyed) in this process: ops pending with it fail with
// attncclRemoteError, and what it sent before leaving is still received.
TEST_P(Ucx, PeerLeavesInProcess) {
  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(3));
  ASSERT_NO_FATAL_FAILURE(w.connectAll(3));
  Msg last;
  last.src = 2, last.dst = 1, last.tag = 1, last.size = 500;
  last.buf.resize(500);
  fill(last.buf, 500, 2, 1, 1, 0);
  ASSERT_EQ(w.t[2]->isend(1, 1, last.buf.data(), 500, &last.op), attncclSuccess);
  ASSERT_TRUE(w.waitAll({&last.op}));
  std::vector<char> rb(64);
  Op pending;
  ASSERT_EQ(w.t[0]->irecv(2, 1, rb.data(), rb.size(), &pending), attncclSuccess);
  w.t[2].reset();
  const auto t0 = Clock::now();
  ASSERT_TRUE(w.waitAll({&pending}, 10.0)) << "pending receive from the departed rank never completed";
  EXPECT_EQ(pending.result, attncclRemoteError);
  while (w.t[1]->checkPeer(2) == attncclSuccess && secondsSince(t0) < 10.0) w.progressAll();
  EXPECT_EQ(w.t[1]->checkPeer(2), attncclRemoteError);
  Msg r;
  r.src = 2, r.dst = 1, r.tag = 1, r.size = 500;
  r.buf.resize(500);
  EXPECT_EQ(w.t[1]->irecv(2, 1, r.buf.data(), 500, &r.op), attncclSuccess) << lastError();
  ASSERT_TRUE(w.waitAll({&r.op}));
  ASSERT_NO_FATAL_FAILURE(expectReceived(r));
  Op again;
  EXPECT_EQ(w.t[1]->irecv(2, 1, rb.data(), rb.size(), &again), attncclRemoteError);
  EXPECT_TRUE(again.done());
}

// ------------------------------------------------------------------------------ a dying process

// Pipes carry length-prefixed blobs and one-byte signals between the test and its child; every
// read is bounded so a broken child fails the test rather than hanging it.
bool writeAll(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t k = write(fd, c, n);
    if (k <= 0) return false;
    c += k, n -= size_t(k);
  }
  return true;
}
bool readAll(int fd, void* p, size_t n, double seconds) {
  char* c = static_cast<char*>(p);
  const auto t0 = Clock::now();
  while (n > 0) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    timeval tv{0, 100000};
    if (select(fd + 1, &set, nullptr, nullptr, &tv) > 0) {
      ssize_t k = read(fd, c, n);
      if (k <= 0) return false;
      c += k, n -= size_t(k);
    } else if (secondsSince(t0) > seconds) {
      return false;
    }
  }
  return true;
}
bool writeBlob(int fd, const std::string& b) {
  uint32_t n = uint32_t(b.size());
  return writeAll(fd, &n, 4) && writeAll(fd, b.data(), n);
}
bool readBlob(int fd, std::string* b, double seconds) {
  uint32_t n = 0;
  if (!readAll(fd, &n, 4, seconds) || n > (1u << 20)) return false;
  b->resize(n);
  return readAll(fd, &(*b)[0], n, seconds);
}

constexpr const char* kChildEnv = "ATTNCCL_TEST_UCX_CHILD";

// Rank 2 of 3 in a child process: connects to ranks 0 and 1 of the test, exchanges one message
// with each, then SIGKILLs itself when told. Exit codes name the step that failed.
[[noreturn]] void childRank(int rfd, int wfd) {
  UcxParams p;
  p.rank = 2, p.nranks = 3, p.timeoutMs = kTimeoutMs;
  std::unique_ptr<Transport> t;
  std::string blob;
  if (ucxTransportCreate(p, &t, &blob) != attncclSuccess || !writeBlob(wfd, blob)) _exit(10);
  std::vector<PeerInfo> infos(3);
  for (int r = 0; r < 2; ++r) {
    if (!readBlob(rfd, &blob, 10.0)) _exit(11);
    infos[r] = infoOf(r, blob, getppid());
  }
  if (t->connect(infos, {0, 1}) != attncclSuccess) _exit(12);
  char sb[2][32], rb[2][32];
  Op s[2], r[2];
  for (int q = 0; q < 2; ++q) {
    memset(sb[q], 'a' + q, 32);
    if (t->irecv(q, 1, rb[q], 32, &r[q]) != attncclSuccess || t->isend(q, 1, sb[q], 32, &s[q]) != attncclSuccess) _exit(13);
  }
  const auto t0 = Clock::now();
  while (!(s[0].done() && s[1].done() && r[0].done() && r[1].done())) {
    if (secondsSince(t0) > 10.0) _exit(14);
    t->progress();
  }
  // A rendezvous message that rank 0 only asks for after this process is dead.
  std::vector<char> orphan(1 << 20, 'o');
  Op orphanOp;
  if (t->isend(0, 9, orphan.data(), orphan.size(), &orphanOp) != attncclSuccess) _exit(15);
  char c = 'R';
  if (!writeAll(wfd, &c, 1)) _exit(16);
  // Keep progressing (a live rank answers wire-up and rendezvous traffic) until told to die.
  for (;;) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(rfd, &set);
    timeval tv{0, 0};
    if (select(rfd + 1, &set, nullptr, nullptr, &tv) > 0) raise(SIGKILL);
    t->progress();
  }
}

// In the re-executed child, GoogleTest's global set-up runs the child rank (after every static
// of the library is constructed) and never returns to the tests.
class ChildRankHook : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* spec = getenv(kChildEnv);
    int rfd = -1, wfd = -1;
    if (spec != nullptr && sscanf(spec, "%d,%d", &rfd, &wfd) == 2) childRank(rfd, wfd);
  }
};
::testing::Environment* const gChildHook = ::testing::AddGlobalTestEnvironment(new ChildRankHook);

// A peer process killed with SIGKILL while ops with it are pending: both survivors see every such
// op fail with attncclRemoteError within a few keepalive periods, checkPeer reports it, later
// posts fail at once, the survivors keep talking to each other, and teardown is prompt.
TEST_P(Ucx, PeerProcessKilled) {
  int p2c[2], c2p[2];
  ASSERT_EQ(pipe(p2c), 0);
  ASSERT_EQ(pipe(c2p), 0);
  char spec[32];
  snprintf(spec, sizeof(spec), "%d,%d", p2c[0], c2p[1]);
  // The child runs this binary again with a filter naming this test, so that GoogleTest has a
  // test to run and calls the set-up hook, which becomes rank 2.
  const ::testing::TestInfo* ti = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = std::string("--gtest_filter=") + ti->test_suite_name() + "." + ti->name();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv(kChildEnv, spec, 1);
    execl("/proc/self/exe", "test_ucx_failures", filter.c_str(), static_cast<char*>(nullptr));
    _exit(99);
  }
  close(p2c[0]);
  close(c2p[1]);
  struct Reaper {  // the child never outlives the test
    pid_t pid;
    int fds[2];
    bool reaped = false;
    ~Reaper() {
      if (!reaped) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
      close(fds[0]);
      close(fds[1]);
    }
  } reaper{pid, {p2c[1], c2p[0]}};

  World w;
  ASSERT_NO_FATAL_FAILURE(w.create(2, 3));
  std::string blob;
  ASSERT_TRUE(readBlob(c2p[0], &blob, 10.0)) << "child did not send its address";
  w.infos[2] = infoOf(2, blob, pid);
  ASSERT_TRUE(writeBlob(p2c[1], w.infos[0].ucxBlob) && writeBlob(p2c[1], w.infos[1].ucxBlob));
  ASSERT_EQ(w.t[0]->connect(w.infos, {1, 2}), attncclSuccess) << lastError();
  ASSERT_EQ(w.t[1]->connect(w.infos, {0, 2}), attncclSuccess) << lastError();
  char sb[2][32], rb[2][32];
  Op s[2], r[2];
  for (int q = 0; q < 2; ++q) {
    memset(sb[q], 'x', 32);
    ASSERT_EQ(w.t[q]->irecv(2, 1, rb[q], 32, &r[q]), attncclSuccess);
    ASSERT_EQ(w.t[q]->isend(2, 1, sb[q], 32, &s[q]), attncclSuccess);
  }
  ASSERT_TRUE(w.waitAll({&s[0], &s[1], &r[0], &r[1]})) << "handshake with the child failed";
  EXPECT_EQ(rb[0][0], 'a');
  EXPECT_EQ(rb[1][0], 'b');
  char c = 0;
  ASSERT_TRUE(readAll(c2p[0], &c, 1, 10.0) && c == 'R') << "child did not get ready";

  // Ops that can only finish with the child's help.
  std::vector<char> big(8 << 20, 7), r0(64), r1(1 << 20);
  Op bigSend, recv0, recv1;
  ASSERT_EQ(w.t[0]->isend(2, 3, big.data(), big.size(), &bigSend), attncclSuccess);
  ASSERT_EQ(w.t[0]->irecv(2, 2, r0.data(), r0.size(), &recv0), attncclSuccess);
  ASSERT_EQ(w.t[1]->irecv(2, 2, r1.data(), r1.size(), &recv1), attncclSuccess);
  w.spin(0.05);
  ASSERT_FALSE(bigSend.done() || recv0.done() || recv1.done());

  c = 'K';
  ASSERT_TRUE(writeAll(p2c[1], &c, 1));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  reaper.reaped = true;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child exit status " << status;

  // Drive the survivors as the engine does: progress, and look at peers now and then.
  const auto t0 = Clock::now();
  auto lastCheck = t0;
  while (!(bigSend.done() && recv0.done() && recv1.done()) && secondsSince(t0) < kWaitSeconds) {
    w.progressAll();
    if (std::chrono::duration<double>(Clock::now() - lastCheck).count() > 0.05) {
      w.t[0]->checkPeer(2);
      w.t[1]->checkPeer(2);
      lastCheck = Clock::now();
    }
  }
  const double detect = secondsSince(t0);
  printf("[ ucx %s ] killed peer detected after %.2f s\n", GetParam().empty() ? "default" : GetParam().c_str(),
         detect);
  ASSERT_TRUE(bigSend.done() && recv0.done() && recv1.done()) << "ops with the dead peer hang";
  EXPECT_EQ(bigSend.result, attncclRemoteError);
  EXPECT_EQ(recv0.result, attncclRemoteError);
  EXPECT_EQ(recv1.result, attncclRemoteError);
  for (int q = 0; q < 2; ++q) {
    while (w.t[q]->checkPeer(2) == attncclSuccess && secondsSince(t0) < kWaitSeconds) w.progressAll();
    EXPECT_EQ(w.t[q]->checkPeer(2), attncclRemoteError);
    EXPECT_NE(std::string(lastError()).find("rank 2"), std::string::npos) << lastError();
    Op late1, late2;
    EXPECT_EQ(w.t[q]->isend(2, 5, sb[q], 32, &late1), attncclRemoteError);
    EXPECT_EQ(w.t[q]->irecv(2, 5, rb[q], 32, &late2), attncclRemoteError);
    EXPECT_TRUE(late1.done() && late1.result == attncclRemoteError);
    EXPECT_TRUE(late2.done() && late2.result == attncclRemoteError);
  }
  // The child's rendezvous message waits unexpected here, but its data died with the child. (UCX
  // may fail the receive inside the post, so the op carries the verdict.)
  std::vector<char> orphan(1 << 20);
  Op orphanRecv;
  attncclResult_t posted = w.t[0]->irecv(2, 9, orphan.data(), orphan.size(), &orphanRecv);
  EXPECT_TRUE(posted == attncclSuccess || posted == attncclRemoteError) << posted;
  EXPECT_TRUE(orphanRecv.done() && orphanRecv.result == attncclRemoteError);

  Msg ms, mr;  // the survivors still talk
  ms.src = mr.src = 0, ms.dst = mr.dst = 1, ms.tag = mr.tag = 6, ms.size = mr.size = 2 << 20;
  ms.buf.resize(ms.size);
  mr.buf.resize(mr.size);
  fill(ms.buf, ms.size, 0, 1, 6, 0);
  ASSERT_EQ(w.t[1]->irecv(0, 6, mr.buf.data(), mr.size, &mr.op), attncclSuccess);
  ASSERT_EQ(w.t[0]->isend(1, 6, ms.buf.data(), ms.size, &ms.op), attncclSuccess);
  ASSERT_TRUE(w.waitAll({&ms.op, &mr.op}));
  ASSERT_NO_FATAL_FAILURE(expectReceived(mr));

  const auto t1 = Clock::now();
  w.t.clear();
  EXPECT_LT(secondsSince(t1), kWaitSeconds) << "teardown with a dead peer hangs";  // a hang bound
}

INSTANTIATE_TEST_SUITE_P(Tls, Ucx, ::testing::Values(std::string("tcp"), std::string("")),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           return i.param.empty() ? std::string("Default") : std::string("Tcp");
                         });

}  // namespace
}  // namespace attnccl
