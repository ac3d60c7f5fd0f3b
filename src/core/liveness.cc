#include "core/liveness.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace attnccl {

uint64_t processStartTime(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  // Fields after the command name (which may contain spaces) start after the last ')'.
  char* p = strrchr(buf, ')');
  if (!p) return 0;
  // p+2 is field 3 (state); field 22 is 19 fields further.
  char* save = nullptr;
  char* tok = strtok_r(p + 2, " ", &save);
  for (int field = 3; tok && field < 22; ++field) tok = strtok_r(nullptr, " ", &save);
  return tok ? strtoull(tok, nullptr, 10) : 0;
}

bool processAlive(int pid, uint64_t startTime) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (!f) return false;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char* p = strrchr(buf, ')');
  if (!p || p[1] == '\0') return false;
  char state = p[2];
  if (state == 'Z' || state == 'X' || state == 'x') return false;
  if (startTime != 0) return processStartTime(pid) == startTime;
  return true;
}

}  // namespace attnccl
