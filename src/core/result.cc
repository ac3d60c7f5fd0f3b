#include "core/result.h"
#include "core/export.h"

#include <cstdio>
#include <cstring>

namespace attnccl {
namespace {
thread_local std::string tlsLastError;
}

attncclResult_t vfail(attncclResult_t r, const char* fmt, va_list ap) {
  char buf[1024];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  tlsLastError = buf;
  return r;
}

attncclResult_t fail(attncclResult_t r, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(r, fmt, ap);
  va_end(ap);
  return r;
}

const char* lastError() { return tlsLastError.c_str(); }
void clearLastError() { tlsLastError.clear(); }
void prefixLastError(const char* prefix) {
  tlsLastError = std::string(prefix) + (tlsLastError.empty() ? "" : ": ") + tlsLastError;
}

}  // namespace attnccl

ATTN_EXPORT const char* attncclGetErrorString(attncclResult_t result) {
  // Read as the integer the caller passed: a value outside the enumerators is not loaded as one.
  int r;
  static_assert(sizeof(r) == sizeof(result), "attncclResult_t is int-sized");
  memcpy(&r, &result, sizeof r);
  switch (r) {
    case attncclSuccess: return "no error";
    case attncclUnhandledCudaError: return "unhandled cuda error (run with ATTNCCL_DEBUG=INFO for details)";
    case attncclSystemError: return "unhandled system error (run with ATTNCCL_DEBUG=INFO for details)";
    case attncclInternalError: return "internal error - please report this issue to the attnccl developers";
    case attncclInvalidArgument: return "invalid argument (see attncclGetLastError for details)";
    case attncclInvalidUsage: return "invalid usage (see attncclGetLastError for details)";
    case attncclRemoteError: return "remote process exited or there was a network error";
    case attncclInProgress: return "operation in progress";
    case attncclTimeout: return "operation timed out";
    case attncclNotSupported: return "operation not supported (see attncclGetLastError for details)";
    default: return "unknown result code";
  }
}
