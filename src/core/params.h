// The one registry of environment knobs. Every ATTNCCL_* variable the library reads is declared
// once in params.cc with its type, default and help text; tools/attnccl-info lists them all.
// Values are read from the environment on first use and cached; reloadParams() re-reads them
// (tests that change the environment call it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace attnccl {

enum class Param : int {
  Debug,          // ATTNCCL_DEBUG
  DebugSubsys,    // ATTNCCL_DEBUG_SUBSYS
  DebugFile,      // ATTNCCL_DEBUG_FILE
  TimeoutMs,      // ATTNCCL_TIMEOUT_MS
  Transport,      // ATTNCCL_TRANSPORT
  SocketIfname,   // ATTNCCL_SOCKET_IFNAME
  CommId,         // ATTNCCL_COMM_ID
  CpuThreads,     // ATTNCCL_CPU_THREADS
  BindThreads,    // ATTNCCL_BIND_THREADS
  ShmEagerBytes,  // ATTNCCL_SHM_EAGER_BYTES
  ShmChunkBytes,  // ATTNCCL_SHM_CHUNK_BYTES
  ShmCma,         // ATTNCCL_SHM_CMA
  ShmDirect,      // ATTNCCL_SHM_DIRECT
  Checksum,       // ATTNCCL_CHECKSUM
  Algo,           // ATTNCCL_ALGO
  HybridGroup,    // ATTNCCL_HYBRID_GROUP
  TuneFile,       // ATTNCCL_TUNE_FILE
  HeartbeatMs,    // ATTNCCL_HEARTBEAT_MS
  SpinUs,         // ATTNCCL_SPIN_US
  WaitSleep,      // ATTNCCL_WAIT_SLEEP
  CpuIsa,         // ATTNCCL_CPU_ISA
  CpuGemm,        // ATTNCCL_CPU_GEMM
  CpuBf16,        // ATTNCCL_CPU_BF16
  CpuFwdGemm,     // ATTNCCL_CPU_FWD_GEMM
  CpuBwdGemm,     // ATTNCCL_CPU_BWD_GEMM
  Deterministic,  // ATTNCCL_DETERMINISTIC
  CpuStream,      // ATTNCCL_CPU_STREAM
  NumParams
};

enum class ParamType { Int, String };

struct ParamInfo {
  Param id;
  const char* name;          // full variable name, e.g. "ATTNCCL_TIMEOUT_MS"
  ParamType type;
  const char* defaultValue;  // as text
  const char* help;
};

// Integer value of an Int parameter (the default if unset or unparsable; a warning is logged).
int64_t paramInt(Param p);
// String value of a String parameter ("" if unset and the default is "").
std::string paramString(Param p);
// True when the variable is set in the environment.
bool paramIsSet(Param p);
const std::vector<ParamInfo>& allParams();
void reloadParams();

}  // namespace attnccl
