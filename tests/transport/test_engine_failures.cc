// How a wait of the engine (src/transport/engine.cc) ends when an op fails, against a scripted
// transport that completes ops only when the test says so:
//   - an op that fails for good (attncclRemoteError, attncclTimeout) lets the wait go on until
//     the other ops are done (a peer may still read one of their buffers in place), and then
//     every transport is quiesced before the wait returns, so the ops still pending elsewhere
//     end and no transfer touches the caller's buffers afterwards (Transport::quiesce);
//   - the caller reads the failure's own message, not whatever the transports record meanwhile;
//   - a wait that times out quiesces too, and only a success moves its deadline: an op that
//     fails leaves the others' timeout where it was (else two timeouts chain in one wait);
//   - an error that leaves the communicator usable (a truncated receive: attncclInvalidUsage)
//     neither ends the wait early nor quiesces.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/result.h"
#include "transport/engine.h"
#include "transport/transport.h"

namespace attnccl {
namespace {

class ScriptedTransport final : public Transport {
 public:
  const char* name() const override { return "scripted"; }
  attncclResult_t connect(const std::vector<PeerInfo>&, const std::vector<int>&) override { return attncclSuccess; }
  attncclResult_t isend(int, uint32_t, const void*, size_t, Op* op) override {
    posted.push_back(op);
    return attncclSuccess;
  }
  attncclResult_t irecv(int, uint32_t, void*, size_t, Op* op) override {
    posted.push_back(op);
    return attncclSuccess;
  }
  // Completes each scripted op at the engine's progress call number `atCall` (counting from 1),
  // or, with atCall 0, at the first progress call `afterMs` or more after the script started.
  attncclResult_t progress() override {
    ++progressCalls;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    for (auto& s : script) {
      const bool due = s.atCall != 0 ? s.atCall == progressCalls : ms >= s.afterMs;
      if (due && !s.op->done()) {
        if (s.result != attncclSuccess) fail(s.result, "scripted: %s", s.message.c_str());
        s.op->complete(s.result, 0);
      }
    }
    return attncclSuccess;
  }
  attncclResult_t checkPeer(int) override { return attncclSuccess; }
  void cancelAll(attncclResult_t why) override { endAll(why, "cancelAll"); }
  void quiesce(attncclResult_t why) override {
    ++quiesceCalls;
    quiescedWith = why;
    endAll(why, "quiesce");
  }

  using Clock = std::chrono::steady_clock;
  struct Step {
    Op* op;
    attncclResult_t result;
    std::string message;
    int atCall;
    double afterMs = 0;
  };
  Clock::time_point started = Clock::now();
  std::vector<Op*> posted;
  std::vector<Step> script;
  int progressCalls = 0;
  int quiesceCalls = 0;
  attncclResult_t quiescedWith = attncclSuccess;

