// Per-thread compute clock of the attention tiles: the seconds the calling thread has spent
// inside fwdTile/bwdTile (attn/tile.h) since it started. The perf tools read it before and after
// a collective to measure one rank's compute (their "balance" column: slowest / mean rank), for
// every algorithm alike, since every executor runs its tiles on the calling rank's thread.
// It includes the transfers the tiles' between-hook progresses meanwhile (on host shared memory
// the receiving core's copies), which is also what keeps a rank busy.
#pragma once

#include <chrono>

namespace attnccl {
namespace attn {

double tileSecondsThisThread();

// Adds its lifetime to the calling thread's tile clock (one per fwdTile/bwdTile call).
class TileClock {
 public:
  TileClock() : start_(std::chrono::steady_clock::now()) {}
  ~TileClock();
  TileClock(const TileClock&) = delete;
  TileClock& operator=(const TileClock&) = delete;

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace attn
}  // namespace attnccl
