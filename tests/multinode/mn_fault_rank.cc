// One rank of the multi-node fault runs (tests/multinode/run_faults.sh starts every rank inside
// its node's namespace with tools/cluster exec; no MPI: mpirun ends the whole job when one of its
// processes dies, which would kill the very survivors under test).
//
//   mn_fault_rank RANK NRANKS ALGO STATEDIR
//
// Environment: ATTNCCL_COMM_ID=<node 0's address>:PORT (every process derives the same unique id
// from it; rank 0 serves the rendezvous), ATTNCCL_TIMEOUT_MS (the bound under test).
//
// The rank:
//   1. creates the communicator and checks one small case across the nodes (every output
//      against the fp64 reference and the one-rank result, support/dist_case.h), so the fault
//      hits a communicator that was working;
//   2. writes STATEDIR/pid.RANK (its process id, for the script's SIGKILL) and STATEDIR/ready.RANK;
//   3. calls attention forward + backward through ALGO on a larger problem, back to back;
//      every kRoundCalls calls the ranks agree by an all-reduce (max) whether STATEDIR/stop exists
//      (the script's "the fault is over": every rank leaves the loop after the same call);
//   4a. a call failed: it reads the time of the fault (STATEDIR/fault, CLOCK_REALTIME seconds,
//      written by the script when it injected the fault), calls attncclCommAbort and prints
//        RESULT rank=R host=H outcome=error code=NAME in=attention|vote calls=N elapsed=S lastok=S abort=S
//               abortrc=NAME msg=...
//      elapsed = failure - fault (the same clock: the namespaces share the machine), lastok = the
//      end of the last call that succeeded - fault (> 0: calls still succeeded after the fault);
//   4b. the loop ended on stop (a fault that only slowed the links): the small case is checked
//      again (results after the slowdown are still right), the communicator destroyed, and
//        RESULT rank=R host=H outcome=stopped code=Success calls=N ... check=ok|FAILED
// Exit status: 0 once RESULT is printed (the script judges it), 2 for a usage or set-up error.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attnccl.h"
#include "support/attn_case.h"
#include "support/dist_case.h"

namespace {

constexpr int kRoundCalls = 4;  // attention calls between two stop votes
constexpr double kMaxLoopSeconds = 90;

double realSeconds() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double monoSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// The result's enum name (what the script matches), not its sentence.
const char* codeName(attncclResult_t r) {
  switch (r) {
    case attncclSuccess: return "Success";
    case attncclRemoteError: return "RemoteError";
    case attncclTimeout: return "Timeout";
    case attncclSystemError: return "SystemError";
    case attncclInternalError: return "InternalError";
    case attncclInvalidArgument: return "InvalidArgument";
    case attncclInvalidUsage: return "InvalidUsage";
    default: return "Other";
  }
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

void writeFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  if (FILE* f = fopen(tmp.c_str(), "w")) {
    fputs(text.c_str(), f);
    fclose(f);
    rename(tmp.c_str(), path.c_str());  // readers never see half a file
  }
}

// The script writes the file right after (a link change) or right before (a kill) the fault;
// a rank that fails first waits for it a while.
double readFaultTime(const std::string& dir) {
  double t = -1;
  for (int tries = 0; tries < 200 && t < 0; ++tries) {
    if (FILE* f = fopen((dir + "/fault").c_str(), "r")) {
      if (fscanf(f, "%lf", &t) != 1) t = -1;
      fclose(f);
    }
    if (t < 0) usleep(50 * 1000);
  }
  return t;
}

bool parseAlgo(const char* name, attncclAlgo_t* out) {
  const attncclAlgo_t all[] = {attncclAlgoRing,    attncclAlgoPassQ,  attncclAlgoAllGather,
                               attncclAlgoUlysses, attncclAlgoHybrid, attncclAlgoAuto};
  for (attncclAlgo_t a : all) {
    if (strcmp(attncclAlgoName(a), name) == 0) {
      *out = a;
      return true;
    }
  }
  return false;
}

// The loop's problem: causal, zigzag, fp32, 4 Q heads over 2 K/V heads. Small enough that one
// ring step's tile takes milliseconds (a rank enters its next wait soon after a fault), large
// enough that K/V blocks take the rendezvous path.
struct Loop {
  attncclAttnDesc_t desc = ATTNCCL_ATTN_DESC_INITIALIZER;
  std::vector<float> q, k, v, o, lse, dout, dq, dk, dv;

  Loop(int rank, int nranks) {
    desc.dtype = attncclFloat32;
    desc.seqLen = 2048;
    desc.numHeadsQ = 4;
    desc.numHeadsKV = 2;
    desc.headDim = 32;
    desc.causal = 1;
    desc.layout = attncclLayoutZigzag;
    int64_t tokens = 0;
    attncclAttnLocalTokens(&desc, nranks, rank, &tokens, nullptr);
    const size_t rows = static_cast<size_t>(tokens);
    std::mt19937 rng(1234u + static_cast<unsigned>(rank));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    auto fill = [&](std::vector<float>& x, size_t n) {
      x.resize(n);
      for (float& e : x) e = u(rng);
    };
    fill(q, rows * 4 * 32);
    fill(k, rows * 2 * 32);
    fill(v, rows * 2 * 32);
    fill(dout, rows * 4 * 32);
    o.assign(q.size(), 0.f);
    dq.assign(q.size(), 0.f);
    dk.assign(k.size(), 0.f);
    dv.assign(v.size(), 0.f);
    lse.assign(rows * 4, 0.f);
  }

