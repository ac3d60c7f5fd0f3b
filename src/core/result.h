// Results and error detail: every failure records a message naming what went wrong, readable
// through attncclGetLastError on the failing thread. CHECK/CHECK_GOTO propagate results without
// exceptions or exit(); cleanup happens at named labels.
#pragma once

#include <cstdarg>
#include <string>

#include "attnccl.h"

namespace attnccl {

// Records a failure message for this thread (printf-style) and returns `r` so call sites read
// `return fail(attncclInvalidArgument, "count %zu too large", n);`.
attncclResult_t fail(attncclResult_t r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Same, with a va_list.
attncclResult_t vfail(attncclResult_t r, const char* fmt, va_list ap);
// The message recorded last on this thread ("" if none).
const char* lastError();
void clearLastError();
// Appends context to the current message: "outer: inner".
void prefixLastError(const char* prefix);

}  // namespace attnccl

// Propagate a non-success result.
#define ATTN_CHECK(call)                                  \
  do {                                                    \
    attncclResult_t attn_res_ = (call);                   \
    if (attn_res_ != attncclSuccess) return attn_res_;    \
  } while (0)

// Propagate to a cleanup label, storing the result in `res`.
#define ATTN_CHECK_GOTO(call, res, label)                 \
  do {                                                    \
    (res) = (call);                                       \
    if ((res) != attncclSuccess) goto label;              \
  } while (0)

// Argument check: returns attncclInvalidArgument naming the argument when cond is false.
#define ATTN_ARG(cond, ...)                                            \
  do {                                                                 \
    if (!(cond)) return ::attnccl::fail(attncclInvalidArgument, __VA_ARGS__); \
  } while (0)

// Wraps a system call result (-1 + errno) into attncclSystemError with the call's text.
#define ATTN_SYS(call)                                                                         \
  do {                                                                                         \
    if ((call) == -1)                                                                          \
      return ::attnccl::fail(attncclSystemError, "%s failed: %s (%s:%d)", #call, strerror(errno), \
                             __FILE__, __LINE__);                                              \
  } while (0)
