/* Compile-and-link check of the installed attnccl_mpi.h (run under mpirun it would build a
 * communicator over MPI_COMM_WORLD; the packaging test only builds it). */
#include <mpi.h>

#include <attnccl_mpi.h>
#include <stdio.h>

int main(int argc, char** argv) {
  attncclComm_t comm;
  attncclResult_t r;
  MPI_Init(&argc, &argv);
  r = attncclCommInitMpi(&comm, MPI_COMM_WORLD, NULL);
  if (r == attncclSuccess) attncclCommDestroy(comm);
  printf("attncclCommInitMpi: %s\n", attncclGetErrorString(r));
  MPI_Finalize();
  return r == attncclSuccess ? 0 : 1;
}
