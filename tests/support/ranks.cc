#include "support/ranks.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace attnccl {
namespace test {

const char* modeName(Mode m) {
  switch (m) {
    case Mode::kThreads: return "threads";
    case Mode::kProcesses: return "processes";
    case Mode::kMixed: return "mixed";
  }
  return "?";
}

std::string format(const char* fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

namespace {

std::string runThreads(const std::vector<int>& ranks, int nranks, const attncclUniqueId& id, const RankFn& fn) {
  std::vector<std::string> results(ranks.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ranks.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        results[i] = fn(ranks[i], nranks, id);
      } catch (const std::exception& e) {
        results[i] = format("exception: %s", e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::string all;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (!results[i].empty()) all += format("[rank %d] ", ranks[i]) + results[i] + "\n";
  }
  return all;
}

struct Child {
  pid_t pid;
  int fd;
  std::string out;
  bool done = false;
  int status = 0;
};

}  // namespace

bool writeId(int fd, const attncclUniqueId& id) {
  size_t off = 0;
  while (off < sizeof(id)) {
    ssize_t n = write(fd, reinterpret_cast<const char*>(&id) + off, sizeof(id) - off);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool readId(int fd, attncclUniqueId* id) {
  size_t got = 0;
  while (got < sizeof(*id)) {
    ssize_t n = read(fd, reinterpret_cast<char*>(id) + got, sizeof(*id) - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

std::string runRanks(int nranks, Mode mode, const RankFn& fn, int timeoutSec) {
  attncclUniqueId id;
  if (mode == Mode::kThreads) {
    if (attncclGetUniqueId(&id) != attncclSuccess) return "attncclGetUniqueId failed";
    std::vector<int> all;
    for (int r = 0; r < nranks; ++r) all.push_back(r);
    return runThreads(all, nranks, id, fn);
  }
  // The children are forked first and get the id through a pipe: attncclGetUniqueId starts the
  // rendezvous thread in this process, and a fork while that thread is in the middle of an
  // allocation would hand the child a locked allocator (ASan's is not fork-safe: a child hung in
  // its first malloc, in CI).
  // Processes: one child per rank; mixed: two children with half the ranks each as threads.
  std::vector<std::vector<int>> groups;
  if (mode == Mode::kProcesses || nranks == 1) {
    for (int r = 0; r < nranks; ++r) groups.push_back({r});
  } else {
    groups.resize(2);
    for (int r = 0; r < nranks; ++r) groups[r % 2].push_back(r);
  }
  fflush(stdout);
  fflush(stderr);
  std::vector<Child> children;
  std::vector<int> idPipes;  // write ends: the id goes to each child
  for (const auto& g : groups) {
    int p[2], q[2];
    if (pipe(p) != 0) return "pipe failed";
    if (pipe(q) != 0) return "pipe failed";
    pid_t pid = fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
      close(p[0]);
      close(q[1]);
      for (int w : idPipes) close(w);
      const bool gotId = readId(q[0], &id);
      close(q[0]);
      std::string res = gotId ? runThreads(g, nranks, id, fn) : std::string("[child] no unique id from the parent\n");
      size_t off = 0;
      while (off < res.size()) {
        ssize_t w = write(p[1], res.data() + off, res.size() - off);
        if (w <= 0) break;
        off += static_cast<size_t>(w);
      }
      close(p[1]);
      _exit(0);
    }
    close(p[1]);
    close(q[0]);
    idPipes.push_back(q[1]);
    children.push_back(Child{pid, p[0], {}, false, 0});
  }
  const bool haveId = attncclGetUniqueId(&id) == attncclSuccess;
  for (int w : idPipes) {
    if (haveId) writeId(w, id);
    close(w);  // without an id the children see end-of-file and report it
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSec);
  std::string all;
  size_t open = children.size();
  while (open > 0) {
    std::vector<pollfd> fds;
    for (auto& c : children) {
      if (!c.done) fds.push_back({c.fd, POLLIN, 0});
    }
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) break;
    poll(fds.data(), fds.size(), std::min(left, 1000));
    for (auto& c : children) {
      if (c.done) continue;
      pollfd pf = {c.fd, POLLIN, 0};
      while (poll(&pf, 1, 0) > 0) {
        char buf[4096];
        ssize_t n = read(c.fd, buf, sizeof(buf));
        if (n <= 0) {
          c.done = true;
          --open;
          break;
        }
        c.out.append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& c : children) {
    if (!c.done) {
      kill(c.pid, SIGKILL);
      all += format("[pid %d] did not finish within %d s (killed)\n", c.pid, timeoutSec);
    }
    int status = 0;
    waitpid(c.pid, &status, 0);
    close(c.fd);
    if (c.done && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      all += format("[pid %d] exited abnormally (status 0x%x)\n", c.pid, status);
    }
    all += c.out;
  }
  return all;
}

std::string initComm(attncclComm_t* comm, int rank, int nranks, const attncclUniqueId& id, const char* transport,
                     int cpuThreads, int timeoutMs) {
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.transport = transport;
  cfg.cpuThreads = cpuThreads;
  cfg.timeoutMs = timeoutMs;
  RK_OK(attncclCommInitRank(comm, nranks, id, rank, &cfg));
  return "";
}

std::vector<const char*> testTransports() {
#if ATTNCCL_HAVE_UCX
  return {"shm", "ucx"};
#else
  return {"shm"};
#endif
}

}  // namespace test
}  // namespace attnccl
