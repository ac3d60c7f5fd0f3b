// Group views (src/attn/group_view.h): an engine over some of a communicator's ranks that moves
// its messages through the communicator's transports; the hybrid algorithm runs its group and
// ring levels on two of them. Checked: identity and rank mapping, messages over a view land
// where the parent's rank numbers say, making one sends nothing and opens no transport, two
// views with disjoint peers and the parent take turns on the same streams, a view counts its own
// traffic and TrafficFold adds it to the parent's counters, the parent's abort and the attention
// state's onAbort each end a view's wait, and the views a hybrid call makes are the group and
// ring of its rank. Threads and processes, shm and ucx.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <memory>
#include <thread>
#include <vector>

#include "attn/comm_state.h"
#include "attn/group_view.h"
#include "comm/comm.h"
#include "support/ranks.h"
#include "support/tensors.h"

using namespace attnccl::test;
using attnccl_test::randomTensor;
using attnccl_test::Tensor;
using attnccl::attn::GroupView;

namespace {

struct ViewCase {
  int nranks;
  Mode mode;
  const char* transport;
};

std::string caseName(const testing::TestParamInfo<ViewCase>& info) {
  return format("n%d_%s_%s", info.param.nranks, modeName(info.param.mode), info.param.transport);
}

class GroupViews : public testing::TestWithParam<ViewCase> {};
class GroupViewsAbort : public testing::TestWithParam<ViewCase> {};

// A ring over `e` (ranks 0..n-1, this rank `me`) whose payload encodes (parent rank of the
// sender, parent rank of the receiver); members[k] is the parent rank of engine rank k.
std::string ringOver(attnccl::Engine& e, int me, const std::vector<int>& members, uint32_t tag) {
  const int n = e.nranks(), next = (me + 1) % n, prev = (me + n - 1) % n;
  int64_t out = members[me] * 1000 + members[next], in = -1;
  attnccl::Op ops[2];
  RK_OK(e.isend(next, tag, &out, sizeof(out), &ops[0]));
  RK_OK(e.irecv(prev, tag, &in, sizeof(in), &ops[1]));
  RK_OK(e.waitAll(ops, 2));
  RK_CHECK(in == members[prev] * 1000 + members[me], "view rank %d (parent %d) got %lld from view rank %d", me,
           members[me], static_cast<long long>(in), prev);
  return "";
}

std::vector<int> allRanks(int n) {
  std::vector<int> v;
  for (int r = 0; r < n; ++r) v.push_back(r);
  return v;
}

TEST_P(GroupViews, MapRanksSendNothingToExistAndShareStreams) {
  const ViewCase vc = GetParam();
  std::string err = runRanks(vc.nranks, vc.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, vc.transport));
    // Even and odd parent ranks: disjoint peers, as the hybrid's group and ring views.
    std::vector<int> even, odd;
    for (int r = 0; r < n; ++r) (r % 2 == 0 ? even : odd).push_back(r);
    const std::vector<int>& mine = rank % 2 == 0 ? even : odd;
    // The whole parent, reversed: view rank k is parent rank n-1-k.
    std::vector<int> reversed;
    for (int r = n - 1; r >= 0; --r) reversed.push_back(r);
    const uint64_t sentBefore = comm->engine.stats().messagesSent.load();
    const void* const shmBefore = comm->shm.get();
    const void* const ucxBefore = comm->ucx.get();
    std::unique_ptr<GroupView> sub, whole;
    RK_OK(GroupView::create(comm, mine, &sub));
    RK_OK(GroupView::create(comm, reversed, &whole));
    RK_CHECK(comm->engine.stats().messagesSent.load() == sentBefore, "making views sent %llu messages",
             static_cast<unsigned long long>(comm->engine.stats().messagesSent.load() - sentBefore));
    RK_CHECK(comm->shm.get() == shmBefore && comm->ucx.get() == ucxBefore, "making a view changed the transports");
    RK_CHECK(sub->size() == static_cast<int>(mine.size()) && sub->parentRank(sub->rank()) == rank &&
                 sub->engine().rank() == sub->rank() && sub->engine().nranks() == sub->size(),
             "view identity %d/%d", sub->rank(), sub->size());
    RK_CHECK(whole->rank() == n - 1 - rank && whole->size() == n, "reversed identity %d/%d", whole->rank(),
             whole->size());
    for (int k = 0; k < n; ++k) {
      RK_CHECK(whole->parentRank(k) == n - 1 - k, "reversed view rank %d maps to parent %d", k, whole->parentRank(k));
      // A view routes to a peer over the transport the parent uses for it, never one of its own.
      attnccl::Transport* t = whole->engine().route(k);
      attnccl::Transport* p = comm->engine.route(n - 1 - k);
      RK_CHECK((t == nullptr) == (p == nullptr), "view rank %d: route %p, parent's %p", k, static_cast<void*>(t),
               static_cast<void*>(p));
      RK_CHECK(t == nullptr || (t != p && std::string(t->name()) == p->name()), "view rank %d routed over %s", k,
               t ? t->name() : "-");
    }
    // The view runs on the parent's compute pool, with the parent's wait settings.
    RK_CHECK(&sub->pool() == comm->pool.get() && sub->context().pool == comm->pool.get(), "not the parent's pool");
    RK_CHECK(sub->context().engine == &sub->engine() && sub->context().rank == sub->rank() &&
                 sub->context().arena == &sub->arena(),
             "the view's context is not its engine, rank and arena");
    RK_CHECK(sub->engine().timeoutMs() == comm->engine.timeoutMs() &&
                 sub->engine().spinMicros() == comm->engine.spinMicros() &&
                 sub->engine().livenessInterval() == comm->engine.livenessInterval() &&
                 sub->engine().checksums() == comm->engine.checksums(),
             "the view's engine is not configured as the parent's");
    // The parent, the view and the reversed whole take turns on the same tag.
    const std::vector<int> all = allRanks(n);
    for (int round = 0; round < 3; ++round) {
      RK_SUB(ringOver(comm->engine, rank, all, attnccl::kTagInternal));
      RK_SUB(ringOver(sub->engine(), sub->rank(), mine, attnccl::kTagInternal));
      RK_SUB(ringOver(whole->engine(), whole->rank(), reversed, attnccl::kTagInternal));
    }
    // A view counts its own traffic, not in the parent's counters until a fold adds it.
    const uint64_t subSent = sub->engine().stats().messagesSent.load();
    RK_CHECK(subSent == (sub->size() > 1 ? 3u : 0u), "view counted %llu messages sent",
             static_cast<unsigned long long>(subSent));
    const uint64_t parentSent = comm->engine.stats().messagesSent.load();
    RK_CHECK(parentSent - sentBefore == (n > 1 ? 3u : 0u), "the parent counted %llu messages sent",
             static_cast<unsigned long long>(parentSent - sentBefore));
    {
      attnccl::attn::TrafficFold fold(comm->engine.stats(), {sub.get(), whole.get()});
      RK_SUB(ringOver(sub->engine(), sub->rank(), mine, attnccl::kTagInternal));
      RK_SUB(ringOver(whole->engine(), whole->rank(), reversed, attnccl::kTagInternal));
    }
    const uint64_t folded = comm->engine.stats().messagesSent.load() - parentSent;
    const uint64_t want = (sub->size() > 1 ? 1u : 0u) + (n > 1 ? 1u : 0u);
    RK_CHECK(folded == want, "the fold added %llu messages sent, want %llu", static_cast<unsigned long long>(folded),
             static_cast<unsigned long long>(want));
    // Views that are not members of this rank, or name a rank twice, are refused.
    std::unique_ptr<GroupView> bad;
    const std::vector<int>& other = rank % 2 == 0 ? odd : even;
    if (!other.empty()) RK_CHECK(GroupView::create(comm, other, &bad) != attncclSuccess && !bad, "a foreign view");
    RK_CHECK(GroupView::create(comm, {rank, rank}, &bad) != attncclSuccess && !bad, "a view with a rank twice");
    sub.reset();
    whole.reset();
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

// Rank 0 waits in a view for a message nobody sends; `stop` must end the wait promptly.
std::string waitEndedBy(attncclComm_t comm, int rank, GroupView& view, const std::function<void()>& stop) {
  if (rank == 0) {
    std::thread aborter([&stop] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      stop();
    });
    int64_t in = 0;
    auto t0 = std::chrono::steady_clock::now();
    attncclResult_t r = view.engine().recv(1, attnccl::kTagInternal, &in, sizeof(in));
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    aborter.join();
    RK_CHECK(r == attncclInvalidUsage, "the wait returned %d, not the abort's attncclInvalidUsage", r);
    RK_CHECK(s < 0.6, "the wait ended %.2f s after it began (abort at 0.1 s, peers leave at 1.5 s)", s);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // alive while rank 0 waits
  }
  (void)comm;
  return "";
}

