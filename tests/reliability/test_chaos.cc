// Chaos: randomized trials, each SIGKILLing one rank process at a random moment of a random
// collective, on both transports. Every trial forks P rank processes that create a communicator
// (timeout kTimeoutMs) and call one collective in a loop; the test process kills a random rank,
// either while the communicator is being created or at a random delay after every rank started
// calling. Every survivor must return attncclRemoteError or attncclTimeout within the timeout + 2 s
// of the kill, then attncclCommAbort must return (promptly, with success); no rank may crash or
// hang (the launcher kills ranks that outlive a deadline, and that fails the trial), nothing may be
// left in /dev/shm, no process may be left over.
//
// Collectives: send/recv ring, all-gather, reduce-scatter, all-to-all(v), all-reduce, broadcast,
// reduce, barrier, head all-to-all, and
// attention forward and backward with every algorithm (hybrid on 4 ranks in groups of 2); a
// quarter of the trials use non-blocking communicators. Sizes cover the shm eager, in-place/CMA
// pull and UCX eager/rendezvous paths.
//
// Knobs: ATTNCCL_CHAOS_TRIALS (default 60), ATTNCCL_CHAOS_SEED (default: from the clock; printed),
// ATTNCCL_CHAOS_REPORT (a file that receives the summary), ATTNCCL_CHAOS_ONLY (run only the trials
// whose name contains this text, e.g. "hybrid P=4 ucx"), ATTNCCL_CHAOS_VERBOSE (every survivor).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/proc_ranks.h"
#include "support/ranks.h"

using namespace attnccl::test;

namespace {

constexpr int kTimeoutMs = 2000;
constexpr double kBound = kTimeoutMs / 1000.0 + 2.0;   // error after the kill, seconds
constexpr double kAbortBound = 2.0;                     // attncclCommAbort duration, seconds
constexpr double kTrialDeadline = kBound + 8.0;         // then the launcher kills (a hang)

enum class Kind {
  kSendRecv, kAllGather, kReduceScatter, kAllToAll, kAllToAllv, kHeadAllToAll, kAttnFwd, kAttnBwd,
  kAllReduce, kBroadcast, kReduce, kBarrier
};

const char* kindName(Kind k) {
  switch (k) {
    case Kind::kSendRecv: return "sendrecv";
    case Kind::kAllGather: return "allgather";
    case Kind::kReduceScatter: return "reducescatter";
    case Kind::kAllToAll: return "alltoall";
    case Kind::kAllToAllv: return "alltoallv";
    case Kind::kHeadAllToAll: return "headalltoall";
    case Kind::kAttnFwd: return "attn-fwd";
    case Kind::kAttnBwd: return "attn-bwd";
    case Kind::kAllReduce: return "allreduce";
    case Kind::kBroadcast: return "broadcast";
    case Kind::kReduce: return "reduce";
    case Kind::kBarrier: return "barrier";
  }
  return "?";
}

struct Trial {
  int index = 0;
  uint64_t seed = 0;
  Kind kind = Kind::kAllGather;
  attncclAlgo_t algo = attncclAlgoRing;
  const char* transport = "shm";
  int nranks = 2;
  int hybridGroup = 0;
  bool blocking = true;
  int victim = 0;
  bool duringInit = false;
  int delayMs = 0;
  size_t count = 0;  // elements per peer block (building blocks)
  int64_t seqLen = 0;
  int hkv = 4;
  attncclLayout_t layout = attncclLayoutContiguous;
  bool causal = false;

