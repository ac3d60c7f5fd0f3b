// The multi-rank GPU executor's program: one rank's compiled schedule (attn/plan.h) turned into
// the exact sequence of stream operations the CUDA backend enqueues (attn/cuda/dev_executor.cc)
// — tiles, merges, copies into peers' windows, flag signals and waits, event joins between the
// rank's two streams. A program is plain data: the CPU interpreter of the tests runs the
// programs of all ranks in random interleavings with the CPU tiles and a happens-before race
// checker, which is how the synchronisation below is verified without a GPU.
//
// Per round k (flag values are sequence numbers seq(k) = base + k + 1, fresh in every call):
//
//   compute: wait copy-end(k-1) | signal kReady(seq k) to this round's senders | record start(k)
//            | tiles of round k | wait kData(seq k) from this round's senders | merges
//   copy:    wait start(k) | per receiver: wait its kReady(seq k), copy items, signal kData(seq k)
//            | record copy-end(k)
//
// so a round's transfers overlap its tiles; a sender writes a slot only after the receiver has
// finished every round that could still read it (compilePlan never gives a slot to two items
// whose lifetimes meet); a receiver reads only after the sender's data flag; and the copy
// stream sends nothing a task of an earlier round still writes.
//
// Window of every rank (device memory, mapped by its peers): [arena: receive slots and
// accumulators of others' tokens, the plan's offsets, same size on every rank][own fp32
// accumulators, Delta]. Peers write only into the arena.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "attn/plan.h"
#include "attn/problem.h"
#include "attn/schedule.h"

namespace attnccl {
namespace attn {
namespace gpu {

// Where an operand lives. Offsets are in bytes.
// kUserOut: the forward's output (backward: its input O); kUserLse likewise.
enum class Space : uint8_t {
  kUserQ, kUserK, kUserV, kUserDout, kUserOut, kUserLse, kUserDq, kUserDk, kUserDv, kOwn, kPeer
};
const char* spaceName(Space s);

struct Ref {
  Space space = Space::kOwn;
  int peer = -1;  // kPeer: whose window
  size_t offset = 0;
};

// Token metadata of tile rows: rows [begin, end) of rank `origin`'s tokens in the problem's
// layout, or, with table >= 0, of the program's own token table (Ulysses' whole sequence, the
// hybrid's group unions).
struct Rows {
  int origin = 0;
  int64_t begin = 0, end = 0;
  int table = -1;
  int64_t size() const { return end - begin; }
};

// Tile operands carry heads.numQ (Q-like) or heads.numKV (K/V-like) heads per row: row strides
// are those times the head dim; LSE/Delta operands carry their own stride (ldlse).
struct FwdTileOp {
  Ref q;
  Rows qRows;
  Ref k, v;
  Rows kRows;
  Ref o, lse;  // merge: fp32 accumulators; final: o in the storage dtype, lse fp32
  int64_t ldlse = 0;
  HeadMap heads;
  bool final = false;
};
struct BwdTileOp {
  Ref q, dout, lse, delta;
  int64_t ldlse = 0;
  Rows qRows;
  Ref k, v;
  Rows kRows;
  Ref dq, dk, dv;  // fp32 (+=)
  HeadMap heads;
};
struct ClearOutOp {  // o = 0 [rows][heads][D], lse = -inf [heads][ldlse] (rows)
  Ref o, lse;
  int64_t rows = 0, ldlse = 0;
  int heads = 0;
};
struct ZeroOp {
  Ref dst;
  size_t bytes = 0;
};
struct MergeOutOp {  // (o, lse) <- merge with (oB, lseB); rows x heads
  Ref o, lse;
  int64_t ldlse = 0;
  Ref oB, lseB;
  int64_t ldlseB = 0;
  int64_t rows = 0;
  int heads = 0;
};
struct AddOp {  // dst += src (or dst = src), fp32: height rows of width floats, pitches in floats
  Ref dst, src;
  int64_t width = 0, height = 1, dpitch = 0, spitch = 0;
  bool copy = false;
};
struct DeltaOp {  // delta [heads][rows] = rowsum(dout * out), [rows][heads][D] in the storage dtype
  Ref out, dout, delta;
  int64_t rows = 0;
  int heads = 0;
};
struct StoreOp {  // fp32 rows (contiguous, `width` elements) -> user tensor in the storage dtype
  Ref src, dst;
  int64_t rows = 0, width = 0;
};
struct CopyOp {  // 2-D byte copy (height rows of width bytes); to a peer's window or local
  Ref dst, src;
  size_t width = 0, height = 1, dpitch = 0, spitch = 0;
};
struct SignalOp {  // peer's flag [kind][this rank] = base + value
  int peer = 0;
  int kind = 0;  // cuda::FlagKind: 0 data, 1 ready
  uint64_t value = 0;
};
struct WaitFlagOp {  // until this rank's flag [kind][from] >= base + value
  int from = 0;
  int kind = 0;
  uint64_t value = 0;
};
struct RecordOp {
  int event = 0;
};
struct WaitEventOp {
  int event = 0;
};

using OpBody = std::variant<FwdTileOp, BwdTileOp, ClearOutOp, ZeroOp, MergeOutOp, AddOp, DeltaOp, StoreOp, CopyOp,
                            SignalOp, WaitFlagOp, RecordOp, WaitEventOp>;

enum StreamId : uint8_t { kComputeStream = 0, kCopyStream = 1 };

struct DevOp {
  uint8_t stream = kComputeStream;
  OpBody body;
};

struct DevProgram {
  bool backward = false;
  std::vector<DevOp> ops;  // in enqueue order
  std::vector<RankTokens> tables;  // token tables of Rows::table
  int numEvents = 0;
  uint64_t numSequences = 0;  // flag values used: base + 1 .. base + numSequences
  size_t arenaBytes = 0;      // common arena size (offset of the own accumulators)
  size_t windowBytes = 0;     // data window every rank needs (same on all ranks)
  // Traffic of one call (attncclCommGetStats).
  uint64_t bytesSent = 0, bytesRecv = 0, messagesSent = 0, messagesRecv = 0;
};

// Builds rank `rank`'s program; `plans` holds compilePlan(p, s, r) of every rank r (a sender
// needs its receivers' slot offsets).
DevProgram buildProgram(const Problem& p, const Schedule& s, const std::vector<Plan>& plans, int rank);

// Moves a program into a larger one (the hybrid's ring runs inside its head exchange): the
// caller's tensors become regions of the own window, the window's start moves to `base`, peers
// are renamed, flag values and events shift, and rank token rows become rows of token tables
// (table = tableBase + origin).
struct Embedding {
  size_t userRegion[9] = {};  // own-window offsets standing for kUserQ .. kUserDv (Space order)
  size_t base = 0;
  std::vector<int> peers;  // program peer -> rank
  uint64_t valueShift = 0;
  int eventShift = 0;
  int tableBase = 0;
};
void embed(const Embedding& e, DevProgram* p);

// Layout of the own region of a window (after the arena), in bytes from the window's start.
struct OwnLayout {
  size_t o = 0, lse = 0;           // forward: O [T][Hq][D] f32, LSE [Hq][T] f32
  size_t delta = 0, dq = 0, dk = 0, dv = 0;  // backward
  size_t end = 0;
};
OwnLayout ownLayout(const Problem& p, bool backward, int rank, size_t arenaBytes);

std::string describe(const DevOp& op);

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