  attncclResult_t call(attncclAlgo_t algo, attncclComm_t comm) {
    attncclResult_t r =
        attncclAttnForward(q.data(), k.data(), v.data(), o.data(), lse.data(), &desc, algo, comm, nullptr);
    if (r != attncclSuccess) return r;
    return attncclAttnBackward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                               dv.data(), &desc, algo, comm, nullptr);
  }
};

// One small case against the fp64 reference and the one-rank result; "" when right.
std::string checkSmall(attncclComm_t comm, attncclAlgo_t algo) {
  attnccl_test::CaseSpec spec = attnccl_test::rotatingSpec(96, 4, 2, 16, 0);
  static attnccl_test::AttnCase c(spec, 0x5eed0000ull);
  const attnccl_test::SingleRankResult& single = attnccl_test::singleRank(c);
  return attnccl_test::checkRank(c, comm, algo, true, &single);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s RANK NRANKS ALGO STATEDIR\n", argv[0]);
    return 2;
  }
  const int rank = atoi(argv[1]), nranks = atoi(argv[2]);
  attncclAlgo_t algo = attncclAlgoRing;
  if (!parseAlgo(argv[3], &algo) || nranks < 2 || rank < 0 || rank >= nranks) {
    fprintf(stderr, "mn_fault_rank: bad arguments (rank %s of %s, algo %s)\n", argv[1], argv[2], argv[3]);
    return 2;
  }
  const std::string dir = argv[4];
  char host[64] = {0};
  gethostname(host, sizeof(host) - 1);
  writeFile(dir + "/pid." + std::to_string(rank), std::to_string(getpid()) + "\n");

  attncclUniqueId id;
  memset(&id, 0, sizeof(id));
  attncclResult_t r = attncclGetUniqueId(&id);  // ATTNCCL_COMM_ID: the same id in every process
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.cpuThreads = 1;
  attncclComm_t comm = nullptr;
  if (r == attncclSuccess) r = attncclCommInitRank(&comm, nranks, id, rank, &cfg);
  if (r != attncclSuccess) {
    fprintf(stderr, "rank %d: communicator: %s (%s)\n", rank, attncclGetErrorString(r), attncclGetLastError(nullptr));
    return 2;
  }
  std::string bad = checkSmall(comm, algo);
  if (!bad.empty()) {
    fprintf(stderr, "rank %d: the check before the fault failed: %s\n", rank, bad.c_str());
    attncclCommAbort(comm);
    return 2;
  }

  Loop loop(rank, nranks);
  writeFile(dir + "/ready." + std::to_string(rank), "1\n");
  int calls = 0;
  double lastOk = realSeconds();  // end of the last call that succeeded
  bool stopped = false;
  const char* where = "attention";  // the call that failed: an attention call or the stop vote
  const double end = monoSeconds() + kMaxLoopSeconds;
  while (r == attncclSuccess && !stopped && monoSeconds() < end) {
    for (int i = 0; i < kRoundCalls && r == attncclSuccess; ++i) {
      r = loop.call(algo, comm);
      if (r == attncclSuccess) {
        ++calls;
        lastOk = realSeconds();
      }
    }
    if (r != attncclSuccess) break;
    float vote = exists(dir + "/stop") ? 1.f : 0.f, all = 0.f;
    where = "vote";
    r = attncclAllReduce(&vote, &all, 1, attncclFloat32, attncclMax, comm, nullptr);
    stopped = r == attncclSuccess && all > 0.f;
    if (r == attncclSuccess) {
      where = "attention";
      lastOk = realSeconds();
    }
  }
  const double tFail = realSeconds();

  if (r == attncclSuccess) {
    // No error: the fault only slowed the links (or the script never stopped us: the loop's
    // own bound). What the calls return now must still be right.
    std::string after = checkSmall(comm, algo);
    attncclResult_t dr = attncclCommDestroy(comm);
    printf(
        "RESULT rank=%d host=%s outcome=%s code=Success calls=%d elapsed=0 abort=0 abortrc=%s check=%s "
        "msg=%s\n",
        rank, host, stopped ? "stopped" : "unbounded", calls, codeName(dr), after.empty() ? "ok" : "FAILED",
        after.c_str());
    fflush(stdout);
    return 0;
  }
  const double tFault = readFaultTime(dir);
  const std::string msg = attncclGetLastError(comm);
  const double a0 = monoSeconds();
  attncclResult_t ar = attncclCommAbort(comm);
  const double abortSec = monoSeconds() - a0;
  printf(
      "RESULT rank=%d host=%s outcome=error code=%s in=%s calls=%d elapsed=%.3f lastok=%.3f abort=%.3f abortrc=%s "
      "msg=%s\n",
      rank, host, codeName(r), where, calls, tFault > 0 ? tFail - tFault : -1.0, tFault > 0 ? lastOk - tFault : 0.0,
      abortSec, codeName(ar), msg.c_str());
  fflush(stdout);
  return 0;
}