  std::string name() const {
    std::string k = kindName(kind);
    if (kind == Kind::kAttnFwd || kind == Kind::kAttnBwd) k += std::string("/") + attncclAlgoName(algo);
    return format("#%d %s P=%d %s%s victim=%d %s+%dms", index, k.c_str(), nranks, transport,
                  blocking ? "" : " nonblocking", victim, duringInit ? "init" : "run", delayMs);
  }
};

// The trial list: kinds and transports cycle so that a few dozen trials cover every pair; the
// rest is drawn from the seed.
std::vector<Trial> makeTrials(uint64_t seed, int n) {
  struct KindAlgo {
    Kind kind;
    attncclAlgo_t algo;
  };
  std::vector<KindAlgo> kinds = {{Kind::kSendRecv, attncclAlgoAuto},      {Kind::kAllGather, attncclAlgoAuto},
                                 {Kind::kReduceScatter, attncclAlgoAuto}, {Kind::kAllToAll, attncclAlgoAuto},
                                 {Kind::kAllToAllv, attncclAlgoAuto},     {Kind::kHeadAllToAll, attncclAlgoAuto},
                                 {Kind::kAllReduce, attncclAlgoAuto},     {Kind::kBroadcast, attncclAlgoAuto},
                                 {Kind::kReduce, attncclAlgoAuto},        {Kind::kBarrier, attncclAlgoAuto}};
  for (Kind k : {Kind::kAttnFwd, Kind::kAttnBwd}) {
    for (attncclAlgo_t a : {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoUlysses,
                            attncclAlgoHybrid}) {
      kinds.push_back({k, a});
    }
  }
  const std::vector<const char*> transports = testTransports();
  std::vector<Trial> out;
  for (int i = 0; i < n; ++i) {
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    auto pick = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    Trial t;
    t.index = i;
    t.seed = rng();
    const KindAlgo& ka = kinds[i % kinds.size()];
    t.kind = ka.kind;
    t.algo = ka.algo;
    const size_t cycle = i / kinds.size();
    t.transport = transports[(static_cast<size_t>(i) + cycle) % transports.size()];
    t.nranks = pick(2, 4);
    if (t.algo == attncclAlgoHybrid) {
      t.nranks = 4;
      t.hybridGroup = 2;
    }
    t.blocking = pick(0, 3) != 0;
    t.victim = pick(0, t.nranks - 1);
    // Creating a communicator takes a few milliseconds: kills "during init" come 0-12 ms after
    // the fork, those "while calling" 0-60 ms after every rank reported its first call.
    t.duringInit = pick(0, 99) < 20;
    t.delayMs = t.duringInit ? pick(0, 12) : pick(0, 60);
    const size_t counts[] = {8, 3000, 40000};
    t.count = counts[pick(0, 2)];
    t.seqLen = pick(6 * t.nranks, 96);
    t.hkv = pick(0, 1) ? 2 : 4;
    t.layout = static_cast<attncclLayout_t>(pick(0, 2));
    t.causal = pick(0, 1) != 0;
    out.push_back(t);
  }
  return out;
}

// One rank's buffers and its call.
class Workload {
 public:
  Workload(const Trial& t, int rank, int nranks) : t_(t), rank_(rank), n_(nranks) {
    std::mt19937 rng(static_cast<uint32_t>(t.seed) + 977u * static_cast<uint32_t>(rank));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    desc_.dtype = attncclFloat32;
    desc_.seqLen = t.seqLen;
    desc_.numHeadsQ = kHeads;
    desc_.numHeadsKV = t.kind == Kind::kHeadAllToAll ? kHeads : t.hkv;
    desc_.headDim = kDim;
    desc_.layout = t.layout;
    desc_.causal = t.causal ? 1 : 0;
    int64_t tokens = 0;
    attncclAttnLocalTokens(&desc_, nranks, rank, &tokens, nullptr);
    const size_t rows = static_cast<size_t>(tokens);
    const size_t big = std::max<size_t>(t.count * nranks, static_cast<size_t>(t.seqLen) * kHeads * kDim);
    a_.resize(std::max<size_t>(big, rows * kHeads * kDim) + 1);
    for (float& x : a_) x = u(rng);
    b_.assign(a_.size(), 0.f);
    q_.assign(rows * kHeads * kDim + 1, 0.5f);
    kv_.assign(rows * t.hkv * kDim + 1, 0.25f);
    for (float& x : q_) x = u(rng);
    for (float& x : kv_) x = u(rng);
    out_.assign(q_.size(), 0.f);
    lse_.assign(rows * kHeads + 1, 0.f);
    dq_.assign(q_.size(), 0.f);
    dk_.assign(kv_.size(), 0.f);
    dv_.assign(kv_.size(), 0.f);
    counts_.assign(nranks, 0);
    displs_.assign(nranks, 0);
    for (int p = 0; p < nranks; ++p) {
      counts_[p] = t.count / 2 + static_cast<size_t>(p);  // alltoallv: uneven but symmetric blocks
      displs_[p] = static_cast<size_t>(p) * t.count;
    }
  }

