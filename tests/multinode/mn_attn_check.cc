// The multi-node checker (tests/multinode/run_multinode.sh starts it under mpirun, one rank per
// MPI process): every attention algorithm, forward and backward, on a few small cases, each
// rank's slice checked against the fp64 reference and the one-rank result (support/dist_case.h).
//
//   mpirun ... mn_attn_check [mpi|uid]
//
// mpi (default): attncclCommInitMpi. uid: MPI rank 0 calls attncclGetUniqueId and MPI only
// broadcasts the id's bytes; the ranks meet at the TCP rendezvous the id names (a fixed address
// when ATTNCCL_COMM_ID is set: then MPI rank 0 serves it from attncclCommInitRank).
// Prints one summary line on rank 0 and every failure with its rank; exits 1 when any failed.
#include <mpi.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "attnccl.h"
#include "attnccl_mpi.h"
#include "support/attn_case.h"
#include "support/dist_case.h"

namespace {

using attnccl_test::AttnCase;
using attnccl_test::CaseSpec;

attncclResult_t makeComm(bool uid, int rank, int size, attncclComm_t* comm) {
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.cpuThreads = 1;
  cfg.timeoutMs = 60000;
  if (!uid) return attncclCommInitMpi(comm, MPI_COMM_WORLD, &cfg);
  attncclUniqueId id;
  memset(&id, 0, sizeof(id));
  int ok = rank == 0 ? attncclGetUniqueId(&id) == attncclSuccess : 1;
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!ok) return attncclSystemError;
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  return attncclCommInitRank(comm, size, id, rank, &cfg);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const bool uid = argc > 1 && strcmp(argv[1], "uid") == 0;

  attncclComm_t comm = nullptr;
  attncclResult_t r = makeComm(uid, rank, size, &comm);
  if (r != attncclSuccess) {
    fprintf(stderr, "rank %d: communicator: %s (%s)\n", rank, attncclGetErrorString(r), attncclGetLastError(nullptr));
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  // Small cases that differ in mask, dtype and layout (rotatingSpec's rotation: 0 = causal fp32
  // contiguous, 6 = full fp32 zigzag, 13 = documents bf16 striped); 4 Q heads over 2 K/V heads,
  // so the hybrid's groups split heads and share K/V heads. Fixed seeds: every process builds
  // the same inputs.
  std::vector<int> rotation = {0, 6, 13};
  const attncclAlgo_t algos[] = {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoUlysses,
                                 attncclAlgoHybrid, attncclAlgoAuto};
  int failed = 0, runs = 0;
  for (int i : rotation) {
    CaseSpec spec = attnccl_test::rotatingSpec(96, 4, 2, 16, i);
    AttnCase c(spec, 0x5eed0000ull + i);
    const attnccl_test::SingleRankResult& single = attnccl_test::singleRank(c);
    for (attncclAlgo_t algo : algos) {
      ++runs;
      std::string bad = attnccl_test::checkRank(c, comm, algo, true, &single);
      if (!bad.empty()) {
        ++failed;
        fprintf(stderr, "rank %d: %s %s: %s\n", rank, attncclAlgoName(algo), c.name().c_str(), bad.c_str());
      }
    }
  }
  int failedAll = 0;
  MPI_Allreduce(&failed, &failedAll, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  r = attncclCommDestroy(comm);
  if (r != attncclSuccess) {
    fprintf(stderr, "rank %d: destroy: %s\n", rank, attncclGetErrorString(r));
    failedAll += 1;
  }
  // Where every rank ran (the node shape and numbering the run really had).
  char host[64] = {0};
  gethostname(host, sizeof(host) - 1);
  std::vector<char> hosts(static_cast<size_t>(size) * sizeof(host));
  MPI_Gather(host, sizeof(host), MPI_CHAR, hosts.data(), sizeof(host), MPI_CHAR, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    std::string where;
    for (int k = 0; k < size; ++k) where += std::string(k ? " " : "") + &hosts[k * sizeof(host)];
    printf("mn_attn_check: %d ranks (%s), %s bootstrap, %d algorithm x case runs forward+backward per rank, "
           "%d failed\n", size, where.c_str(), uid ? "unique-id" : "MPI", runs, failedAll);
  }
  MPI_Finalize();
  return failedAll == 0 ? 0 : 1;
}
