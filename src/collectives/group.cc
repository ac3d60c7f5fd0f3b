#include "collectives/group.h"

#include <thread>
#include <vector>

#include "core/export.h"
#include "core/log.h"
#include "core/result.h"

namespace attnccl {
namespace {

struct P2pCall {
  bool isSend;
  void* buf;
  size_t bytes = 0;
  int peer;
};

struct Batch {
  attncclComm* comm;
  std::vector<P2pCall> p2p;
  std::vector<std::function<attncclResult_t()>> collectives;
};

struct GroupState {
  int depth = 0;
  std::vector<Batch> batches;
  attncclResult_t error = attncclSuccess;  // first failure recorded while the group was open
  std::string errorText;

  Batch& batchOf(attncclComm* comm) {
    for (auto& b : batches)
      if (b.comm == comm) return b;
    batches.push_back(Batch{comm, {}, {}});
    return batches.back();
  }
};
thread_local GroupState tlsGroup;

// Posts every p2p op of the batch, runs its collectives, then waits for the p2p ops.
attncclResult_t runBatch(Batch& b) {
  Engine& e = b.comm->engine;
  OpArray ops(e, b.p2p.size());
  // Receives first: a receive posted early lets eager messages land straight in place.
  for (size_t i = 0; i < b.p2p.size(); ++i) {
    const P2pCall& c = b.p2p[i];
    if (!c.isSend) ATTN_CHECK(e.irecv(c.peer, kTagUser, c.buf, c.bytes, &ops[i]));
  }
  for (size_t i = 0; i < b.p2p.size(); ++i) {
    const P2pCall& c = b.p2p[i];
    if (c.isSend) ATTN_CHECK(e.isend(c.peer, kTagUser, c.buf, c.bytes, &ops[i]));
  }
  for (auto& coll : b.collectives) ATTN_CHECK(coll());
  attncclResult_t r = e.waitAll(ops);
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!b.p2p[i].isSend && ops[i].done() && ops[i].result == attncclSuccess && ops[i].bytes != b.p2p[i].bytes) {
      return fail(attncclInvalidUsage, "attncclRecv from rank %d expected %zu bytes, the matching send had %zu",
                  b.p2p[i].peer, b.p2p[i].bytes, ops[i].bytes);
    }
  }
  return r;
}

attncclResult_t runBatchOnComm(Batch& b) {
  Batch* bp = &b;
  return commRun(b.comm, "attncclGroupEnd", [bp] { return runBatch(*bp); });
}

}  // namespace

bool groupActive() { return tlsGroup.depth > 0; }

void groupAddP2p(attncclComm* comm, bool isSend, void* buf, size_t bytes, int peer) {
  tlsGroup.batchOf(comm).p2p.push_back(P2pCall{isSend, buf, bytes, peer});
}

void groupAddCollective(attncclComm* comm, std::function<attncclResult_t()> work) {
  tlsGroup.batchOf(comm).collectives.push_back(std::move(work));
}

attncclResult_t runP2p(attncclComm* comm, bool isSend, void* buf, size_t bytes, int peer) {
  return commRun(comm, isSend ? "attncclSend" : "attncclRecv", [=] {
    Batch b{comm, {P2pCall{isSend, buf, bytes, peer}}, {}};
    return runBatch(b);
  });
}

}  // namespace attnccl

using namespace attnccl;

ATTN_EXPORT attncclResult_t attncclGroupStart(void) {
  if (tlsGroup.depth == 0) {
    tlsGroup.batches.clear();
    tlsGroup.error = attncclSuccess;
  }
  ++tlsGroup.depth;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclGroupEnd(void) {
  if (tlsGroup.depth == 0) return fail(attncclInvalidUsage, "attncclGroupEnd without a matching attncclGroupStart");
  if (--tlsGroup.depth > 0) return attncclSuccess;
  std::vector<Batch> batches = std::move(tlsGroup.batches);
  tlsGroup.batches.clear();
  if (batches.empty()) return attncclSuccess;
  // Non-blocking communicators queue their batches; the batch objects must outlive the call.
  bool anyNonBlocking = false;
  for (auto& b : batches) anyNonBlocking |= !b.comm->config.blocking;
  if (batches.size() == 1 || anyNonBlocking) {
    attncclResult_t res = attncclSuccess;
    for (auto& b : batches) {
      attncclResult_t r;
      if (!b.comm->config.blocking) {
        auto owned = std::make_shared<Batch>(std::move(b));
        r = commRun(owned->comm, "attncclGroupEnd", [owned] { return runBatch(*owned); });
      } else {
        r = runBatchOnComm(b);
      }
      if (res == attncclSuccess || res == attncclInProgress) res = r == attncclSuccess ? res : r;
    }
    return res;
  }
  // One thread drives several communicators: each batch needs its peers' batches to progress
  // at the same time, so run them side by side.
  std::vector<attncclResult_t> results(batches.size(), attncclSuccess);
  std::vector<std::string> messages(batches.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < batches.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] = runBatchOnComm(batches[i]);
      if (results[i] != attncclSuccess) messages[i] = lastError();
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < batches.size(); ++i) {
    if (results[i] != attncclSuccess) return fail(results[i], "%s", messages[i].c_str());
  }
  return attncclSuccess;
}