  attncclResult_t run(attncclComm_t comm) {
    const size_t c = t_.count;
    switch (t_.kind) {
      case Kind::kSendRecv: {
        attncclResult_t r = attncclGroupStart();
        if (r != attncclSuccess) return r;
        attncclResult_t s = attncclSend(a_.data(), c, attncclFloat32, (rank_ + 1) % n_, comm, nullptr);
        attncclResult_t v = attncclRecv(b_.data(), c, attncclFloat32, (rank_ + n_ - 1) % n_, comm, nullptr);
        r = attncclGroupEnd();
        return s != attncclSuccess ? s : v != attncclSuccess ? v : r;
      }
      case Kind::kAllGather: return attncclAllGather(a_.data(), b_.data(), c, attncclFloat32, comm, nullptr);
      case Kind::kReduceScatter:
        return attncclReduceScatter(a_.data(), b_.data(), c, attncclFloat32, attncclSum, comm, nullptr);
      case Kind::kAllToAll: return attncclAllToAll(a_.data(), b_.data(), c, attncclFloat32, comm, nullptr);
      case Kind::kAllToAllv: {
        // Block p of every rank holds counts_[p] elements both ways: rank r sends counts_[p] to p
        // and receives counts_[r]... from everyone, so receive counts are counts_[rank] each.
        std::vector<size_t> rc(n_, counts_[rank_]);
        return attncclAllToAllv(a_.data(), counts_.data(), displs_.data(), b_.data(), rc.data(), displs_.data(),
                                attncclFloat32, comm, nullptr);
      }
      // All-reduce of c * P elements: the one-round path for the small counts, the
      // reduce-scatter + all-gather path (several rounds) for the largest.
      case Kind::kAllReduce:
        return attncclAllReduce(a_.data(), b_.data(), c * n_, attncclFloat32, attncclSum, comm, nullptr);
      case Kind::kBroadcast: return attncclBroadcast(a_.data(), b_.data(), c * n_, attncclFloat32, 0, comm, nullptr);
      case Kind::kReduce:
        return attncclReduce(a_.data(), b_.data(), c * n_, attncclFloat32, attncclMax, n_ - 1, comm, nullptr);
      case Kind::kBarrier: return attncclBarrier(comm, nullptr);
      case Kind::kHeadAllToAll:
        return attncclHeadAllToAll(q_.data(), b_.data(), kHeads, attncclSeqToHead, &desc_, comm, nullptr);
      case Kind::kAttnFwd:
        return attncclAttnForward(q_.data(), kv_.data(), kv_.data(), out_.data(), lse_.data(), &desc_, t_.algo, comm,
                                  nullptr);
      case Kind::kAttnBwd:
        return attncclAttnBackward(q_.data(), kv_.data(), kv_.data(), q_.data(), lse_.data(), q_.data(), dq_.data(),
                                   dk_.data(), dv_.data(), &desc_, t_.algo, comm, nullptr);
    }
    return attncclInternalError;
  }

