// How many cores a CFS bandwidth quota (cgroups: `docker --cpus`, Kubernetes CPU limits) lets
// this process use. The quota limits CPU time, not which CPUs, so hwloc's allowed cpuset still
// lists every core of the host; sizing thread pools and judging oversubscription by that count
// would run 64 threads on a 2-CPU container. Topology::detect caps its core list with this.
#pragma once

#include <string>

namespace attnccl {

// ceil(quota / period) from cgroup v2's cpu.max ("max 100000", "150000 100000"); 0: no quota or
// unreadable text.
int quotaCoresV2(const std::string& cpuMax);
// The same from cgroup v1's cpu.cfs_quota_us ("-1" = none) and cpu.cfs_period_us.
int quotaCoresV1(const std::string& quotaUs, const std::string& periodUs);
// This process's quota in cores (the cgroup of /proc/self/cgroup, then the container's root
// mount; v2, then v1), 0 when none applies.
int processQuotaCores();

}  // namespace attnccl
