// What a rank knows about its node, through hwloc: the cores this process may run on, NUMA
// nodes, and how the node's ranks share the cores. The compute pool takes its size and its core
// binding from here: ranks with the same allowed cpuset divide its cores evenly; threads are
// bound only when the ranks do not oversubscribe the cores.
#pragma once

#include <string>
#include <vector>

#include "attnccl.h"

namespace attnccl {

struct Topology {
  std::vector<int> cores;  // per allowed core: OS index of its first PU
  int numaNodes = 1;
  int packages = 1;
  std::string cpusetText;  // allowed cpuset, as hwloc prints it (equal text <=> same cpuset)
  std::string summary;     // one line for logs and attnccl-info

  static attncclResult_t detect(Topology* out);
};

// How many compute threads a rank gets and which cores they bind to (empty: no binding), given
// that `sharers` ranks share this rank's cpuset and this rank is the `index`-th of them.
void planThreads(const Topology& topo, int sharers, int index, int requested, int* threads, std::vector<int>* cpus);

}  // namespace attnccl