 private:
  static constexpr int kHeads = 4, kDim = 16;
  const Trial& t_;
  int rank_, n_;
  attncclAttnDesc_t desc_ = ATTNCCL_ATTN_DESC_INITIALIZER;
  std::vector<float> a_, b_, q_, kv_, out_, lse_, dq_, dk_, dv_;
  std::vector<size_t> counts_, displs_;
};

// A non-blocking call's outcome: polls the async error (bounded; a stuck queue is a failure).
attncclResult_t settle(attncclComm_t comm, attncclResult_t r) {
  if (r != attncclInProgress) return r;
  const double end = monoSeconds() + 60;
  attncclResult_t state = attncclInProgress;
  while (state == attncclInProgress && monoSeconds() < end) {
    if (attncclCommGetAsyncError(comm, &state) != attncclSuccess) return attncclInternalError;
    if (state == attncclInProgress) usleep(200);
  }
  return state;
}

// The rank's body: create, report READY, call until a failure, abort, report.
//   RESULT <code> <time of the failure> <abort seconds> <abort result> <calls> <phase> <message>
std::string rankBody(const Trial& t, int rank, int n, const attncclUniqueId& id, const Say& say) {
  Workload w(t, rank, n);
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = kTimeoutMs;
  cfg.transport = t.transport;
  cfg.cpuThreads = 1;
  cfg.blocking = t.blocking ? 1 : 0;
  if (t.hybridGroup > 0) cfg.hybridGroupSize = t.hybridGroup;
  attncclComm_t comm = nullptr;
  attncclResult_t r = attncclCommInitRank(&comm, n, id, rank, &cfg);
  if (r == attncclInProgress) r = settle(comm, r);
  const char* phase = "init";
  int calls = 0;
  if (r == attncclSuccess) {
    say("READY");
    phase = "run";
    const double end = monoSeconds() + 60;
    while (r == attncclSuccess && monoSeconds() < end) {
      r = settle(comm, w.run(comm));
      if (r == attncclSuccess) ++calls;
    }
  }
  const double tFail = monoSeconds();
  std::string msg = attncclGetLastError(comm);
  double abortSec = 0;
  attncclResult_t ar = attncclSuccess;
  if (comm != nullptr) {
    const double a0 = monoSeconds();
    ar = attncclCommAbort(comm);
    abortSec = monoSeconds() - a0;
  }
  return format("RESULT %d %.6f %.6f %d %d %s %s", static_cast<int>(r), tFail, abortSec, static_cast<int>(ar), calls,
                phase, msg.c_str());
}

struct RankResult {
  int code = -1;
  double tFail = 0, abortSec = 0;
  int abortCode = -1, calls = 0;
  std::string phase, message;
};

bool parseResult(const std::vector<std::string>& lines, RankResult* out) {
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->compare(0, 7, "RESULT ") != 0) continue;
    std::istringstream in(it->substr(7));
    in >> out->code >> out->tFail >> out->abortSec >> out->abortCode >> out->calls >> out->phase;
    std::getline(in, out->message);
    return static_cast<bool>(in) || !out->phase.empty();
  }
  return false;
}

struct Tally {
  int trials = 0, faults = 0, failed = 0, killedInInit = 0, killedInRun = 0, survivors = 0;
  std::map<std::string, int> outcomes;  // survivor result -> count
  std::map<std::string, int> perKind;
  double worstLatency = 0, worstAbort = 0, totalSec = 0;
};

// Runs one trial; "" when it met every requirement, else what failed.
std::string runTrial(const Trial& t, Tally* tally) {
  const std::vector<std::string> shmBefore = devShmEntries();
  ProcRanks ranks(t.nranks, [&t](int rank, int n, const attncclUniqueId& id, const Say& say) {
    return rankBody(t, rank, n, id, say);
  });
  if (!ranks.started()) return "fork failed";
  std::string err;
  double tKill = 0;
  bool victimReady = false;
  if (t.duringInit) {
    usleep(static_cast<useconds_t>(t.delayMs) * 1000);
  } else {
    auto allReady = [&] {
      for (int r = 0; r < t.nranks; ++r) {
        if (!ranks.hasLine(r, "READY")) return false;
      }
      return true;
    };
    if (!ranks.pollUntil(allReady, 30)) err += "ranks did not all become ready; ";
    usleep(static_cast<useconds_t>(t.delayMs) * 1000);
  }
  ranks.pollUntil([] { return false; }, 0);  // take in what was said before the kill
  victimReady = ranks.hasLine(t.victim, "READY");
  tKill = ranks.kill(t.victim);
  const bool clean = ranks.reapAll(kTrialDeadline);
  tally->faults++;
  (victimReady ? tally->killedInRun : tally->killedInInit)++;
  if (!clean) err += "a rank hung past the deadline and was killed; ";
  if (!ranks.killedBySignal(t.victim, SIGKILL)) err += format("victim status 0x%x; ", ranks.status(t.victim));
  for (int r = 0; r < t.nranks; ++r) {
    if (r == t.victim) continue;
    RankResult rr;
    if (ranks.hung(r)) {
      err += format("rank %d hung; ", r);
      continue;
    }
    if (!WIFEXITED(ranks.status(r)) || WEXITSTATUS(ranks.status(r)) != 0 || !parseResult(ranks.lines(r), &rr)) {
      err += format("rank %d crashed or said nothing (status 0x%x); ", r, ranks.status(r));
      continue;
    }
    tally->survivors++;
    if (getenv("ATTNCCL_CHAOS_VERBOSE")) {
      printf("    rank %d: %s in %s after %d calls, %.3f s after the kill, abort %.3f s: %s\n", r,
             attncclGetErrorString(static_cast<attncclResult_t>(rr.code)), rr.phase.c_str(), rr.calls,
             rr.tFail - tKill, rr.abortSec, rr.message.c_str());
    }
    const char* what = attncclGetErrorString(static_cast<attncclResult_t>(rr.code));
    tally->outcomes[format("%s in %s", rr.code == attncclRemoteError ? "RemoteError"
                                       : rr.code == attncclTimeout   ? "Timeout"
                                                                     : what,
                           rr.phase.c_str())]++;
    const double latency = rr.tFail - tKill;
    tally->worstLatency = std::max(tally->worstLatency, latency);
    tally->worstAbort = std::max(tally->worstAbort, rr.abortSec);
    if (rr.code != attncclRemoteError && rr.code != attncclTimeout) {
      err += format("rank %d returned %s (%d) in %s:%s; ", r, what, rr.code, rr.phase.c_str(), rr.message.c_str());
    }
    if (latency > kBound) err += format("rank %d failed %.2f s after the kill (bound %.1f s); ", r, latency, kBound);
    if (rr.abortCode != attncclSuccess || rr.abortSec > kAbortBound) {
      err += format("rank %d: abort returned %d after %.2f s; ", r, rr.abortCode, rr.abortSec);
    }
  }
  const std::vector<std::string> leaked = newEntries(shmBefore, devShmEntries());
  for (const std::string& f : leaked) err += "left in /dev/shm: " + f + "; ";
  const std::vector<int> left = childProcesses();
  for (int pid : left) err += format("process %d left over; ", pid);
  return err;
}