 private:
  // As a real transport does: ending ops records a message of its own.
  void endAll(attncclResult_t why, const char* what) {
    for (Op* op : posted) {
      if (!op->done()) {
        fail(why, "scripted %s ended an op", what);
        op->complete(why, 0);
      }
    }
  }
};

struct Fixture {
  explicit Fixture(int timeoutMs = 20000) {
    engine.configure(/*rank=*/0, /*nranks=*/2, timeoutMs, nullptr, nullptr);
    engine.setRoute(1, &t);
    engine.addTransport(&t);
    engine.setSpinMicros(-1);  // poll: no doorbell
  }
  ScriptedTransport t;
  Engine engine;
};

TEST(EngineFailures, AFatalOpQuiescesOnceTheOthersAreDone) {
  for (attncclResult_t fatal : {attncclRemoteError, attncclTimeout}) {
    Fixture f;
    char a[8], b[8], c[8];
    OpArray ops(f.engine, 3);
    ASSERT_EQ(f.engine.irecv(1, 1, a, sizeof a, &ops[0]), attncclSuccess);
    ASSERT_EQ(f.engine.irecv(1, 2, b, sizeof b, &ops[1]), attncclSuccess);
    ASSERT_EQ(f.engine.isend(1, 3, a, sizeof a, &ops[2]), attncclSuccess);
    Op other;  // an op of another wait, still pending when this one fails
    ASSERT_EQ(f.engine.irecv(1, 4, c, sizeof c, &other), attncclSuccess);
    f.t.script.push_back({&ops[1], fatal, "rank 1 went away", 3});
    f.t.script.push_back({&ops[0], attncclSuccess, "", 40});
    f.t.script.push_back({&ops[2], attncclSuccess, "", 90});
    EXPECT_EQ(f.engine.waitAll(ops), fatal);
    EXPECT_GE(f.t.progressCalls, 90);  // it waited for ops[0] and ops[2]
    EXPECT_EQ(ops[0].result, attncclSuccess);
    EXPECT_EQ(ops[2].result, attncclSuccess);
    EXPECT_EQ(f.t.quiesceCalls, 1);
    EXPECT_EQ(f.t.quiescedWith, fatal);
    EXPECT_TRUE(other.done());
    EXPECT_EQ(other.result, fatal);
    EXPECT_EQ(std::string(lastError()), "scripted: rank 1 went away");
  }
}

TEST(EngineFailures, AllOpsDoneWithAFatalOneStillQuiesces) {
  Fixture f;
  char a[8];
  OpArray ops(f.engine, 2);
  ASSERT_EQ(f.engine.irecv(1, 1, a, sizeof a, &ops[0]), attncclSuccess);
  ASSERT_EQ(f.engine.isend(1, 2, a, sizeof a, &ops[1]), attncclSuccess);
  // Both end before the wait looks at them: the first scan already sees every op done.
  ops[0].complete(attncclSuccess, 8);
  fail(attncclRemoteError, "the send failed");
  ops[1].complete(attncclRemoteError, 0);
  EXPECT_EQ(f.engine.waitAll(ops), attncclRemoteError);
  EXPECT_EQ(f.t.quiesceCalls, 1);
  EXPECT_EQ(std::string(lastError()), "the send failed");
}

TEST(EngineFailures, ATimedOutWaitQuiesces) {
  Fixture f(/*timeoutMs=*/50);
  char a[8];
  OpArray ops(f.engine, 1);
  ASSERT_EQ(f.engine.irecv(1, 1, a, sizeof a, &ops[0]), attncclSuccess);
  EXPECT_EQ(f.engine.waitAll(ops), attncclTimeout);
  EXPECT_EQ(f.t.quiesceCalls, 1);
  EXPECT_TRUE(ops[0].done());
  EXPECT_NE(std::string(lastError()).find("no progress for 50 ms"), std::string::npos) << lastError();
}

// A wait with a timeout of T: one op fails at 0.9 T, the other is scripted to succeed at 1.6 T.
// The failure is no progress, so the wait times out at T and the timeout ends the second op
// before its success comes. Had the failure moved the deadline (to 1.9 T), the second op would
// complete at 1.6 T. The test reads which of the two happened, not how long the wait took.
TEST(EngineFailures, AFailedOpDoesNotMoveTheDeadline) {
  constexpr int kTimeoutMs = 1000;
  Fixture f(kTimeoutMs);
  char a[8], b[8];
  OpArray ops(f.engine, 2);
  ASSERT_EQ(f.engine.irecv(1, 1, a, sizeof a, &ops[0]), attncclSuccess);
  ASSERT_EQ(f.engine.irecv(1, 2, b, sizeof b, &ops[1]), attncclSuccess);
  f.t.started = ScriptedTransport::Clock::now();
  f.t.script.push_back({&ops[0], attncclRemoteError, "rank 1 left", 0, 0.9 * kTimeoutMs});
  f.t.script.push_back({&ops[1], attncclSuccess, "", 0, 1.6 * kTimeoutMs});
  const attncclResult_t r = f.engine.waitAll(ops);
  EXPECT_TRUE(r == attncclTimeout || r == attncclRemoteError) << r;
  EXPECT_EQ(ops[0].result, attncclRemoteError);
  ASSERT_TRUE(ops[1].done());
  EXPECT_EQ(ops[1].result, attncclTimeout) << "the failed op moved the deadline: the other op completed";
  EXPECT_EQ(f.t.quiesceCalls, 1);
  EXPECT_EQ(f.t.quiescedWith, attncclTimeout);
}

TEST(EngineFailures, ANonFatalErrorWaitsForTheRestAndDoesNotQuiesce) {
  Fixture f;
  char a[8], b[8];
  OpArray ops(f.engine, 2);
  ASSERT_EQ(f.engine.irecv(1, 1, a, sizeof a, &ops[0]), attncclSuccess);
  ASSERT_EQ(f.engine.irecv(1, 2, b, sizeof b, &ops[1]), attncclSuccess);
  f.t.script.push_back({&ops[0], attncclInvalidUsage, "message larger than the receive", 1});
  f.t.script.push_back({&ops[1], attncclSuccess, "", 200});
  EXPECT_EQ(f.engine.waitAll(ops), attncclInvalidUsage);
  EXPECT_GE(f.t.progressCalls, 200);  // it waited for ops[1]
  EXPECT_EQ(f.t.quiesceCalls, 0);
  EXPECT_TRUE(ops[1].done());
  EXPECT_EQ(ops[1].result, attncclSuccess);
}

}  // namespace
}  // namespace attnccl
