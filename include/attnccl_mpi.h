/*
 * attnccl_mpi.h: build an attnccl communicator from an MPI communicator.
 *
 *   #include <mpi.h>
 *   #include "attnccl_mpi.h"
 *
 *   attncclComm_t comm;
 *   attncclCommInitMpi(&comm, MPI_COMM_WORLD, NULL);   // collective over MPI_COMM_WORLD
 *
 * Every process of mpiComm calls it; the attnccl communicator has the same size and the same rank
 * order as mpiComm. MPI carries only the rendezvous: rank 0 of mpiComm creates the unique id
 * (attncclGetUniqueId, which also serves the TCP bootstrap from that process), MPI_Bcast hands it
 * to the others, and every process calls attncclCommInitRank. Afterwards attnccl does not use MPI
 * at all; the MPI communicator may even be freed.
 *
 * Everything here is static inline, so libattnccl.so does not link or depend on MPI: only the
 * program that includes this header (and already links MPI) does. Include mpi.h first.
 *
 * Multi-node: launch with mpirun across hosts as usual (e.g. `mpirun -H a,b -np 16 ./app`). Ranks
 * on one host talk through shared memory; ranks on different hosts through UCX, which picks the
 * fastest network it finds (InfiniBand/RoCE when present; steer it with UCX_TLS / UCX_NET_DEVICES,
 * e.g. UCX_NET_DEVICES=mlx5_0:1). The host running MPI rank 0 must be reachable over TCP from all
 * others for the bootstrap; ATTNCCL_SOCKET_IFNAME selects the interface it listens on.
 *
 * Threads as extra ranks (several attnccl ranks per MPI process) are not covered by this helper:
 * broadcast one attncclUniqueId yourself and call attncclCommInitRank from each thread with
 * rank = mpiRank * threadsPerProcess + thread (the perf harness does exactly that).
 *
 * Errors: an MPI failure returns attncclSystemError (MPI's default error handler normally aborts
 * before that). If rank 0 cannot create the id, it still takes part in the broadcast, and every
 * process returns that error instead of hanging.
 */
#ifndef ATTNCCL_MPI_H_
#define ATTNCCL_MPI_H_

#include <mpi.h>
#include <string.h>

#include "attnccl.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline attncclResult_t attncclCommInitMpi(attncclComm_t* comm, MPI_Comm mpiComm, attncclConfig_t* config) {
  /* The id travels together with rank 0's result, so a failure there is seen by every process. */
  struct {
    attncclUniqueId id;
    int result;
  } msg;
  int size = 0, rank = 0;
  if (comm == NULL) return attncclInvalidArgument;
  if (MPI_Comm_size(mpiComm, &size) != MPI_SUCCESS || MPI_Comm_rank(mpiComm, &rank) != MPI_SUCCESS) {
    return attncclSystemError;
  }
  memset(&msg, 0, sizeof(msg));
  if (rank == 0) msg.result = (int)attncclGetUniqueId(&msg.id);
  if (MPI_Bcast(&msg, (int)sizeof(msg), MPI_BYTE, 0, mpiComm) != MPI_SUCCESS) return attncclSystemError;
  if (msg.result != (int)attncclSuccess) return (attncclResult_t)msg.result;
  return attncclCommInitRank(comm, size, msg.id, rank, config);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATTNCCL_MPI_H_ */
