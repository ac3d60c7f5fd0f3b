// Runs N ranks of a test as threads of this process, as forked processes, or mixed (two
// processes holding the ranks as threads). A rank body returns "" on success or a message; the
// RK_* macros return such messages with the file and line. Forked ranks report through a pipe
// and are killed if they outlive the deadline, so a hung rank fails the test instead of hanging.
#pragma once

#include <cstdarg>
#include <functional>
#include <string>
#include <vector>

#include "attnccl.h"

namespace attnccl {
namespace test {

enum class Mode { kThreads, kProcesses, kMixed };
const char* modeName(Mode m);

using RankFn = std::function<std::string(int rank, int nranks, const attncclUniqueId& id)>;

// Runs fn on every rank with a fresh unique id. Returns "" if all succeeded, else the failures.
std::string runRanks(int nranks, Mode mode, const RankFn& fn, int timeoutSec = 180);

// Forked ranks get the unique id through a pipe from a parent that creates it after forking
// them all (runRanks, ProcRanks): the rendezvous thread that attncclGetUniqueId starts must not
// be caught in an allocation by a fork (ASan's allocator is not fork-safe). Whole-id transfers;
// false on a short read or write.
bool writeId(int fd, const attncclUniqueId& id);
bool readId(int fd, attncclUniqueId* id);

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A communicator for a rank body, with an optional transport ("shm", "ucx", or null = auto).
// Returns "" and sets *comm, or the failure.
std::string initComm(attncclComm_t* comm, int rank, int nranks, const attncclUniqueId& id,
                     const char* transport = nullptr, int cpuThreads = 1, int timeoutMs = 60000);

// Transports every collective test runs over.
std::vector<const char*> testTransports();

}  // namespace test
}  // namespace attnccl

#define RK_CHECK(cond, ...)                                                                           \
  do {                                                                                                \
    if (!(cond))                                                                                      \
      return ::attnccl::test::format("%s:%d: check '%s' failed: ", __FILE__, __LINE__, #cond) +       \
             ::attnccl::test::format(__VA_ARGS__);                                                    \
  } while (0)

#define RK_OK(call)                                                                                   \
  do {                                                                                                \
    attncclResult_t rk_r_ = (call);                                                                   \
    if (rk_r_ != attncclSuccess)                                                                      \
      return ::attnccl::test::format("%s:%d: %s -> %s: %s", __FILE__, __LINE__, #call,                \
                                     attncclGetErrorString(rk_r_), attncclGetLastError(nullptr));     \
  } while (0)

#define RK_EXPECT_RESULT(call, expected)                                                              \
  do {                                                                                                \
    attncclResult_t rk_r_ = (call);                                                                   \
    if (rk_r_ != (expected))                                                                          \
      return ::attnccl::test::format("%s:%d: %s -> %s, expected %s (%s)", __FILE__, __LINE__, #call,  \
                                     attncclGetErrorString(rk_r_), attncclGetErrorString(expected),   \
                                     attncclGetLastError(nullptr));                                   \
  } while (0)

#define RK_SUB(expr)                            \
  do {                                          \
    std::string rk_s_ = (expr);                 \
    if (!rk_s_.empty()) return rk_s_;           \
  } while (0)
