#include "harness/machine.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

namespace perf {

Machine describeMachine() {
  Machine m;
  if (FILE* f = fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (fgets(line, sizeof(line), f)) {
      if (strncmp(line, "model name", 10) != 0) continue;
      const char* colon = strchr(line, ':');
      if (!colon) continue;
      m.cpu = colon + 1;
      while (!m.cpu.empty() && (m.cpu.front() == ' ' || m.cpu.front() == '\t')) m.cpu.erase(0, 1);
      while (!m.cpu.empty() && (m.cpu.back() == '\n' || m.cpu.back() == ' ')) m.cpu.pop_back();
      break;
    }
    fclose(f);
  }
  if (m.cpu.empty()) m.cpu = "unknown cpu";
  m.cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) m.host = host;
  struct utsname u;
  if (uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release;
  time_t now = time(nullptr);
  struct tm tmv;
  localtime_r(&now, &tmv);
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tmv);
  m.date = buf;
  return m;
}

}  // namespace perf
