#include "harness/memcpy_bw.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "harness/sync.h"

namespace perf {

std::vector<double> memcpyBandwidth(const std::vector<int64_t>& sizes, int minIters, double minSeconds) {
  std::vector<double> out(sizes.size(), 0.0);
  if (sizes.empty()) return out;
  size_t maxBytes = static_cast<size_t>(*std::max_element(sizes.begin(), sizes.end()));
  size_t alloc = (maxBytes + 4095) / 4096 * 4096;
  char* src = static_cast<char*>(aligned_alloc(4096, alloc));
  char* dst = static_cast<char*>(aligned_alloc(4096, alloc));
  if (!src || !dst) {
    free(src);
    free(dst);
    return out;
  }
  memset(src, 1, alloc);
  memset(dst, 2, alloc);
  for (size_t k = 0; k < sizes.size(); ++k) {
    size_t n = static_cast<size_t>(sizes[k]);
    memcpy(dst, src, n);  // warm-up
    // Small copies run in batches so reading the clock does not weigh on them.
    const int batch = static_cast<int>(std::max<size_t>(1, (size_t(1) << 20) / std::max<size_t>(n, 1)));
    int64_t iters = 0;
    double t0 = wallSeconds(), t1 = t0;
    do {
      for (int b = 0; b < batch; ++b) {
        memcpy(dst, src, n);
        // Keep the compiler from treating repeated copies as one.
        __asm__ __volatile__("" : : "r"(dst) : "memory");
      }
      iters += batch;
      t1 = wallSeconds();
    } while (iters < minIters || t1 - t0 < minSeconds);
    out[k] = static_cast<double>(n) * static_cast<double>(iters) / (t1 - t0) / 1e9;
  }
  free(src);
  free(dst);
  return out;
}

}  // namespace perf
