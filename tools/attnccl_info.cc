// attnccl-info: what this attnccl build is and what it sees on this machine. Version, build
// options, transports, devices, the hwloc topology as the library sees it, and every ATTNCCL_*
// parameter of the registry (src/core/params.cc) with its default, current value and help.
//
//   attnccl-info                  everything, in sections ("== Build", "== Parameters", ...)
//   attnccl-info --env-markdown   the parameter table in Markdown, as README.md carries it
//
// It links the static library: the registry, Topology and the BLAS description are internals.
#include <cstdio>
#include <cstring>
#include <string>

#include "attn/cpu/blas.h"
#include "attnccl.h"
#include "core/params.h"
#include "core/topology.h"

#if ATTNCCL_HAVE_UCX
#include <ucp/api/ucp.h>
#endif
#if ATTNCCL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#ifndef ATTNCCL_INFO_BUILD_TYPE
#define ATTNCCL_INFO_BUILD_TYPE "unknown"
#endif
#ifndef ATTNCCL_INFO_CUDA_TILES
#define ATTNCCL_INFO_CUDA_TILES 0
#endif
#ifndef ATTNCCL_INFO_CUDA_IPC
#define ATTNCCL_INFO_CUDA_IPC 0
#endif

namespace {

using attnccl::ParamInfo;
using attnccl::ParamType;

const char* onOff(bool b) { return b ? "on" : "off"; }

// Markdown cells: '|' would end the cell.
std::string mdEscape(const char* s) {
  std::string out;
  for (const char* p = s; *p; ++p) {
    if (*p == '|') out += '\\';
    out += *p;
  }
  return out;
}

void printEnvMarkdown() {
  printf("| variable | type | default | meaning |\n");
  printf("|---|---|---|---|\n");
  for (const ParamInfo& p : attnccl::allParams()) {
    std::string def = p.defaultValue[0] ? "`" + std::string(p.defaultValue) + "`" : "(empty)";
    printf("| `%s` | %s | %s | %s |\n", p.name, p.type == ParamType::Int ? "int" : "string", def.c_str(),
           mdEscape(p.help).c_str());
  }
}

void printBuild() {
  int version = 0;
  attncclGetVersion(&version);
  printf("attnccl %d.%d.%d (header code %d, library code %d)\n", ATTNCCL_MAJOR, ATTNCCL_MINOR, ATTNCCL_PATCH,
         ATTNCCL_VERSION_CODE, version);
  printf("\n== Build\n");
  printf("  build type   %s, compiler %s\n", ATTNCCL_INFO_BUILD_TYPE, __VERSION__);
  printf("  CUDA         %s%s\n", onOff(ATTNCCL_HAVE_CUDA),
         !ATTNCCL_HAVE_CUDA        ? ""
         : ATTNCCL_INFO_CUDA_TILES ? " (GPU attention tiles built)"
                                   : " (toolkit found; no GPU attention tiles in this build)");
  printf("  MPI          %s (attnccl_mpi.h: attncclCommInitMpi; perf tools under mpirun)\n", onOff(ATTNCCL_HAVE_MPI));
  printf("  NCCL         %s (attnccl_nccl.h: attncclCommInitNccl, header-inline; the library never links NCCL)\n",
         onOff(ATTNCCL_HAVE_NCCL));
  printf("  UCX          %s\n", onOff(ATTNCCL_HAVE_UCX));
  printf("  hwloc        %s\n", onOff(ATTNCCL_HAVE_HWLOC));
  printf("  BLAS         %s\n", attnccl::attn::cpu::blasDescription());
}

void printTransports() {
  printf("\n== Transports\n");
  printf("  shm          yes (ranks on one node: processes or threads)\n");
#if ATTNCCL_HAVE_UCX
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  printf("  ucx          yes (UCX %u.%u.%u; any host peer; `ucx_info -d` lists its devices)\n", major, minor, release);
#else
  printf("  ucx          no (built without UCX)\n");
#endif
  printf("  cuda_ipc     %s\n", ATTNCCL_INFO_CUDA_IPC ? "yes (GPU peers on a node)" : "no (not in this build)");
}

void printDevices(const attnccl::Topology& topo, bool topoOk) {
  printf("\n== Devices\n");
  printf("  CPU          %zu core(s) usable by this process\n", topoOk ? topo.cores.size() : size_t{0});
#if ATTNCCL_HAVE_CUDA
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    printf("  CUDA         none (cudaGetDeviceCount: %s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
  } else {
    for (int d = 0; d < n; ++d) {
      cudaDeviceProp prop;
      if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
        printf("  CUDA %-7d (properties unavailable)\n", d);
        continue;
      }
      printf("  CUDA %-7d %s, sm_%d%d, %.1f GiB\n", d, prop.name, prop.major, prop.minor,
             static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    }
  }
#else
  printf("  CUDA         none (built without CUDA)\n");
#endif
}

void printTopology(const attnccl::Topology& topo, bool topoOk) {
  printf("\n== Topology (hwloc)\n");
  if (!topoOk) {
    printf("  unavailable: %s\n", attncclGetLastError(nullptr));
    return;
  }
  printf("  %s\n", topo.summary.c_str());
  printf("  packages     %d\n", topo.packages);
  printf("  NUMA nodes   %d\n", topo.numaNodes);
  printf("  cores        %zu:", topo.cores.size());
  for (int c : topo.cores) printf(" %d", c);
  printf("  (first PU of each allowed core)\n");
}

void printParams() {
  printf("\n== Parameters (environment; default, current value, help)\n");
  for (const ParamInfo& p : attnccl::allParams()) {
    std::string current = p.type == ParamType::Int ? std::to_string(attnccl::paramInt(p.id)) : attnccl::paramString(p.id);
    printf("  %s\n", p.name);
    printf("      default '%s', current '%s'%s\n", p.defaultValue, current.c_str(),
           attnccl::paramIsSet(p.id) ? " (set in the environment)" : "");
    printf("      %s\n", p.help);
  }
}

int usage(const char* prog, int status) {
  fprintf(status ? stderr : stdout,
          "usage: %s [--env-markdown]\n"
          "  no flag         version, build options, transports, devices, topology, parameters\n"
          "  --env-markdown  the ATTNCCL_* parameter table in Markdown (README.md carries it)\n",
          prog);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2) return usage(argv[0], 2);
  if (argc == 2) {
    if (strcmp(argv[1], "--env-markdown") == 0) {
      printEnvMarkdown();
      return 0;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) return usage(argv[0], 0);
    return usage(argv[0], 2);
  }
  attnccl::Topology topo;
  bool topoOk = attnccl::Topology::detect(&topo) == attncclSuccess;
  printBuild();
  printTransports();
  printDevices(topo, topoOk);
  printTopology(topo, topoOk);
  printParams();
  return 0;
}
