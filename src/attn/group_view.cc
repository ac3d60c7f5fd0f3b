#include "attn/group_view.h"

#include <algorithm>
#include <utility>

#include "core/result.h"
#include "transport/shm.h"

namespace attnccl {
namespace attn {

attncclResult_t GroupView::check(attncclComm* parent, const std::vector<int>& members) {
  if (std::find(members.begin(), members.end(), parent->rank) == members.end()) {
    return fail(attncclInternalError, "group view: rank %d is not among its members", parent->rank);
  }
  for (size_t k = 0; k < members.size(); ++k) {
    const int r = members[k];
    if (std::find(members.begin(), members.begin() + k, r) != members.begin() + k) {
      return fail(attncclInternalError, "group view: rank %d is a member twice", r);
    }
    if (r < 0 || r >= parent->nranks) {
      return fail(attncclInternalError, "group view: member %d is not a rank of the communicator (%d ranks)", r,
                  parent->nranks);
    }
    if (r != parent->rank && parent->engine.route(r) == nullptr) {
      return fail(attncclInternalError, "group view: no transport to rank %d", r);
    }
  }
  return attncclSuccess;
}

attncclResult_t GroupView::create(attncclComm* parent, const std::vector<int>& members,
                                  std::unique_ptr<GroupView>* out) {
  out->reset();
  ATTN_CHECK(check(parent, members));
  out->reset(new GroupView(parent, members));
  return attncclSuccess;
}

GroupView::GroupView(attncclComm* parent, std::vector<int> members)
    : members_(std::move(members)), pool_(parent->pool.get()) {
  const int n = size();
  rank_ = static_cast<int>(std::find(members_.begin(), members_.end(), parent->rank) - members_.begin());
  const Engine& pe = parent->engine;
  // Private counters (nullptr): TrafficFold adds them to the parent's after each call.
  engine_.configure(rank_, n, pe.timeoutMs(), nullptr, &aborted_);
  engine_.setParentAbortFlag(&parent->aborted);
  engine_.setChecksums(pe.checksums());
  engine_.setLivenessInterval(pe.livenessInterval());
  engine_.setSpinMicros(pe.spinMicros());
  std::vector<Transport*> served;  // parent transport of transports_[j]
  for (int k = 0; k < n; ++k) {
    if (k == rank_) continue;
    Transport* t = pe.route(members_[k]);  // check() made sure there is one
    size_t j = std::find(served.begin(), served.end(), t) - served.begin();
    if (j == served.size()) {
      transports_.emplace_back(new SubsetTransport(t, members_));
      engine_.addTransport(transports_.back().get());
      served.push_back(t);
    }
    engine_.setRoute(k, transports_[j].get());
    // Loads from a peer's memory count in that peer's counters, as in the parent.
    if (parent->shm && t == parent->shm.get()) engine_.setPeerStats(k, parent->shm->peerStats(members_[k]));
  }
}

GroupView::~GroupView() { engine_.cancelAll(attncclInvalidUsage); }

namespace {

std::array<uint64_t, 4> read(StatsBlock& s) {
  return {s.bytesSent.load(), s.bytesRecv.load(), s.messagesSent.load(), s.messagesRecv.load()};
}

}  // namespace

TrafficFold::TrafficFold(StatsBlock& parent, std::vector<GroupView*> views)
    : parent_(parent), views_(std::move(views)) {
  for (GroupView* v : views_) start_.push_back(read(v->engine().stats()));
}

TrafficFold::~TrafficFold() {
  for (size_t k = 0; k < views_.size(); ++k) {
    std::array<uint64_t, 4> now = read(views_[k]->engine().stats());
    parent_.bytesSent.fetch_add(now[0] - start_[k][0]);
    parent_.bytesRecv.fetch_add(now[1] - start_[k][1]);
    parent_.messagesSent.fetch_add(now[2] - start_[k][2]);
    parent_.messagesRecv.fetch_add(now[3] - start_[k][3]);
  }
}

}  // namespace attn
}  // namespace attnccl
