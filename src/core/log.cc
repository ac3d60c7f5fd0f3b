#include "core/log.h"

#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "core/params.h"

namespace attnccl {

int gLogLevel = -1;
uint32_t gLogSubsysMask = kSubAll;

namespace {
std::mutex gLogMutex;
FILE* gLogFile = stderr;
char gHost[64] = "?";
thread_local int tlsRank = -1;

uint32_t subsysBit(const char* name) {
  static const struct {
    const char* name;
    uint32_t bit;
  } kNames[] = {{"INIT", kSubInit}, {"BOOTSTRAP", kSubBootstrap}, {"TRANSPORT", kSubTransport},
                {"NET", kSubTransport}, {"COLL", kSubColl}, {"ATTN", kSubAttn}, {"TUNE", kSubTune},
                {"TUNING", kSubTune}, {"TOPO", kSubTopo}, {"ALL", kSubAll}};
  for (const auto& n : kNames)
    if (strcasecmp(n.name, name) == 0) return n.bit;
  return 0;
}

const char* levelName(LogLevel l) {
  switch (l) {
    case kLogVersion: return "VERSION";
    case kLogWarn: return "WARN";
    case kLogInfo: return "INFO";
    case kLogTrace: return "TRACE";
    default: return "";
  }
}

std::string expandPath(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      char c = pattern[++i];
      if (c == 'h') out += gHost;
      else if (c == 'p') out += std::to_string(getpid());
      else out += c;
    } else {
      out += pattern[i];
    }
  }
  return out;
}
}  // namespace

void logInit() {
  std::lock_guard<std::mutex> lock(gLogMutex);
  if (gLogLevel >= 0) return;
  gethostname(gHost, sizeof(gHost) - 1);
  if (char* dot = strchr(gHost, '.')) *dot = '\0';
  std::string level = paramString(Param::Debug);
  int l = kLogNone;
  if (strcasecmp(level.c_str(), "VERSION") == 0) l = kLogVersion;
  else if (strcasecmp(level.c_str(), "WARN") == 0) l = kLogWarn;
  else if (strcasecmp(level.c_str(), "INFO") == 0) l = kLogInfo;
  else if (strcasecmp(level.c_str(), "TRACE") == 0) l = kLogTrace;

  std::string subs = paramString(Param::DebugSubsys);
  uint32_t mask = 0;
  bool anyInclude = false;
  size_t start = 0;
  while (start <= subs.size()) {
    size_t end = subs.find(',', start);
    if (end == std::string::npos) end = subs.size();
    std::string tok = subs.substr(start, end - start);
    if (!tok.empty()) {
      if (tok[0] == '^') {
        mask &= ~subsysBit(tok.c_str() + 1);
        if (!anyInclude) mask = kSubAll & ~subsysBit(tok.c_str() + 1);
      } else {
        mask |= subsysBit(tok.c_str());
        anyInclude = true;
      }
    }
    start = end + 1;
  }
  gLogSubsysMask = (mask == 0 && !anyInclude) ? kSubAll : mask;

  std::string file = paramString(Param::DebugFile);
  if (!file.empty()) {
    FILE* f = fopen(expandPath(file).c_str(), "a");
    if (f) gLogFile = f;
  }
  gLogLevel = l;  // last: publishes the configuration
}

void logSetRank(int rank) { tlsRank = rank; }

void logMessage(LogLevel level, LogSubsys sys, const char* file, int line, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const char* base = strrchr(file, '/');
  base = base ? base + 1 : file;
  long tid = syscall(SYS_gettid);
  std::lock_guard<std::mutex> lock(gLogMutex);
  if (tlsRank >= 0) {
    fprintf(gLogFile, "%s:%d:%ld [%d] attnccl %s %s:%d %s\n", gHost, getpid(), tid, tlsRank,
            levelName(level), base, line, msg);
  } else {
    fprintf(gLogFile, "%s:%d:%ld attnccl %s %s:%d %s\n", gHost, getpid(), tid, levelName(level), base,
            line, msg);
  }
  fflush(gLogFile);
}

}  // namespace attnccl
