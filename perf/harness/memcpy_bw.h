// The memcpy ceiling (docs/design.md, "Performance method"): what one thread's memcpy moves per second
// for a given size, measured in the same run as the tool's rows.
#pragma once

#include <cstdint>
#include <vector>

namespace perf {

// GB/s (1e9 bytes/s) of memcpy(dst, src, size) for every size, on the calling thread, with
// buffers touched beforehand and reused across repetitions (as the perf tools reuse theirs).
// Each size is repeated at least minIters times and for at least minSeconds.
std::vector<double> memcpyBandwidth(const std::vector<int64_t>& sizes, int minIters, double minSeconds = 0.02);

}  // namespace perf
