// Logging by level and subsystem. ATTNCCL_DEBUG picks the level, ATTNCCL_DEBUG_SUBSYS the
// subsystems. A disabled log statement costs one load and one branch: the arguments are not
// evaluated.
#pragma once

#include <cstdint>

namespace attnccl {

enum LogLevel : int { kLogNone = 0, kLogVersion = 1, kLogWarn = 2, kLogInfo = 3, kLogTrace = 4 };

enum LogSubsys : uint32_t {
  kSubInit = 1u << 0,
  kSubBootstrap = 1u << 1,
  kSubTransport = 1u << 2,
  kSubColl = 1u << 3,
  kSubAttn = 1u << 4,
  kSubTune = 1u << 5,
  kSubTopo = 1u << 6,
  kSubAll = ~0u
};

extern int gLogLevel;           // -1 until initialised
extern uint32_t gLogSubsysMask;

void logInit();
void logMessage(LogLevel level, LogSubsys sys, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
// Rank printed in log lines of this thread (-1: none). Set while a rank's call runs.
void logSetRank(int rank);

inline bool logEnabled(LogLevel level, LogSubsys sys) {
  if (__builtin_expect(gLogLevel < 0, 0)) logInit();
  return level <= gLogLevel && (sys & gLogSubsysMask) != 0;
}

}  // namespace attnccl

#define ATTN_LOG(level, sys, ...)                                                              \
  do {                                                                                         \
    if (::attnccl::logEnabled(::attnccl::level, ::attnccl::sys))                               \
      ::attnccl::logMessage(::attnccl::level, ::attnccl::sys, __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define ATTN_WARN(sys, ...) ATTN_LOG(kLogWarn, sys, __VA_ARGS__)
#define ATTN_INFO(sys, ...) ATTN_LOG(kLogInfo, sys, __VA_ARGS__)
#define ATTN_TRACE(sys, ...) ATTN_LOG(kLogTrace, sys, __VA_ARGS__)
