// Whether another process on this node is still the one a peer started: the shm transport judges
// a local peer's liveness by it, and the UCX transport uses it for peers that share the node.
#pragma once

#include <cstdint>

namespace attnccl {

// Start time of a process (/proc/<pid>/stat field 22, in clock ticks since boot), 0 if it does
// not exist. With the pid it names one process: a pid reused later has another start time.
uint64_t processStartTime(int pid);
// True while the process exists and is not a zombie (and, if startTime != 0, is the same one).
bool processAlive(int pid, uint64_t startTime);

}  // namespace attnccl
