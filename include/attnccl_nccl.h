/*
 * attnccl_nccl.h: build an attnccl communicator from an NCCL communicator.
 *
 *   #include <nccl.h>
 *   #include "attnccl_nccl.h"
 *
 *   attncclComm_t comm;
 *   attncclCommInitNccl(&comm, ncclComm, NULL);   // collective over ncclComm
 *
 * Every rank of ncclComm calls it; the attnccl communicator has the same size and the same rank
 * order. NCCL carries only the rendezvous: rank 0 creates the attnccl unique id
 * (attncclGetUniqueId, which also serves the TCP bootstrap from that process), ncclBroadcast hands
 * it to the others through a small buffer on each rank's NCCL device, and every rank calls
 * attncclCommInitRank. Afterwards attnccl does not use NCCL; ncclComm may even be destroyed.
 *
 * Why header-inline: libattnccl.so neither links nor loads NCCL, so it loads on machines without
 * it; only the program that includes this header (and already links NCCL and the CUDA runtime)
 * does. It also guarantees that the NCCL which made ncclComm is the one that broadcasts over it
 * (a dlopen inside the library could find a different libnccl than the application's).
 *
 * config is passed through unchanged (NULL: the library's defaults, a CPU communicator). For a
 * GPU communicator set config->device, typically to the NCCL device:
 *   int dev; ncclCommCuDevice(ncclComm, &dev); cfg.device = dev;
 *
 * The broadcast runs on a private stream of the NCCL device and is waited for; the calling
 * thread's current CUDA device is restored before returning. With a non-blocking NCCL
 * communicator the call waits until NCCL has finished.
 *
 * Errors: a CUDA failure returns attncclUnhandledCudaError, an NCCL failure attncclSystemError.
 * If rank 0 cannot create the id, it still takes part in the broadcast, and every rank returns
 * that error instead of hanging. Include nccl.h (or cuda_runtime.h) before attnccl.h in C99
 * translation units (see attnccl.h); including this header first does that.
 */
#ifndef ATTNCCL_NCCL_H_
#define ATTNCCL_NCCL_H_

#include <cuda_runtime.h>
#include <nccl.h>
#include <string.h>

#include "attnccl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Waits for an NCCL call that returned ncclInProgress (non-blocking communicators, NCCL >= 2.14). */
static inline ncclResult_t attncclNcclWait_(ncclComm_t ncclComm, ncclResult_t r) {
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= 21400
  while (r == ncclInProgress) {
    if (ncclCommGetAsyncError(ncclComm, &r) != ncclSuccess) return ncclSystemError;
  }
#else
  (void)ncclComm;
#endif
  return r;
}

static inline attncclResult_t attncclCommInitNccl(attncclComm_t* comm, ncclComm_t ncclComm, attncclConfig_t* config) {
  /* The id travels together with rank 0's result, so a failure there is seen by every rank. */
  struct {
    attncclUniqueId id;
    int result;
  } msg;
  attncclResult_t res = attncclSuccess;
  int size = 0, rank = 0, ncclDev = 0, prevDev = 0;
  void* dbuf = NULL;
  cudaStream_t stream = NULL;

  if (comm == NULL || ncclComm == NULL) return attncclInvalidArgument;
  if (attncclNcclWait_(ncclComm, ncclCommCount(ncclComm, &size)) != ncclSuccess ||
      attncclNcclWait_(ncclComm, ncclCommUserRank(ncclComm, &rank)) != ncclSuccess ||
      attncclNcclWait_(ncclComm, ncclCommCuDevice(ncclComm, &ncclDev)) != ncclSuccess) {
    return attncclSystemError;
  }
  if (cudaGetDevice(&prevDev) != cudaSuccess || cudaSetDevice(ncclDev) != cudaSuccess) {
    return attncclUnhandledCudaError;
  }

  memset(&msg, 0, sizeof(msg));
  if (rank == 0) msg.result = (int)attncclGetUniqueId(&msg.id);
  if (cudaMalloc(&dbuf, sizeof(msg)) != cudaSuccess) {
    dbuf = NULL;
    res = attncclUnhandledCudaError;
    goto done;
  }
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    stream = NULL;
    res = attncclUnhandledCudaError;
    goto done;
  }
  if (rank == 0 && cudaMemcpy(dbuf, &msg, sizeof(msg), cudaMemcpyHostToDevice) != cudaSuccess) {
    res = attncclUnhandledCudaError;
    goto done;
  }
  /* In place: root sends from dbuf, everyone receives into it. */
  if (attncclNcclWait_(ncclComm, ncclBroadcast(dbuf, dbuf, sizeof(msg), ncclUint8, 0, ncclComm, stream)) !=
      ncclSuccess) {
    res = attncclSystemError;
    goto done;
  }
  if (cudaStreamSynchronize(stream) != cudaSuccess ||
      cudaMemcpy(&msg, dbuf, sizeof(msg), cudaMemcpyDeviceToHost) != cudaSuccess) {
    res = attncclUnhandledCudaError;
    goto done;
  }

done:
  if (stream != NULL) cudaStreamDestroy(stream);
  if (dbuf != NULL) cudaFree(dbuf);
  /* Back to the caller's device before attnccl initialises (it may select its own). */
  cudaSetDevice(prevDev);
  if (res != attncclSuccess) return res;
  if (msg.result != (int)attncclSuccess) return (attncclResult_t)msg.result;
  return attncclCommInitRank(comm, size, msg.id, rank, config);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATTNCCL_NCCL_H_ */
