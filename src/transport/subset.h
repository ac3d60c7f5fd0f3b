// A transport borrowed from a communicator by an engine over a subset of its ranks (the hybrid
// algorithm's group and ring views, attn/group_view.h). It owns nothing: peer k of the subset
// is rank toParent[k] of the parent, and every call goes to the parent's transport with that
// rank. So a subset opens no connection of its own: it is built without any message, and a
// peer that dies cannot catch it half-connected.
//
// Messages of the subset and of the parent share the parent's (peer, tag) streams. That is safe
// because they are used one after the other on one thread (the parent's call runs the subset's
// steps), each side posting in program order, and FIFO matching per (peer, tag) then pairs every
// message with the receive of the same step.
#pragma once

#include <vector>

#include "transport/transport.h"

namespace attnccl {

class SubsetTransport final : public Transport {
 public:
  SubsetTransport(Transport* parent, std::vector<int> toParent) : parent_(parent), toParent_(std::move(toParent)) {}

  const char* name() const override { return parent_->name(); }
  // The parent connected its peers at its own initialisation.
  attncclResult_t connect(const std::vector<PeerInfo>&, const std::vector<int>&) override { return attncclSuccess; }
  attncclResult_t isend(int peer, uint32_t tag, const void* buf, size_t bytes, Op* op) override {
    return parent_->isend(toParent_[peer], tag, buf, bytes, op);
  }
  attncclResult_t irecv(int peer, uint32_t tag, void* buf, size_t bytes, Op* op) override {
    return parent_->irecv(toParent_[peer], tag, buf, bytes, op);
  }
  attncclResult_t progress() override { return parent_->progress(); }
  attncclResult_t checkPeer(int peer) override { return parent_->checkPeer(toParent_[peer]); }
  // Called when the subset's engine is torn down: ops it abandoned (a failed or aborted wait) may
  // still be posted on the parent's transport and point into that engine, so they must end now.
  // This cancels whatever the parent's transports have pending too (replies still queued for
  // finished receives included), so subsets are torn down only in the parent's teardown, after
  // the parent cancelled its transports itself.
  void cancelAll(attncclResult_t why) override { parent_->cancelAll(why); }
  // A subset's failed wait leaves the parent failed too (its transports are the parent's).
  void quiesce(attncclResult_t why) override { parent_->quiesce(why); }
  TransportCaps caps(int peer) const override { return parent_->caps(toParent_[peer]); }
  Doorbell* doorbell() override { return parent_->doorbell(); }

 private:
  Transport* parent_;
  std::vector<int> toParent_;
};

}  // namespace attnccl
