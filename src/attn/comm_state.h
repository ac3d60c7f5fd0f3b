// Per-communicator state of the attention collectives: the scratch arena that holds received
// items and partial results (library shared memory, so shm peers pull from it in place), reused
// across calls and grown on demand, and the sub-communicators of the hybrid algorithm. It is the
// communicator's extension (comm/comm.h): made here on first use, destroyed by the communicator.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <memory>
#include <mutex>
#include <utility>

#include "attn/tune/cost_model.h"
#include "attnccl.h"
#include "comm/comm.h"
#include "transport/shm_region.h"

namespace attnccl {
namespace attn {

class Arena {
 public:
  ~Arena();
  // A buffer of at least `bytes` (contents undefined); valid until the next ensure().
  attncclResult_t ensure(size_t bytes, char** out);

 private:
  Region region_;
};

struct AttnCommState final : CommExtension {
  Arena arena;
  // The automatic choice's calibrated model (collective on first use) and its past decisions.
  bool modelReady = false;
  ClusterModel model;
  std::map<std::string, attncclAlgo_t> decisions;
  // Hybrid: (group size) -> (communicator inside the group, communicator across groups).
  // hybridMutex guards the map against abortSubComms from another thread.
  std::map<int, std::pair<attncclComm_t, attncclComm_t>> hybridComms;
  std::mutex hybridMutex;
  // attncclCommAbort or a failure of the parent: ends the sub-communicators' waits without
  // freeing them (their peers learn it from the parent's transports, which they borrow); the
  // parent's teardown destroys them.
  void abortSubComms();
  void onAbort() override { abortSubComms(); }
  ~AttnCommState() override;
};

// The communicator's attention state, created on first use.
AttnCommState& attnState(attncclComm* comm);

}  // namespace attn
}  // namespace attnccl
