// A CPU interpreter of the multi-rank GPU executor's programs (src/attn/program/dev_program.h):
// every rank's two streams are queues, run in a seeded random interleaving; tiles and merges
// use the CPU tiles (attn/tile.h), copies are memcpy into the peers' windows (host memory
// standing in for device memory), flags and events block exactly as stream waits do.
//
// Beyond results, it checks the synchronisation itself: every operation carries a vector clock
// (one component per rank and stream; event waits and flag waits join the clock of the record
// or signal they wait for), and two accesses to overlapping bytes, one of them a write, that are
// not ordered by happens-before are reported as a race, whatever order this run chose. A queue
// head that can never run is reported as a deadlock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attn/program/dev_program.h"
#include "attn/problem.h"

namespace attnccl_test {

// The caller's tensors of one rank (host memory in the storage dtype; lse fp32; any may be
// null where the call has no such tensor).
struct InterpTensors {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* dout = nullptr;
  void* out = nullptr;  // forward: written; backward: read
  float* lse = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
};

class DevInterpreter {
 public:
  explicit DevInterpreter(int nranks);
  ~DevInterpreter();
  // Runs one call: programs[r] with tensors[r] on every rank. Flag values are offset by a base
  // that grows across calls, as on the GPU. Returns "" or the first problem found.
  std::string run(const attnccl::attn::Problem& p, const std::vector<attnccl::attn::gpu::DevProgram>& programs,
                  const std::vector<InterpTensors>& tensors, uint64_t seed);
  // Operations executed in the last run (for test sizing).
  size_t executed() const { return executed_; }

 private:
  struct Access;
  int nranks_;
  std::vector<std::vector<char>> windows_;  // per rank, kept across calls like device windows
  std::vector<uint64_t> flags_;             // [rank][kind][from]
  uint64_t base_ = 0;
  size_t executed_ = 0;
  // Vector clocks of the streams and every access so far: a later call races with an earlier
  // one exactly as on the GPU (calls of a rank are ordered only through its streams).
  std::vector<std::vector<uint64_t>> clocks_;
  std::vector<Access> history_;
};

}  // namespace attnccl_test
