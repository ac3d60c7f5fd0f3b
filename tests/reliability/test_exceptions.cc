// No C++ exception crosses the C API: the work of a data call runs inside commRun's guard, and
// the worker of a non-blocking communicator guards each task. A std::bad_alloc becomes
// attncclSystemError, any other exception attncclInternalError carrying its what(). Checked by
// making a data call's work throw through the internal path every data call takes (commRun),
// on a blocking and a non-blocking communicator of one rank, and through the worker alone.
// Without the guards the blocking cases fail (the exception reaches the test) and the
// non-blocking ones end the process (an exception leaving the worker thread terminates).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/async_worker.h"
#include "comm/comm.h"
#include "core/result.h"

namespace {

attncclComm_t makeComm(bool blocking) {
  attncclUniqueId id;
  EXPECT_EQ(attncclGetUniqueId(&id), attncclSuccess);
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.blocking = blocking ? 1 : 0;
  cfg.cpuThreads = 1;
  attncclComm_t comm = nullptr;
  attncclResult_t r = attncclCommInitRank(&comm, 1, id, 0, &cfg);
  EXPECT_EQ(r, blocking ? attncclSuccess : attncclInProgress) << attncclGetLastError(comm);
  return comm;
}

// Polls the async error until it is not attncclInProgress (bounded: 60 s).
attncclResult_t settle(attncclComm_t comm) {
  attncclResult_t state = attncclInProgress;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (state == attncclInProgress && std::chrono::steady_clock::now() < end) {
    if (attncclCommGetAsyncError(comm, &state) != attncclSuccess) return attncclInternalError;
    if (state == attncclInProgress) usleep(500);
  }
  return state;
}

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

struct Thrower {
  const char* name;
  std::function<attncclResult_t()> work;
  attncclResult_t expected;
  const char* message;  // a part of the message the caller must read
};

std::vector<Thrower> throwers() {
  return {
      {"bad_alloc", []() -> attncclResult_t { throw std::bad_alloc(); }, attncclSystemError, "out of memory"},
      {"runtime_error", []() -> attncclResult_t { throw std::runtime_error("the schedule builder broke"); },
       attncclInternalError, "the schedule builder broke"},
      {"non-standard", []() -> attncclResult_t { throw 42; }, attncclInternalError, "unexpected exception"},
  };
}

TEST(Exceptions, BlockingCallReturnsTheResult) {
  for (const Thrower& t : throwers()) {
    SCOPED_TRACE(t.name);
    attncclComm_t comm = makeComm(true);
    ASSERT_NE(comm, nullptr);
    attnccl::clearLastError();
    attncclResult_t r = attnccl::commRun(comm, "testDataCall", t.work);
    EXPECT_EQ(r, t.expected);
    const std::string msg = attncclGetLastError(comm);
    EXPECT_TRUE(contains(msg, t.message)) << msg;
    EXPECT_TRUE(contains(msg, "testDataCall")) << msg;
    // The call no longer counts as running (abort would wait for it), and it failed the
    // communicator as any system or internal error of a data call does.
    EXPECT_EQ(comm->inFlight.load(), 0);
    attncclResult_t async = attncclSuccess;
    EXPECT_EQ(attncclCommGetAsyncError(comm, &async), attncclSuccess);
    EXPECT_EQ(async, t.expected);
    EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
  }
}

TEST(Exceptions, NonBlockingCallBecomesTheAsyncError) {
  for (const Thrower& t : throwers()) {
    SCOPED_TRACE(t.name);
    attncclComm_t comm = makeComm(false);
    ASSERT_NE(comm, nullptr);
    ASSERT_EQ(settle(comm), attncclSuccess) << attncclGetLastError(comm);
    attnccl::clearLastError();
    EXPECT_EQ(attnccl::commRun(comm, "testDataCall", t.work), attncclInProgress);
    EXPECT_EQ(settle(comm), t.expected);
    attnccl::clearLastError();  // so the communicator's async error text is what is read
    const std::string msg = attncclGetLastError(comm);
    EXPECT_TRUE(contains(msg, t.message)) << msg;
    EXPECT_TRUE(contains(msg, "testDataCall")) << msg;
    EXPECT_EQ(comm->inFlight.load(), 0);
    EXPECT_EQ(attncclCommDestroy(comm), attncclSuccess);
  }
}

// The worker's own guard, for tasks queued without commRun's (non-blocking init is one).
TEST(Exceptions, WorkerTaskThatThrows) {
  for (const Thrower& t : throwers()) {
    SCOPED_TRACE(t.name);
    std::mutex m;
    std::condition_variable cv;
    bool called = false;
    attncclResult_t got = attncclSuccess;
    std::string text;
    attnccl::AsyncWorker worker([&](attncclResult_t r, const char* msg) {
      std::lock_guard<std::mutex> lock(m);
      called = true;
      got = r;
      text = msg ? msg : "";
      cv.notify_all();
    });
    bool laterRan = false;
    worker.push(t.work);
    worker.push([&] {
      laterRan = true;
      return attncclSuccess;
    });
    ASSERT_TRUE(worker.drain(60000));
    std::unique_lock<std::mutex> lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return called; }));
    EXPECT_EQ(got, t.expected);
    EXPECT_TRUE(contains(text, t.message)) << text;
    EXPECT_FALSE(laterRan);  // as after any failed task, later ones are skipped
  }
}

}  // namespace
