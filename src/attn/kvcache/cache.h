// The state of one rank's part of a sharded KV cache (include/attnccl.h, "inference").
//
// Memory: the shard is one library shared-memory region (transport/shm_region.h, the memory of
// attncclMemAlloc), registered, so the shm transport could read it in place; laid out
// head-major, K then V, each [numHeadsKV][shardCapacity][headDim] in the cache's dtype. Head-major
// because a decode step streams each head's keys once: the fp32 tiles then read the shard where
// it lies, with no staging copy (attn/cpu/staging.cc takes a one-head fp32 block as it is).
//
// The public handle holds a shared_ptr to this state; every queued call (a non-blocking
// communicator runs them later on its worker) holds one too, so destroying the handle never frees
// memory a queued call still uses. `length` is the length the caller's calls have made so far
// (updated when a call is accepted); the data behind it is written in call order by the
// communicator's door (commRun).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "attn/comm_state.h"
#include "attn/kvcache/placement.h"
#include "attnccl.h"
#include "comm/comm.h"
#include "transport/shm_region.h"

namespace attnccl {
namespace attn {

struct KvShape {
  attncclDataType_t dtype = attncclFloat32;
  int numHeadsQ = 0, numHeadsKV = 0, headDim = 0;
  int64_t windowLeft = -1;
  float scale = 0.f;
  int group() const { return numHeadsQ / numHeadsKV; }
};

struct KvState {
  attncclComm* comm = nullptr;
  // Raised when the communicator is aborted, fails or is destroyed (AttnCommState): from then on
  // `comm` may be gone and the cache is only good for Length and Destroy.
  std::shared_ptr<std::atomic<bool>> commGone;
  KvShape shape;
  KvPlacement place;
  uint64_t descHash = 0;  // the resolved descriptor and nranks; the same on every rank
  int rank = 0;
  int64_t shardCapacity = 0;
  Region shard;  // K then V, head-major (see above)
  char* k = nullptr;
  char* v = nullptr;
  std::vector<int64_t> pos;  // global position of each slot (fixed by the placement)
  std::vector<int64_t> doc;  // all 0: a cache is one document
  int64_t length = 0;
  // The combine's partials: this rank's message and the P received ones, then the merged fp32
  // result (library memory, so shm peers pull the messages in place).
  Arena partials;
  Arena headSplit;  // the pieces of the combine by heads (attend.cc)

  ~KvState();
  size_t elemBytes() const;
  // Start of head h's slot s in K (or V).
  char* kAt(int h, int64_t s) const;
  char* vAt(int h, int64_t s) const;
};

// Copies the tokens of positions [first, first + n) that this rank owns into its shard.
void kvStore(KvState& s, const void* k, const void* v, int64_t first, int64_t n);

// Test hook: the fewest keys per split-K piece of a partial (0: the default, 2048), so a test
// can cut a short shard into pieces.
void kvSetMinPieceKeysForTest(int64_t keys);
// Test hook: the combine, whatever the sizes say: 0 = by the sizes (attn/kvcache/cost.h),
// 1 = the all-gather of partials, 2 = reduce-scatter by heads + all-gather.
void kvSetCombineForTest(int mode);

// The collective attend of the n queries at positions [length-n, length) (attend.cc). The length
// is the one of the call (a non-blocking caller may have appended more since).
attncclResult_t kvAttend(KvState& s, int64_t length, const void* q, int64_t n, void* out, float* lse);

}  // namespace attn
}  // namespace attnccl

struct attncclKvCache {
  static constexpr uint64_t kMagic = 0xa77cac5ea77cac5eull;
  uint64_t magic = kMagic;
  std::shared_ptr<attnccl::attn::KvState> state;
};
