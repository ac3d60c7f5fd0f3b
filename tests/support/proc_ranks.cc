#include "support/proc_ranks.h"

#include <dirent.h>
#include <execinfo.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "support/ranks.h"

namespace attnccl {
namespace test {

double monoSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

namespace {

// A rank that crashes says where on stderr before it dies (the test then reports its status).
void crashHandler(int sig) {
  void* frames[64];
  int n = backtrace(frames, 64);
  char head[64];
  int len = snprintf(head, sizeof head, "rank process %d: signal %d, backtrace:\n", getpid(), sig);
  if (len > 0) (void)!write(2, head, static_cast<size_t>(len));
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

void writeLine(int fd, const std::string& text) {
  std::string line = text;
  std::replace(line.begin(), line.end(), '\n', ' ');
  line += '\n';
  size_t off = 0;
  while (off < line.size()) {
    ssize_t w = write(fd, line.data() + off, line.size() - off);
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
}

}  // namespace

ProcRanks::ProcRanks(int nranks, const ProcFn& fn) {
  // Fork first, then create the id and hand it out (ranks.h: writeId).
  attncclUniqueId id;
  fflush(stdout);
  fflush(stderr);
  kids_.resize(nranks);
  std::vector<int> idPipes;
  auto closeIdPipes = [&] {
    for (int w : idPipes) close(w);
    idPipes.clear();
  };
  for (int r = 0; r < nranks; ++r) {
    int p[2], q[2];
    if (pipe(p) != 0) {
      closeIdPipes();
      return;
    }
    if (pipe(q) != 0) {
      close(p[0]);
      close(p[1]);
      closeIdPipes();
      return;
    }
    pid_t pid = fork();
    if (pid < 0) {
      close(p[0]);
      close(p[1]);
      close(q[0]);
      close(q[1]);
      closeIdPipes();
      return;
    }
    if (pid == 0) {
      for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) signal(sig, crashHandler);
      close(p[0]);
      close(q[1]);
      for (int k = 0; k < r; ++k) close(kids_[k].fd);  // siblings' pipes are the parent's
      for (int w : idPipes) close(w);
      const int fd = p[1];
      const bool gotId = readId(q[0], &id);
      close(q[0]);
      std::string result = gotId ? fn(r, nranks, id, [fd](const std::string& s) { writeLine(fd, s); })
                                 : std::string("no unique id from the parent");
      writeLine(fd, result);
      close(fd);
      _exit(0);
    }
    close(p[1]);
    close(q[0]);
    idPipes.push_back(q[1]);
    kids_[r].pid = pid;
    kids_[r].fd = p[0];
  }
  const bool haveId = attncclGetUniqueId(&id) == attncclSuccess;
  for (int w : idPipes) {
    if (haveId) writeId(w, id);
    close(w);  // without an id the children see end-of-file and report it
  }
  started_ = haveId;
}

ProcRanks::~ProcRanks() {
  for (Kid& k : kids_) {
    if (k.pid > 0 && !k.reaped) {
      ::kill(k.pid, SIGKILL);
      waitpid(k.pid, &k.status, 0);
      k.reaped = true;
    }
    if (k.fd >= 0) close(k.fd);
  }
}

void ProcRanks::readAvailable(int waitMs) {
  std::vector<pollfd> fds;
  std::vector<Kid*> who;
  for (Kid& k : kids_) {
    if (k.fd >= 0 && !k.eof) {
      fds.push_back({k.fd, POLLIN, 0});
      who.push_back(&k);
    }
  }
  if (fds.empty()) {
    if (waitMs > 0) usleep(static_cast<useconds_t>(waitMs) * 1000);
    return;
  }
  if (poll(fds.data(), fds.size(), waitMs) <= 0) return;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents == 0) continue;
    Kid& k = *who[i];
    char buf[4096];
    ssize_t n = read(k.fd, buf, sizeof buf);
    if (n <= 0) {
      k.eof = true;
      continue;
    }
    k.partial.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = k.partial.find('\n')) != std::string::npos) {
      k.lines.push_back(k.partial.substr(0, nl));
      k.partial.erase(0, nl + 1);
    }
  }
}

void ProcRanks::reapExited() {
  for (Kid& k : kids_) {
    if (k.pid > 0 && !k.reaped && waitpid(k.pid, &k.status, WNOHANG) == k.pid) k.reaped = true;
  }
}

bool ProcRanks::pollUntil(const std::function<bool()>& done, double seconds) {
  const double end = monoSeconds() + seconds;
  for (;;) {
    if (done()) return true;
    double left = end - monoSeconds();
    if (left <= 0) return done();
    readAvailable(static_cast<int>(std::min(20.0, left * 1000) + 1));
    reapExited();
  }
}

bool ProcRanks::reapAll(double seconds) {
  auto allDone = [this] {
    for (const Kid& k : kids_) {
      if (!k.reaped || !k.eof) return false;
    }
    return true;
  };
  pollUntil(allDone, seconds);
  bool clean = true;
  for (Kid& k : kids_) {
    if (!k.reaped) {
      ::kill(k.pid, SIGKILL);
      waitpid(k.pid, &k.status, 0);
      k.reaped = true;
      k.hung = true;
      clean = false;
    }
  }
  readAvailable(0);  // what the killed ones said before
  return clean;
}

double ProcRanks::kill(int rank) {
  ::kill(kids_[rank].pid, SIGKILL);
  return monoSeconds();
}

bool ProcRanks::hasLine(int rank, const std::string& prefix) const {
  for (const std::string& l : kids_[rank].lines) {
    if (l.compare(0, prefix.size(), prefix) == 0) return true;
  }
  return false;
}

bool ProcRanks::killedBySignal(int rank, int sig) const {
  const int st = kids_[rank].status;
  return kids_[rank].reaped && WIFSIGNALED(st) && WTERMSIG(st) == sig;
}

std::vector<std::string> devShmEntries() {
  std::vector<std::string> names;
  DIR* d = opendir("/dev/shm");
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    if (strstr(e->d_name, "attnccl") != nullptr || strstr(e->d_name, "ucx") != nullptr) names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> newEntries(const std::vector<std::string>& before, const std::vector<std::string>& after) {
  std::vector<std::string> out;
  for (const std::string& n : after) {
    if (!std::binary_search(before.begin(), before.end(), n)) out.push_back(n);
  }
  return out;
}

std::vector<int> childProcesses() {
  std::vector<int> out;
  const int me = getpid();
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    int pid = atoi(e->d_name);
    if (pid <= 0) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE* f = fopen(path, "r");
    if (!f) continue;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    // Field 4 (ppid) follows the state after the command name's closing parenthesis.
    const char* p = strrchr(buf, ')');
    char state;
    int ppid;
    if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == me) out.push_back(pid);
  }
  closedir(d);
  return out;
}

}  // namespace test
}  // namespace attnccl
