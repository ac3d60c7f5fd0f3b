// A group view: some of a communicator's ranks seen as ranks 0..n-1 of an engine of their own,
// whose messages travel over the communicator's transports (transport/subset.h). The hybrid
// algorithm runs its two levels on two of them: the group (head all-to-all) and the ring across
// groups. A view is not a communicator: it has no bootstrap, no configuration, no pool and no
// transport of its own, only what a schedule or an exchange needs to run (an engine, this
// rank's index, the parent's pool, a scratch arena).
//
// Why views and not a split of the communicator: a split rendezvouses and opens new connections
// inside the parent's call. With UCX 1.13 over tcp, a peer killed while an endpoint is still in
// its connection handshake can make UCX abort the survivor (tcp_iface.c: "ep->conn_state !=
// UCT_TCP_EP_CONN_STATE_CLOSED"), which the chaos test caught for hybrid calls. A view needs no
// message at all to exist, so a peer that dies cannot catch it half-made.
//
// Its engine is configured as the parent's (timeout, checksums, liveness checks, spinning or
// sleeping waits) and watches two abort flags: the view's own, which the attention state raises
// when the parent is aborted or fails (AttnCommState::onAbort), and the parent's, so that an
// attncclCommAbort ends a wait inside the view even before that. It counts its traffic in its
// own block (TrafficFold adds it to the parent's counters); loads from an shm peer's memory
// count in that peer's counters, as in the parent.
//
// Lifetime: owned by the parent's attention state, which the communicator destroys after it
// cancelled its transports and before it frees its pool and transports (attncclComm teardown).
// Destroying a view cancels what is pending on the parent's transports (see ~GroupView).
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <vector>

#include "attn/executor.h"
#include "comm/comm.h"
#include "transport/engine.h"
#include "transport/subset.h"

namespace attnccl {
namespace attn {

class GroupView {
 public:
  // Checks that a view over `members` (parent ranks, in the view's rank order, this rank among
  // them) can be made: every other member has a transport in the parent. Sends nothing.
  static attncclResult_t check(attncclComm* parent, const std::vector<int>& members);
  // Makes the view (check() first). Sends nothing, connects nothing.
  static attncclResult_t create(attncclComm* parent, const std::vector<int>& members, std::unique_ptr<GroupView>* out);
  // Cancels every operation pending on the parent's transports (not only the view's): ops that a
  // failed or aborted wait of the view abandoned may still be posted there, pointing into this
  // view's engine, so they must end before the engine frees them.
  ~GroupView();
  GroupView(const GroupView&) = delete;
  GroupView& operator=(const GroupView&) = delete;

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(members_.size()); }
  // The parent rank of view rank k.
  int parentRank(int k) const { return members_[k]; }
  Engine& engine() { return engine_; }
  ThreadPool& pool() { return *pool_; }
  Arena& arena() { return arena_; }
  // Where a schedule runs on this view (the executor's context).
  ExecContext context() { return ExecContext{&engine_, rank_, pool_, &arena_}; }
  // Ends the view's current and future waits (attncclInvalidUsage). Only flags: safe from
  // another thread while the view's owner waits.
  void abort() { aborted_.store(true, std::memory_order_release); }
  bool aborted() const { return aborted_.load(std::memory_order_acquire); }

 private:
  GroupView(attncclComm* parent, std::vector<int> members);

  std::vector<int> members_;
  int rank_ = 0;
  ThreadPool* pool_ = nullptr;
  std::atomic<bool> aborted_{false};
  // One view per parent transport that serves a member; declared before the engine, which
  // points to them, so they outlive it.
  std::vector<std::unique_ptr<SubsetTransport>> transports_;
  Engine engine_;
  Arena arena_;
};

// Adds the traffic that views count during its lifetime (a call) to a parent's counters, so
// attncclCommGetStats of the parent sees every byte the call moved.
class TrafficFold {
 public:
  TrafficFold(StatsBlock& parent, std::vector<GroupView*> views);
  ~TrafficFold();
  TrafficFold(const TrafficFold&) = delete;
  TrafficFold& operator=(const TrafficFold&) = delete;

 private:
  StatsBlock& parent_;
  std::vector<GroupView*> views_;
  std::vector<std::array<uint64_t, 4>> start_;
};

}  // namespace attn
}  // namespace attnccl
