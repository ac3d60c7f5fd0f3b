// Ranks as forked processes that the test process steers: it sees what each rank reports while it
// runs (say()), can SIGKILL one at a moment of its choosing, and reaps every child (killing those
// that outlive a deadline, which the caller counts as a hang). The fault tests and the chaos test
// are written over it; runRanks (ranks.h) is the simpler launcher for tests that only need the
// ranks' final verdicts.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "attnccl.h"

namespace attnccl {
namespace test {

// Monotonic clock in seconds, comparable across the processes of one machine.
double monoSeconds();

// Sends a line to the parent while the rank runs.
using Say = std::function<void(const std::string&)>;
// The rank's body, in the child. Its result is sent to the parent as a last line.
using ProcFn = std::function<std::string(int rank, int nranks, const attncclUniqueId& id, const Say& say)>;

class ProcRanks {
 public:
  // Forks nranks children (one rank each) with a fresh unique id.
  ProcRanks(int nranks, const ProcFn& fn);
  // Kills (SIGKILL) and reaps every child still running.
  ~ProcRanks();
  ProcRanks(const ProcRanks&) = delete;
  ProcRanks& operator=(const ProcRanks&) = delete;

  bool started() const { return started_; }
  int size() const { return static_cast<int>(kids_.size()); }
  pid_t pid(int rank) const { return kids_[rank].pid; }

  // Reads what the children said until done() holds or `seconds` pass; returns done().
  bool pollUntil(const std::function<bool()>& done, double seconds);
  // Waits until every child exited (reaped); children still running after `seconds` are killed
  // and reported by hung(). Returns true when none had to be killed.
  bool reapAll(double seconds);
  // SIGKILLs a rank; monoSeconds() of the kill.
  double kill(int rank);

  // Lines the rank said so far (its final result is the last one once it exited).
  const std::vector<std::string>& lines(int rank) const { return kids_[rank].lines; }
  bool hasLine(int rank, const std::string& prefix) const;
  bool exited(int rank) const { return kids_[rank].reaped; }
  int status(int rank) const { return kids_[rank].status; }
  bool killedBySignal(int rank, int sig) const;
  bool hung(int rank) const { return kids_[rank].hung; }

 private:
  struct Kid {
    pid_t pid = -1;
    int fd = -1;
    std::string partial;
    std::vector<std::string> lines;
    bool eof = false;
    bool reaped = false;
    bool hung = false;
    int status = 0;
  };
  void readAvailable(int waitMs);
  void reapExited();

  std::vector<Kid> kids_;
  bool started_ = false;
};

// Entries of /dev/shm (names) that attnccl or UCX could create ("attnccl", "ucx" in the name), to
// tell what a test left behind. attnccl itself only uses memfd segments, never /dev/shm; other
// programs running beside the tests (MPI, Python multiprocessing) make files there of their own.
std::vector<std::string> devShmEntries();
// Names in `after` that are not in `before`.
std::vector<std::string> newEntries(const std::vector<std::string>& before, const std::vector<std::string>& after);
// Processes whose parent is this process.
std::vector<int> childProcesses();

}  // namespace test
}  // namespace attnccl
