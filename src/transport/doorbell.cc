#include "transport/doorbell.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

namespace attnccl {

// Shared (not FUTEX_PRIVATE) operations: the word lives in a MAP_SHARED segment that other
// processes, and other mappings in this process, reach at different addresses.
void Doorbell::ring() {
  seq.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers.load(std::memory_order_seq_cst) > 0) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&seq), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
}

void Doorbell::sleep(uint32_t seen, int64_t timeoutUs) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeoutUs / 1000000);
  ts.tv_nsec = static_cast<long>((timeoutUs % 1000000) * 1000);
  // EAGAIN (rung since arm), EINTR and ETIMEDOUT all mean: go and look.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&seq), FUTEX_WAIT, seen, &ts, nullptr, 0);
  sleepers.fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace attnccl
