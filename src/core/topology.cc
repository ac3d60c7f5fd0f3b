#include "core/topology.h"

#include <hwloc.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "core/log.h"
#include "core/cpu_quota.h"
#include "core/params.h"
#include "core/result.h"

namespace attnccl {

attncclResult_t Topology::detect(Topology* out) {
  // hwloc's discovery costs milliseconds; one result per process is enough.
  static std::mutex m;
  static bool done = false;
  static Topology cached;
  static attncclResult_t cachedRes = attncclSuccess;
  std::lock_guard<std::mutex> lock(m);
  if (done) {
    *out = cached;
    return cachedRes;
  }
  done = true;
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0 || hwloc_topology_load(topo) != 0) {
    cachedRes = fail(attncclSystemError, "hwloc could not load the topology");
    return cachedRes;
  }
  hwloc_bitmap_t allowed = hwloc_bitmap_alloc();
  if (hwloc_get_cpubind(topo, allowed, HWLOC_CPUBIND_PROCESS) != 0) {
    hwloc_bitmap_copy(allowed, hwloc_topology_get_allowed_cpuset(topo));
  }
  int nCores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  for (int i = 0; i < nCores; ++i) {
    hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, i);
    hwloc_bitmap_t inter = hwloc_bitmap_alloc();
    hwloc_bitmap_and(inter, core->cpuset, allowed);
    int first = hwloc_bitmap_first(inter);
    if (first >= 0) cached.cores.push_back(first);
    hwloc_bitmap_free(inter);
  }
  if (cached.cores.empty()) {  // no core objects (some VMs): one per allowed PU
    int pu;
    hwloc_bitmap_foreach_begin(pu, allowed) { cached.cores.push_back(pu); }
    hwloc_bitmap_foreach_end();
  }
  // A CPU quota (cpu_quota.h) gives fewer cores' worth of time than the cpuset lists: size by it.
  const size_t cpusetCores = cached.cores.size();
  const int quota = processQuotaCores();
  if (quota > 0 && static_cast<size_t>(quota) < cached.cores.size()) cached.cores.resize(quota);
  cached.numaNodes = std::max(1, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE));
  cached.packages = std::max(1, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE));
  char* text = nullptr;
  hwloc_bitmap_list_asprintf(&text, allowed);
  cached.cpusetText = text ? text : "";
  free(text);
  char line[320];
  char quotaText[64] = "";
  if (cached.cores.size() < cpusetCores) {
    snprintf(quotaText, sizeof(quotaText), " (CPU quota: %zu of %zu)", cached.cores.size(), cpusetCores);
  }
  snprintf(line, sizeof(line), "%d package(s), %d NUMA node(s), %zu allowed core(s) of %d%s, cpus %s",
           cached.packages, cached.numaNodes, cached.cores.size(), nCores, quotaText, cached.cpusetText.c_str());
  cached.summary = line;
  hwloc_bitmap_free(allowed);
  hwloc_topology_destroy(topo);
  ATTN_INFO(kSubTopo, "topology: %s", cached.summary.c_str());
  *out = cached;
  return attncclSuccess;
}

void planThreads(const Topology& topo, int sharers, int index, int requested, int* threads, std::vector<int>* cpus) {
  int cores = static_cast<int>(topo.cores.size());
  if (cores < 1) cores = 1;
  if (sharers < 1) sharers = 1;
  int share = cores / sharers;
  int n = requested > 0 ? requested : std::max(1, share);
  *threads = n;
  cpus->clear();
  // Bind only when every rank sharing these cores gets its own cores.
  if (!paramInt(Param::BindThreads) || sharers * n > cores) return;
  int first = index * n;
  // Thread 0 is the caller (never rebound); workers 1..n-1 take the slice's later cores.
  for (int t = 1; t < n; ++t) cpus->push_back(topo.cores[first + t]);
}

}  // namespace attnccl
