// Head all-to-all: the exchange that turns sequence-sharded tensors into head-sharded ones and
// back (DeepSpeed-Ulysses' all-to-all), between the G members of a group (ranks 0..G-1 of an
// engine: a communicator's, or the group view of a hybrid group, attn/group_view.h).
//
// Member m holds the rows of its own tokens with all H heads of a tensor (the "sequence side").
// Seq->head gives member m every token of the group, in global position order, for the heads
// of its range (the "head side"); head->seq is the inverse; the reduce variant of head->seq adds
// the contributions of every member holding a head (K/V heads replicated under GQA):
//
//   sequence side (G = 3, H = 3)          head side
//   m0: t0 t3    [h0 h1 h2]               m0: t0..t5 [h0]     rows in position order:
//   m1: t1 t4    [h0 h1 h2]      <->      m1: t0..t5 [h1]     row = HeadGroup::rows[m][t]
//   m2: t2 t5    [h0 h1 h2]               m2: t0..t5 [h2]
//
// One exchange moves several tensors ("fields", e.g. Q, K and V with their own head ranges) in
// one message per ordered pair of members: the sender packs the rows the receiver needs, the
// receiver unpacks them into place; a member's own part is copied directly. Empty messages (a
// member with no tokens, or no heads in this exchange) are not sent. Ranges may differ per
// exchange, which is how the Ulysses pipeline moves one head group at a time.
//
// Message between sender s and receiver r, for each field in order (fields whose element chunk
// is a multiple of 4 bytes first, so fp32 parts stay aligned for the reduce):
//   seq->head: tokens of s (in order) x heads of ranges[r]
//   head->seq: tokens of r (in order) x heads of ranges[s]
//   tokens outer, heads inner ([t][h][chunk]); heads outer for headMajor fields ([h][t][chunk]).
// So a message carries T_seq * |range| * chunk bytes per field, nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "attn/desc.h"
#include "attn/tensors.h"
#include "core/thread_pool.h"
#include "transport/engine.h"

namespace attnccl {
namespace attn {

struct HeadRange {
  int first = 0;
  int count = 0;
  int end() const { return first + count; }
};

// Where element (token t, head h) of a tensor lives: `chunk` contiguous bytes at
//   base + t * tokenStride + (h - headBase) * headStride.
//   [T][H][D] rows:  tokenStride = H*D*es, headStride = chunk = D*es
//   [H][ld] (LSE):   tokenStride = chunk = 4, headStride = 4*ld
struct HeadView {
  char* base = nullptr;
  int64_t tokenStride = 0;
  int64_t headStride = 0;
  int64_t chunk = 0;
  int headBase = 0;
};

// [T][numHeads][headDim] with elements of elemSize bytes; its first head is global head headBase.
HeadView rowView(const void* base, int numHeads, int headBase, int headDim, size_t elemSize);
// fp32 [numHeads][ld] (LSE, Delta); its first head is global head headBase.
HeadView headMajorView(const void* base, int64_t ld, int headBase);

// The members of an exchange and their tokens: member m's token t is row rows[m][t] of the head
// side (increasing in t; all members' rows together are 0..total-1, each once). pos/doc: global
// position and document of each head-side row (for the attention that runs there).
struct HeadGroup {
  int self = 0;
  int64_t total = 0;
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> pos, doc;
  int size() const { return static_cast<int>(rows.size()); }
  int64_t tokens(int m) const { return static_cast<int64_t>(rows[m].size()); }
};

// The ranks of a communicator under the descriptor's layout: rows are global positions.
HeadGroup layoutGroup(const AttnShape& s, int nranks, int self);
// Members holding the given position lists (each increasing, disjoint): rows follow the sorted
// union of all of them.
HeadGroup unionGroup(const AttnShape& s, const std::vector<std::vector<int64_t>>& memberPositions, int self);

enum class HeadDir { kSeqToHead, kHeadToSeq };

// One tensor of an exchange. seq: this member's tokens with every head of the tensor. head: the
// head side (rows 0..total-1) for this member's heads ranges[self]. ranges[m]: the heads member
// m holds in this exchange (members may overlap; empty ranges are fine).
// reduce (head->seq, fp32 chunks only): contributions are added into seq instead of stored, so a
// head held by several members arrives as the sum (the caller zeroes seq first).
struct HeadField {
  HeadView seq, head;
  std::vector<HeadRange> ranges;
  bool reduce = false;
  bool headMajor = false;  // message order heads-outer (for [H][T] tensors)
};

// A [T][H][D] tensor: sequence side with seqHeads heads, head side holding heads `mine`.
HeadField rowsField(const void* seq, int seqHeads, void* head, HeadRange mine, int headDim, size_t elemSize,
                    std::vector<HeadRange> ranges);
// The same for a caller's strided view (attn/tensors.h: element strides, 0 = dense).
HeadField rowsField(const void* seq, RowStrides seqStrides, int seqHeads, void* head, HeadRange mine, int headDim,
                    size_t elemSize, std::vector<HeadRange> ranges);
// An fp32 [H][T] tensor (LSE, Delta): sequence side [H][seqTokens], head side [mine][total].
HeadField lseField(const float* seq, int64_t seqTokens, float* head, int64_t total, HeadRange mine,
                   std::vector<HeadRange> ranges);

class HeadExchange {
 public:
  HeadExchange(const HeadGroup& g, HeadDir dir, std::vector<HeadField> fields);
  ~HeadExchange();
  HeadExchange(const HeadExchange&) = delete;
  HeadExchange& operator=(const HeadExchange&) = delete;

  // Bytes of packed sends and of received messages this member needs (64-byte aligned per peer).
  size_t sendBytes() const { return sendTotal_; }
  size_t recvBytes() const { return recvTotal_; }
  // Payload between this member and another (what attncclCommGetStats counts).
  size_t bytesTo(int peer) const { return sendSize_[peer]; }
  size_t bytesFrom(int peer) const { return recvSize_[peer]; }

  // Posts receives into recvBuf, packs the sends into sendBuf and posts them on the engine (member
  // m = engine rank m) with `tag`, then copies this member's own part. `between` runs between
  // copy items on the calling thread (transport progress).
  attncclResult_t post(Engine& e, uint32_t tag, char* sendBuf, char* recvBuf, ThreadPool& pool,
                       const std::function<void()>& between);
  // Waits for the posted messages and unpacks (stores or adds) what arrived. Idempotent.
  attncclResult_t finish(ThreadPool& pool);

 private:
  // Message of the ordered pair (sender, receiver) as a view per field.
  HeadView messageView(const HeadField& f, char* base, int64_t tokens, HeadRange heads) const;
  int seqMember(int sender, int receiver) const;
  int headMember(int sender, int receiver) const;

  const HeadGroup& g_;
  HeadDir dir_;
  std::vector<HeadField> fields_;
  std::vector<size_t> sendSize_, recvSize_, sendOff_, recvOff_;
  size_t sendTotal_ = 0, recvTotal_ = 0;
  char* recvBuf_ = nullptr;
  Engine* engine_ = nullptr;
  std::unique_ptr<OpArray> ops_;
  bool pending_ = false;
};

// Carves one arena buffer into aligned pieces: take() offsets first, then resolve at the base.
class ScratchLayout {
 public:
  size_t take(size_t bytes) {
    size_t at = total_;
    total_ += (bytes + 63) / 64 * 64;
    return at;
  }
  size_t total() const { return total_; }

 private:
  size_t total_ = 0;
};

}  // namespace attn
}  // namespace attnccl
