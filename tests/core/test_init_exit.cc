// Init is collective: no rank may return from attncclCommInitRank, destroy its communicator and
// exit while another rank still waits for the rendezvous's answer. Here the rendezvous is served
// by rank 0's own process (it calls attncclGetUniqueId), which is the case that broke: rank 0
// used to return after its last answer and exit, taking the server's thread with it before the
// others had theirs ("the rendezvous did not answer"). Every round starts 4 ranks that init,
// destroy and exit at once; all must succeed.
//
// ATTNCCL_INIT_EXIT_ROUNDS overrides the number of rounds (default 200 of each kind; about
// 0.05 s per round of processes on 2 busy cores).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "attnccl.h"
#include "support/ranks.h"

namespace {

constexpr int kRanks = 4;

int rounds() {
  const char* e = getenv("ATTNCCL_INIT_EXIT_ROUNDS");
  return e && atoi(e) > 0 ? atoi(e) : 200;
}

// One rank's whole life: init, destroy; the exit code says whether both succeeded.
int initAndDestroy(int rank, const attncclUniqueId& id) {
  attncclComm_t comm = nullptr;
  if (attncclCommInitRank(&comm, kRanks, id, rank, nullptr) != attncclSuccess) {
    fprintf(stderr, "rank %d: init failed: %s\n", rank, attncclGetLastError(nullptr));
    return 1;
  }
  if (attncclCommDestroy(comm) != attncclSuccess) {
    fprintf(stderr, "rank %d: destroy failed: %s\n", rank, attncclGetLastError(nullptr));
    return 2;
  }
  return 0;
}

// Waits for the children; a child still running after `seconds` is killed and counted as failed
// (a hang, not a time measurement: healthy rounds take a small fraction of it).
int reap(const std::vector<pid_t>& kids, int seconds) {
  int failed = 0;
  std::vector<bool> done(kids.size(), false);
  for (int tick = 0; tick < seconds * 100; ++tick) {
    int left = 0;
    for (size_t k = 0; k < kids.size(); ++k) {
      if (done[k]) continue;
      int st = 0;
      if (waitpid(kids[k], &st, WNOHANG) == kids[k]) {
        done[k] = true;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++failed;
      } else {
        ++left;
      }
    }
    if (left == 0) return failed;
    usleep(10000);
  }
  for (size_t k = 0; k < kids.size(); ++k) {
    if (done[k]) continue;
    kill(kids[k], SIGKILL);
    waitpid(kids[k], nullptr, 0);
    ++failed;
  }
  return failed;
}

// 4 processes; rank 0 creates the id (so its process serves the rendezvous) and hands it to the
// others through pipes.
int processRound() {
  int pipes[kRanks][2];
  for (int r = 1; r < kRanks; ++r) {
    if (pipe(pipes[r]) != 0) return kRanks;
  }
  std::vector<pid_t> kids;
  for (int r = 0; r < kRanks; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      attncclUniqueId id;
      if (r == 0) {
        if (attncclGetUniqueId(&id) != attncclSuccess) _exit(3);
        for (int k = 1; k < kRanks; ++k) {
          if (!attnccl::test::writeId(pipes[k][1], id)) _exit(4);
        }
      } else if (!attnccl::test::readId(pipes[r][0], &id)) {
        _exit(5);
      }
      _exit(initAndDestroy(r, id));
    }
    kids.push_back(pid);
  }
  for (int r = 1; r < kRanks; ++r) {
    close(pipes[r][0]);
    close(pipes[r][1]);
  }
  return reap(kids, 60);
}

// 4 threads of one child process that exits as soon as they are done; thread 0 creates the id.
int threadRound() {
  pid_t pid = fork();
  if (pid == 0) {
    attncclUniqueId id;
    if (attncclGetUniqueId(&id) != attncclSuccess) _exit(3);
    int codes[kRanks] = {0};
    std::vector<std::thread> ts;
    for (int r = 0; r < kRanks; ++r) ts.emplace_back([&, r] { codes[r] = initAndDestroy(r, id); });
    for (auto& t : ts) t.join();
    int bad = 0;
    for (int c : codes) bad += c != 0;
    _exit(bad);
  }
  return reap({pid}, 60);
}

TEST(InitExit, ProcessesThatInitDestroyAndExitAtOnceAllSucceed) {
  const int n = rounds();
  int failedRounds = 0;
  for (int i = 0; i < n; ++i) failedRounds += processRound() != 0;
  EXPECT_EQ(failedRounds, 0) << "of " << n << " rounds";
}

TEST(InitExit, ThreadsThatInitDestroyAndExitAtOnceAllSucceed) {
  const int n = rounds();
  int failedRounds = 0;
  for (int i = 0; i < n; ++i) failedRounds += threadRound() != 0;
  EXPECT_EQ(failedRounds, 0) << "of " << n << " rounds";
}

}  // namespace