TEST_P(GroupViewsAbort, ParentAbortEndsViewWait) {
  const ViewCase vc = GetParam();
  std::string err = runRanks(vc.nranks, vc.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, vc.transport));
    std::unique_ptr<GroupView> view;
    RK_OK(GroupView::create(comm, allRanks(n), &view));
    RK_SUB(waitEndedBy(comm, rank, *view, [comm] { comm->aborted.store(true); }));
    view.reset();
    RK_OK(attncclCommAbort(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

// A failure of the communicator does not raise its abort flag; the attention state hears it
// through onAbort and ends the waits of the views it owns. Its destructor frees them, in the
// communicator's teardown.
TEST_P(GroupViewsAbort, StateOnAbortEndsViewWait) {
  const ViewCase vc = GetParam();
  std::string err = runRanks(vc.nranks, vc.mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    RK_SUB(initComm(&comm, rank, n, id, vc.transport));
    attnccl::attn::AttnCommState& st = attnccl::attn::attnState(comm);
    attnccl::attn::HybridViews v;
    RK_OK(GroupView::create(comm, allRanks(n), &v.group));
    RK_OK(GroupView::create(comm, {rank}, &v.ring));
    GroupView* group = v.group.get();
    GroupView* ring = v.ring.get();
    {
      std::lock_guard<std::mutex> lock(st.hybridMutex);
      st.hybridViews.emplace(n, std::move(v));
    }
    RK_SUB(waitEndedBy(comm, rank, *group, [comm] { attnccl::commNotifyAbort(comm); }));
    if (rank != 0) attnccl::commNotifyAbort(comm);  // rank 0's came from its aborter thread
    RK_CHECK(group->aborted() && ring->aborted(), "onAbort left a view running");
    RK_CHECK(!comm->aborted.load(), "onAbort raised the parent's flag");
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

std::vector<ViewCase> cases(std::vector<int> sizes) {
  std::vector<ViewCase> v;
  for (const char* t : testTransports()) {
    for (int n : sizes) {
      for (Mode m : {Mode::kThreads, Mode::kProcesses}) {
        if (n == 1 && m != Mode::kThreads) continue;
        v.push_back({n, m, t});
      }
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, GroupViews, testing::ValuesIn(cases({1, 2, 3, 5})), caseName);
INSTANTIATE_TEST_SUITE_P(All, GroupViewsAbort, testing::ValuesIn(cases({2, 5})), caseName);

// The views a hybrid call makes: one pair per group size, kept by the attention state, the
// group view over this rank's group (member i = view rank i) and the ring view over the ranks
// with its member index (group g = view rank g), both on this communicator's pool; later calls
// reuse them and the call's traffic shows in the communicator's counters.
TEST(GroupViewsHybrid, CallMakesGroupAndRingViewsOnce) {
  const int P = 4, G = 2;
  std::string err = runRanks(P, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.transport = "shm";
    cfg.cpuThreads = 1;
    cfg.hybridGroupSize = G;
    attncclComm_t comm = nullptr;
    RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
    attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
    d.seqLen = 32;
    d.numHeadsQ = 4;
    d.numHeadsKV = 2;
    d.headDim = 8;
    d.dtype = attncclFloat32;
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    const int64_t qe = T * d.numHeadsQ * d.headDim, ke = T * d.numHeadsKV * d.headDim;
    Tensor q = randomTensor(d.dtype, qe, 1), k = randomTensor(d.dtype, ke, 2), v = randomTensor(d.dtype, ke, 3);
    Tensor out(d.dtype, qe);
    attnccl::attn::AttnCommState& st = attnccl::attn::attnState(comm);
    GroupView* group = nullptr;
    GroupView* ring = nullptr;
    for (int call = 0; call < 2; ++call) {
      attncclCommStats_t a = {sizeof(a), 0, 0, 0, 0}, b = {sizeof(b), 0, 0, 0, 0};
      RK_OK(attncclCommGetStats(comm, &a));
      RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), out.data(), nullptr, &d, attncclAlgoHybrid, comm,
                               nullptr));
      RK_OK(attncclCommGetStats(comm, &b));
      RK_CHECK(b.messagesSent > a.messagesSent && b.bytesSent > a.bytesSent, "call %d: no traffic counted", call);
      std::lock_guard<std::mutex> lock(st.hybridMutex);
      RK_CHECK(st.hybridViews.size() == 1 && st.hybridViews.count(G) == 1, "%zu view pairs after call %d",
               st.hybridViews.size(), call);
      const attnccl::attn::HybridViews& hv = st.hybridViews.at(G);
      RK_CHECK(hv.group && hv.ring, "a level has no view");
      if (call == 1) RK_CHECK(hv.group.get() == group && hv.ring.get() == ring, "the second call made new views");
      group = hv.group.get();
      ring = hv.ring.get();
    }
    const int g = rank / G, i = rank % G;
    RK_CHECK(group->size() == G && group->rank() == i, "group view %d/%d", group->rank(), group->size());
    RK_CHECK(ring->size() == P / G && ring->rank() == g, "ring view %d/%d", ring->rank(), ring->size());
    for (int m = 0; m < G; ++m) RK_CHECK(group->parentRank(m) == g * G + m, "group member %d", m);
    for (int m = 0; m < P / G; ++m) RK_CHECK(ring->parentRank(m) == m * G + i, "ring member %d", m);
    RK_CHECK(&group->pool() == comm->pool.get() && &ring->pool() == comm->pool.get(), "not the parent's pool");
    RK_CHECK(!group->aborted() && !ring->aborted(), "a view is aborted");
    RK_OK(attncclCommDestroy(comm));
    return "";
  });
  EXPECT_EQ(err, "");
}

}  // namespace
