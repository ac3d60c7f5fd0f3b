#include "core/params.h"

#include <cstdlib>
#include <mutex>

namespace attnccl {
namespace {

// clang-format off
const std::vector<ParamInfo> kParams = {
  {Param::Debug, "ATTNCCL_DEBUG", ParamType::String, "",
   "Log level: VERSION, WARN, INFO, TRACE (empty: errors only, nothing printed on success)"},
  {Param::DebugSubsys, "ATTNCCL_DEBUG_SUBSYS", ParamType::String, "ALL",
   "Comma-separated subsystems to log: INIT, BOOTSTRAP, TRANSPORT, COLL, ATTN, TUNE, TOPO, ALL; ^X excludes X"},
  {Param::DebugFile, "ATTNCCL_DEBUG_FILE", ParamType::String, "",
   "Write logs to this file instead of stderr; %h = host, %p = pid"},
  {Param::TimeoutMs, "ATTNCCL_TIMEOUT_MS", ParamType::Int, "300000",
   "Bound of every wait (bootstrap, transfers, collectives) when the config leaves timeoutMs at 0"},
  {Param::Transport, "ATTNCCL_TRANSPORT", ParamType::String, "auto",
   "Force a transport for every peer pair: auto (shm on a node, ucx across nodes), shm or ucx"},
  {Param::SocketIfname, "ATTNCCL_SOCKET_IFNAME", ParamType::String, "",
   "Network interface (prefix) the bootstrap listens on; default: first non-loopback, else loopback"},
  {Param::CommId, "ATTNCCL_COMM_ID", ParamType::String, "",
   "host:port of a rendezvous: attncclGetUniqueId then serves (rank 0) or names it instead of a random port"},
  {Param::CpuThreads, "ATTNCCL_CPU_THREADS", ParamType::Int, "0",
   "Compute threads per rank when the config leaves cpuThreads at 0; 0 = the rank's share of the cores"},
  {Param::BindThreads, "ATTNCCL_BIND_THREADS", ParamType::Int, "1",
   "Bind compute threads to cores (hwloc) when the node's ranks do not oversubscribe its cores"},
  {Param::ShmEagerBytes, "ATTNCCL_SHM_EAGER_BYTES", ParamType::Int, "8192",
   "shm: messages up to this size travel inline in the control ring; larger ones by rendezvous"},
  {Param::ShmChunkBytes, "ATTNCCL_SHM_CHUNK_BYTES", ParamType::Int, "262144",
   "shm: chunk size of the staged (two-copy) path"},
  {Param::ShmCma, "ATTNCCL_SHM_CMA", ParamType::Int, "2",
   "shm, buffers of another process that attnccl did not allocate: 1 = the receiver copies them with "
   "process_vm_readv (one copy), 0 = through the staged chunk ring (two copies, sender and receiver at once), "
   "2 = CMA only when the node's ranks have more compute threads than cores (staged needs both running)"},
  {Param::ShmDirect, "ATTNCCL_SHM_DIRECT", ParamType::Int, "1",
   "shm: read peers' library-allocated buffers and same-process buffers in place (zero-copy path)"},
  {Param::Checksum, "ATTNCCL_CHECKSUM", ParamType::Int, "0",
   "1: every message between ranks carries a 64-bit hash of its payload, checked on arrival (a mismatch fails "
   "the call with attncclRemoteError); all ranks must agree. For debugging: costs a pass over every payload"},
  {Param::Algo, "ATTNCCL_ALGO", ParamType::String, "",
   "Override the algorithm attncclAlgoAuto picks: ring, passq, allgather, ulysses, hybrid"},
  {Param::HybridGroup, "ATTNCCL_HYBRID_GROUP", ParamType::Int, "0",
   "Ranks per head-all-to-all group of the hybrid algorithm when the config leaves it 0; 0 = by node (groups of the "
   "gcd of the nodes' rank counts, cut from each node's own ranks in rank order, so a group never spans nodes "
   "whatever the numbering; 3+1 ranks give 1, the ring; CUDA communicators keep to consecutive blocks)"},
  {Param::TuneFile, "ATTNCCL_TUNE_FILE", ParamType::String, "",
   "Calibration cache of the automatic algorithm choice (kernel rates, link figures); empty = measure at init"},
  {Param::HeartbeatMs, "ATTNCCL_HEARTBEAT_MS", ParamType::Int, "200",
   "How often a waiting rank checks the peers it waits for (shm: the process and its closing flag; ucx: endpoint "
   "errors); at least 4 times per timeout. A dead peer fails the wait within about this interval"},
  {Param::SpinUs, "ATTNCCL_SPIN_US", ParamType::Int, "50",
   "When waits sleep (ATTNCCL_WAIT_SLEEP): how long a waiting rank polls without progress before it sleeps "
   "until a peer on the same node (shm) publishes something"},
  {Param::WaitSleep, "ATTNCCL_WAIT_SLEEP", ParamType::Int, "2",
   "Waiting ranks: 0 = always poll, 1 = sleep after ATTNCCL_SPIN_US, 2 = sleep only when the node's ranks "
   "have more compute threads than cores (polling would take cores from ranks that compute)"},
  {Param::CpuIsa, "ATTNCCL_CPU_ISA", ParamType::String, "",
   "Highest ISA of the CPU tiles: generic, avx2 or avx512 (empty: the best the CPU has). Caps the row "
   "operations and, below avx512, oneDNN (at AVX2); generic also keeps the collectives' reductions off their "
   "AVX2 kernels"},
  {Param::CpuGemm, "ATTNCCL_CPU_GEMM", ParamType::String, "",
   "Library of the CPU tiles' fp32 GEMMs: openblas or onednn (empty: oneDNN where its kernels are AVX-512 or "
   "OpenBLAS has no vector kernel for the CPU, else OpenBLAS; see src/attn/cpu/README.md)"},
  {Param::CpuBf16, "ATTNCCL_CPU_BF16", ParamType::String, "",
   "bf16 inputs of the CPU tiles: native (bf16 products on oneDNN's bf16 matmul, P and dS rounded to bf16) "
   "or fp32 (converted once, fp32 products); empty: native where oneDNN's bf16 kernels are AMX or the CPU is "
   "an AMD one with AVX512-BF16, else fp32"},
  {Param::CpuFwdGemm, "ATTNCCL_CPU_FWD_GEMM", ParamType::String, "",
   "Products of the CPU forward tiles in fp32: packed (own AVX2 kernels on keys and values packed once per "
   "tile) or library (the fp32 GEMM library); empty: packed where the fp32 library is OpenBLAS"},
  {Param::CpuBwdGemm, "ATTNCCL_CPU_BWD_GEMM", ParamType::String, "",
   "Products of the CPU backward tiles in fp32: packed (S, dP and dQ on own AVX2 kernels over keys and values "
   "packed once per tile, dK and dV on the library) or library (all five on the fp32 GEMM library); empty: "
   "packed where the fp32 library is OpenBLAS"},
  {Param::Deterministic, "ATTNCCL_DETERMINISTIC", ParamType::Int, "0",
   "1: the CPU backward sums dQ in a fixed order (key-block order), bit-identical from run to run for the "
   "same thread count; 0: the fastest order"},
  {Param::CpuStream, "ATTNCCL_CPU_STREAM", ParamType::Int, "1",
   "1: CPU forward tiles with at most 16 query rows (decode steps) stream K and V once without the GEMM's "
   "packing; 0: every tile goes through the GEMM"},
};
// clang-format on

std::mutex gMutex;
struct Cached {
  bool loaded = false;
  bool set = false;
  std::string text;
};
Cached gCache[static_cast<int>(Param::NumParams)];

const Cached& load(Param p) {
  std::lock_guard<std::mutex> lock(gMutex);
  Cached& c = gCache[static_cast<int>(p)];
  if (!c.loaded) {
    const ParamInfo& info = kParams[static_cast<int>(p)];
    const char* env = getenv(info.name);
    c.set = env != nullptr && env[0] != '\0';
    c.text = c.set ? env : info.defaultValue;
    c.loaded = true;
  }
  return c;
}

}  // namespace

int64_t paramInt(Param p) {
  const Cached& c = load(p);
  char* end = nullptr;
  long long v = strtoll(c.text.c_str(), &end, 0);
  if (end == c.text.c_str() || *end != '\0') {
    v = strtoll(kParams[static_cast<int>(p)].defaultValue, nullptr, 0);
  }
  return v;
}

std::string paramString(Param p) { return load(p).text; }
bool paramIsSet(Param p) { return load(p).set; }
const std::vector<ParamInfo>& allParams() { return kParams; }

void reloadParams() {
  std::lock_guard<std::mutex> lock(gMutex);
  for (auto& c : gCache) c.loaded = false;
}

}  // namespace attnccl
