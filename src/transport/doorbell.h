// A doorbell lets a rank that waits for its peers sleep instead of spinning. It lives in memory
// the peers can write (the shm segment header): a waiter reads the ring count, announces itself,
// checks once more for completions and sleeps on the count with a futex; a peer that published
// something this rank may be waiting for (a control message, a freed ring slot, a chunk) bumps
// the count and wakes the sleepers. The wake-up is lost neither way round:
//
//   waiter                                   peer
//   seen = seq                               publish (release)
//   sleepers += 1                            seq += 1
//   progress; anything new? -> return        if sleepers > 0: futex_wake(seq)
//   futex_wait(seq, seen, timeout)           (returns at once if seq != seen)
//   sleepers -= 1
//
// If the peer's increment came before `seen` was read, the check after announcing sees the
// published data; if after, the futex finds seq != seen and does not sleep. Why it matters: a
// node whose ranks outnumber its cores (CI machines, CPU ranks as processes and threads) loses
// the cores to polling ranks that have nothing to do, sched_yield notwithstanding; measured on
// 2 cores, 4 ranks: see perf/RESULTS.md ("waiting ranks sleep").
#pragma once

#include <atomic>
#include <cstdint>

namespace attnccl {

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free,
              "a futex word is a plain 32-bit integer");

struct alignas(64) Doorbell {
  std::atomic<uint32_t> seq{0};       // futex word: bumped by every ring
  std::atomic<uint32_t> sleepers{0};  // waiters inside sleep()

  // Wakes every sleeper (cheap when nobody sleeps: one atomic add and one load).
  void ring();
  // The count to pass to sleep(); call before the last check for completions.
  uint32_t arm() {
    const uint32_t seen = seq.load(std::memory_order_seq_cst);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    return seen;
  }
  // Sleeps until rung after arm() returned `seen`, or for at most timeoutUs; then disarms.
  void sleep(uint32_t seen, int64_t timeoutUs);
  // Disarms without sleeping (the last check found something).
  void cancel() { sleepers.fetch_sub(1, std::memory_order_seq_cst); }
};

}  // namespace attnccl
