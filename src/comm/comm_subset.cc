// Subset communicators: a communicator over some of a parent's ranks that moves its messages
// through the parent's transports (transport/subset.h) instead of bootstrapping and connecting
// its own. The hybrid algorithm runs its group and ring levels on two of them.
//
// Why not a split: a split rendezvouses and opens new connections inside the parent's call. With
// UCX 1.13 over tcp, a peer killed while an endpoint is still in its connection handshake can
// make UCX abort the survivor (tcp_iface.c: "ep->conn_state != UCT_TCP_EP_CONN_STATE_CLOSED"),
// which the chaos test caught for hybrid calls. A subset needs no message at all to exist.
#include <algorithm>
#include <memory>
#include <string>

#include "comm/async_worker.h"
#include "comm/comm.h"
#include "core/result.h"
#include "core/topology.h"
#include "transport/shm.h"
#include "transport/subset.h"

namespace attnccl {

attncclResult_t commCreateSubset(attncclComm* parent, const std::vector<int>& members, attncclComm_t* out) {
  *out = nullptr;
  auto me = std::find(members.begin(), members.end(), parent->rank);
  if (me == members.end()) {
    return fail(attncclInternalError, "subset communicator: rank %d is not among its members", parent->rank);
  }
  std::unique_ptr<attncclComm> c(new attncclComm());
  const int n = static_cast<int>(members.size());
  c->rank = static_cast<int>(me - members.begin());
  c->nranks = n;
  c->config = parent->config;
  c->config.blocking = true;
  c->config.cpuThreads = 1;  // compute runs on the parent's pool
  c->config.device = ATTNCCL_DEVICE_CPU;  // host messages only; device state stays the parent's
  uint64_t h = parent->commHash ^ 0x9e3779b97f4a7c15ull;
  for (int r : members) h = (h ^ static_cast<uint64_t>(r + 1)) * 0x100000001b3ull;
  c->commHash = h;
  c->topo.reset(new Topology(*parent->topo));
  const uint64_t myHost = parent->peers[parent->rank].hostHash;
  c->peers.resize(n);
  for (int k = 0; k < n; ++k) {
    c->peers[k] = parent->peers[members[k]];
    c->peers[k].rank = k;
    if (c->peers[k].hostHash == myHost) {
      if (k == c->rank) c->localRank = static_cast<int>(c->localRanks.size());
      c->localRanks.push_back(k);
    }
  }
  c->parentAborted = &parent->aborted;

  Engine& e = c->engine;
  const Engine& pe = parent->engine;
  e.configure(c->rank, n, parent->config.timeoutMs, nullptr, &c->aborted);
  e.setParentAbortFlag(&parent->aborted);
  e.setChecksums(pe.checksums());
  e.setLivenessInterval(pe.livenessInterval());
  e.setSpinMicros(pe.spinMicros());
  // One view per parent transport that serves a member.
  std::vector<std::pair<Transport*, Transport*>> views;  // parent transport -> its view
  for (int k = 0; k < n; ++k) {
    if (k == c->rank) continue;
    Transport* t = pe.route(members[k]);
    if (t == nullptr) return fail(attncclInternalError, "subset communicator: no transport to rank %d", members[k]);
    auto v = std::find_if(views.begin(), views.end(), [t](const std::pair<Transport*, Transport*>& x) { return x.first == t; });
    if (v == views.end()) {
      c->borrowed.emplace_back(new SubsetTransport(t, members));
      e.addTransport(c->borrowed.back().get());
      views.emplace_back(t, c->borrowed.back().get());
      v = views.end() - 1;
    }
    e.setRoute(k, v->second);
    // Loads from a peer's memory count in that peer's counters, as in the parent.
    if (parent->shm && t == parent->shm.get()) e.setPeerStats(k, parent->shm->peerStats(members[k]));
  }
  c->pool.reset(new ThreadPool(1));
  c->ready.store(true, std::memory_order_release);
  *out = c.release();
  return attncclSuccess;
}

}  // namespace attnccl
