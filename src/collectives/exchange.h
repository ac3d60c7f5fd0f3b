// The shape every building-block collective reduces to on one rank: a set of messages to post to
// peers and a set to receive, all posted at once and then waited for. The transport picks the
// cheapest path per message (shm: in-place pull or CMA single copy; ucx: rendezvous RDMA), so
// posting everything together lets all peers' copies run at once.
#pragma once

#include <deque>
#include <vector>

#include "comm/comm.h"

namespace attnccl {

struct Transfer {
  int peer;
  void* buf;  // const for sends
  size_t bytes;
  bool pull = false;  // sends: ask the receiver to read buf itself (Op::pull)
};

// Posts all receives, then all sends (peers in the order given), and waits for all of them.
attncclResult_t exchange(attncclComm* comm, uint32_t tag, const std::vector<Transfer>& sends,
                         const std::vector<Transfer>& recvs);

// The sends of exchanges whose receives were waited for but whose sends were not (yet): a
// collective that never writes its send buffers again until it returns need not wait for every
// peer to have pulled them before its next step, only before it returns (waitSends).
struct PendingSends {
  std::deque<OpArray> ops;  // a deque: OpArray neither moves nor copies
};

// As exchange(), but waits for the receives only; the sends' ops join `pending`.
attncclResult_t exchangeDeferSends(attncclComm* comm, uint32_t tag, const std::vector<Transfer>& sends,
                                   const std::vector<Transfer>& recvs, PendingSends* pending);
// As exchange(), but copies `bytes` from `from` to `to` (regions that must not overlap each other
// nor any receive) while the messages are in flight: in pieces, with a progress call between
// two, so a transport that needs this rank to push its sends (shm's staged ring) is not starved.
// For a rank's own share of a collective that would otherwise be copied after the wait.
attncclResult_t exchangeWhileCopying(attncclComm* comm, uint32_t tag, const std::vector<Transfer>& sends,
                                     const std::vector<Transfer>& recvs, void* to, const void* from, size_t bytes);
// Waits for every send in `pending` and empties it.
attncclResult_t waitSends(attncclComm* comm, PendingSends* pending);

// Peer order for rank r over a world of n: r+1, r+2, ... (mod n) so that no rank is the first
// target of everybody at once.
std::vector<int> peerOrder(int rank, int n);

// Runs a collective: on its own, or recorded when a group is open.
attncclResult_t runCollective(attncclComm* comm, const char* fn, std::function<attncclResult_t()> work);

}  // namespace attnccl