int envInt(const char* name, int dflt) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

TEST(Chaos, KillARankAtARandomPointOfARandomCollective) {
  const int n = envInt("ATTNCCL_CHAOS_TRIALS", 60);
  const char* seedText = getenv("ATTNCCL_CHAOS_SEED");
  const uint64_t seed = seedText && *seedText ? strtoull(seedText, nullptr, 0)
                                              : static_cast<uint64_t>(monoSeconds() * 1e6) ^ getpid();
  printf("[ chaos ] seed %llu (replay: ATTNCCL_CHAOS_SEED=%llu), %d trials, timeout %d ms, bound %.1f s\n",
         static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), n, kTimeoutMs, kBound);
  Tally tally;
  std::string failures;
  const double start = monoSeconds();
  const char* only = getenv("ATTNCCL_CHAOS_ONLY");
  for (const Trial& t : makeTrials(seed, n)) {
    if (only && *only && t.name().find(only) == std::string::npos) continue;
    const double t0 = monoSeconds();
    std::string err = runTrial(t, &tally);
    tally.trials++;
    tally.perKind[kindName(t.kind)]++;
    printf("[ chaos ] %-58s %5.2f s %s%s\n", t.name().c_str(), monoSeconds() - t0, err.empty() ? "ok" : "FAILED: ",
           err.c_str());
    fflush(stdout);
    if (!err.empty()) {
      tally.failed++;
      failures += t.name() + ": " + err + "\n";
    }
  }
  tally.totalSec = monoSeconds() - start;
  std::string summary = format(
      "chaos seed %llu: %d trials, %d faults injected (SIGKILL: %d while creating the communicator, %d while "
      "calling), %d survivors, %d failed trials; slowest survivor error %.2f s after the kill (bound %.1f s); "
      "slowest abort %.3f s; %.1f s in all\n",
      static_cast<unsigned long long>(seed), tally.trials, tally.faults, tally.killedInInit, tally.killedInRun,
      tally.survivors, tally.failed, tally.worstLatency, kBound, tally.worstAbort, tally.totalSec);
  for (const auto& kv : tally.outcomes) summary += format("  survivor outcome %-28s %d\n", kv.first.c_str(), kv.second);
  for (const auto& kv : tally.perKind) summary += format("  trials of %-16s %d\n", kv.first.c_str(), kv.second);
  printf("%s", summary.c_str());
  if (const char* path = getenv("ATTNCCL_CHAOS_REPORT")) {
    if (FILE* f = fopen(path, "w")) {
      fputs(summary.c_str(), f);
      fputs(failures.c_str(), f);
      fclose(f);
    }
  }
  EXPECT_EQ(failures, "") << "seed " << seed;
  if (!only || !*only) EXPECT_GE(tally.faults, n);
}

}  // namespace
