/*
 * attnccl: collective communication for distributed attention.
 *
 * The public C API. This header is plain C99 (usable from C, C++, MPI programs and framework
 * extensions) and compiles without the CUDA toolkit: when cuda_runtime.h has not been included
 * first, cudaStream_t is declared compatibly here. (C99 forbids repeating a typedef, so a C99
 * translation unit that uses both headers must include cuda_runtime.h before this one; C11 and
 * C++ do not care about the order.)
 *
 * Conventions, as in NCCL: opaque handles, one result type with strings, size/magic/version
 * prefixed structs filled by *_INITIALIZER macros, the stream as the last argument of every data
 * call. On a CPU communicator pass NULL as the stream.
 */
#ifndef ATTNCCL_H_
#define ATTNCCL_H_

#include <stddef.h>
#include <stdint.h>

#if !defined(__DRIVER_TYPES_H__) && !defined(__CUDA_RUNTIME_H__) && !defined(ATTNCCL_CUDA_STREAM_DECLARED)
typedef struct CUstream_st* cudaStream_t;
#endif
#define ATTNCCL_CUDA_STREAM_DECLARED 1

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ versions */
#define ATTNCCL_MAJOR 0
#define ATTNCCL_MINOR 2
#define ATTNCCL_PATCH 0
#define ATTNCCL_VERSION(X, Y, Z) ((X) * 10000 + (Y) * 100 + (Z))
#define ATTNCCL_VERSION_CODE ATTNCCL_VERSION(ATTNCCL_MAJOR, ATTNCCL_MINOR, ATTNCCL_PATCH)

/* ------------------------------------------------------------------ results */

/* The last two enumerators of every enum type below: they make every int a value of the type,
 * so a value outside the enumerators that a caller passes (C allows any int) reaches the
 * library's checks intact, where C++ could otherwise assume a narrower range. Never use them. */
#define ATTNCCL_ENUM_INT_RANGE(prefix) prefix##IntMin_ = (-2147483647 - 1), prefix##IntMax_ = 2147483647

typedef enum {
  attncclSuccess = 0,
  attncclUnhandledCudaError = 1,
  attncclSystemError = 2,
  attncclInternalError = 3,
  attncclInvalidArgument = 4,
  attncclInvalidUsage = 5,
  attncclRemoteError = 6,
  attncclInProgress = 7,
  attncclTimeout = 8,
  attncclNotSupported = 9,
  attncclNumResults = 10,
  ATTNCCL_ENUM_INT_RANGE(attncclResult)
} attncclResult_t;

const char* attncclGetErrorString(attncclResult_t result);
typedef struct attncclComm* attncclComm_t;

/* Human-readable detail of the last failure on this thread (comm may be NULL). */
const char* attncclGetLastError(attncclComm_t comm);
attncclResult_t attncclGetVersion(int* version);

/* ------------------------------------------------------------------ communicators */

#define ATTNCCL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[ATTNCCL_UNIQUE_ID_BYTES];
} attncclUniqueId;

#define ATTNCCL_DEVICE_CPU (-1)
#define ATTNCCL_CONFIG_UNDEF_INT (-2147483647 - 1)
#define ATTNCCL_CONFIG_MAGIC 0xa77cc1c0u

typedef struct {
  size_t size;          /* sizeof(attncclConfig_t), set by the initializer */
  unsigned int magic;   /* ATTNCCL_CONFIG_MAGIC */
  unsigned int version; /* ATTNCCL_VERSION_CODE of the header the caller compiled against */
  int device;           /* ATTNCCL_DEVICE_CPU (default) or a CUDA device ordinal */
  int blocking;         /* 1 (default): calls return when done; 0: attncclInProgress */
  int timeoutMs;        /* 0 = default (env ATTNCCL_TIMEOUT_MS); bounds every wait */
  int cpuThreads;       /* compute threads per rank, 0 = auto (the rank's share of the cores) */
  const char* transport; /* NULL or "auto", "shm", "ucx" (env ATTNCCL_TRANSPORT) */
  /* --- added later: a config whose size ends before such a field leaves it at its default --- */
  int hybridGroupSize; /* ranks per head-all-to-all group of attncclAlgoHybrid; 0 = by node */
} attncclConfig_t;

#define ATTNCCL_CONFIG_INITIALIZER                                                        \
  {                                                                                       \
    sizeof(attncclConfig_t), ATTNCCL_CONFIG_MAGIC, ATTNCCL_VERSION_CODE,                  \
        ATTNCCL_CONFIG_UNDEF_INT, ATTNCCL_CONFIG_UNDEF_INT, ATTNCCL_CONFIG_UNDEF_INT,     \
        ATTNCCL_CONFIG_UNDEF_INT, NULL, ATTNCCL_CONFIG_UNDEF_INT                          \
  }

attncclResult_t attncclGetUniqueId(attncclUniqueId* uniqueId);
attncclResult_t attncclCommInitRank(attncclComm_t* comm, int nranks, attncclUniqueId commId, int rank,
                                    attncclConfig_t* config);
/* Ranks with the same color form a new communicator, ordered by key (ties: by old rank).
 * color < 0 (ATTNCCL_SPLIT_NOCOLOR) takes no part and gets *newcomm = NULL. */
#define ATTNCCL_SPLIT_NOCOLOR (-1)
attncclResult_t attncclCommSplit(attncclComm_t comm, int color, int key, attncclComm_t* newcomm,
                                 attncclConfig_t* config);
attncclResult_t attncclCommFinalize(attncclComm_t comm);
attncclResult_t attncclCommDestroy(attncclComm_t comm);
attncclResult_t attncclCommAbort(attncclComm_t comm);
attncclResult_t attncclCommGetAsyncError(attncclComm_t comm, attncclResult_t* asyncError);
attncclResult_t attncclCommCount(const attncclComm_t comm, int* count);
attncclResult_t attncclCommUserRank(const attncclComm_t comm, int* rank);

typedef struct {
  size_t size; /* set to sizeof(attncclCommStats_t) by the caller; older sizes are honoured */
  uint64_t bytesSent, bytesRecv, messagesSent, messagesRecv;
} attncclCommStats_t;
/* Payload that crossed from this rank to another (sent) or into it (received) since init,
 * whatever the mechanism (copy, direct load from a peer's window, RDMA). Self traffic is not
 * counted. */
attncclResult_t attncclCommGetStats(attncclComm_t comm, attncclCommStats_t* stats);

/* Memory the library allocates in shared memory: peers on the node read it in place (the
 * zero-copy path of the shm transport). Usable anywhere a host buffer is expected. */
attncclResult_t attncclMemAlloc(void** ptr, size_t size);
attncclResult_t attncclMemFree(void* ptr);

/* ------------------------------------------------------------------ data types */
typedef enum {
  attncclInt8 = 0,
  attncclUint8 = 1,
  attncclInt32 = 2,
  attncclInt64 = 3,
  attncclFloat16 = 4,
  attncclBfloat16 = 5,
  attncclFloat32 = 6,
  attncclFloat64 = 7,
  attncclNumTypes = 8,
  ATTNCCL_ENUM_INT_RANGE(attncclDataType)
} attncclDataType_t;

/* Reductions, with NCCL's values. Avg = the sum divided by the rank count (integer types: integer
 * division, truncating); fp16/bf16 reduce in fp32 and round once. */
typedef enum {
  attncclSum = 0,
  attncclProd = 1,
  attncclMax = 2,
  attncclMin = 3,
  attncclAvg = 4,
  attncclNumOps = 5,
  ATTNCCL_ENUM_INT_RANGE(attncclRedOp)
} attncclRedOp_t;

/* ------------------------------------------------------------------ building blocks */
attncclResult_t attncclSend(const void* sendbuff, size_t count, attncclDataType_t datatype, int peer,
                            attncclComm_t comm, cudaStream_t stream);
attncclResult_t attncclRecv(void* recvbuff, size_t count, attncclDataType_t datatype, int peer,
                            attncclComm_t comm, cudaStream_t stream);
attncclResult_t attncclGroupStart(void);
attncclResult_t attncclGroupEnd(void);
attncclResult_t attncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                 attncclDataType_t datatype, attncclComm_t comm, cudaStream_t stream);
attncclResult_t attncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                     attncclDataType_t datatype, attncclRedOp_t op, attncclComm_t comm,
                                     cudaStream_t stream);
/* recvbuff = op over all ranks of sendbuff (count elements each); in place when equal. */
attncclResult_t attncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, attncclDataType_t datatype,
                                 attncclRedOp_t op, attncclComm_t comm, cudaStream_t stream);
/* Every rank's recvbuff = root's sendbuff (sendbuff is read on the root only). */
attncclResult_t attncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, attncclDataType_t datatype,
                                 int root, attncclComm_t comm, cudaStream_t stream);
/* root's recvbuff = op over all ranks of sendbuff; recvbuff is not touched on other ranks. */
attncclResult_t attncclReduce(const void* sendbuff, void* recvbuff, size_t count, attncclDataType_t datatype,
                              attncclRedOp_t op, int root, attncclComm_t comm, cudaStream_t stream);
/* Returns on a rank once every rank of the communicator has called it. */
attncclResult_t attncclBarrier(attncclComm_t comm, cudaStream_t stream);
attncclResult_t attncclAllToAll(const void* sendbuff, void* recvbuff, size_t count,
                                attncclDataType_t datatype, attncclComm_t comm, cudaStream_t stream);
attncclResult_t attncclAllToAllv(const void* sendbuff, const size_t* sendcounts, const size_t* sdispls,
                                 void* recvbuff, const size_t* recvcounts, const size_t* rdispls,
                                 attncclDataType_t datatype, attncclComm_t comm, cudaStream_t stream);

/* ------------------------------------------------------------------ attention descriptor */
typedef enum {
  attncclLayoutContiguous = 0, /* P pieces per document, in order */
  attncclLayoutZigzag = 1,     /* 2P pieces; rank r holds pieces r and 2P-1-r */
  attncclLayoutStriped = 2,    /* position p within the document goes to rank p mod P */
  attncclNumLayouts = 3,
  ATTNCCL_ENUM_INT_RANGE(attncclLayout)
} attncclLayout_t;

#define ATTNCCL_ATTN_DESC_MAGIC 0xa77d35c0u

typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  attncclDataType_t dtype; /* attncclFloat32, attncclFloat16 or attncclBfloat16 */
  int64_t seqLen;          /* global tokens, all documents together; >= 1 */
  int numHeadsQ;
  int numHeadsKV; /* numHeadsQ % numHeadsKV == 0 */
  int headDim;    /* 1..256 */
  attncclLayout_t layout;
  int causal;          /* 0 or 1 */
  int64_t windowLeft;  /* -1 = unbounded */
  int64_t windowRight; /* -1 = unbounded */
  float softmaxScale;  /* 0 = 1/sqrt(headDim) */
  int64_t numSeqs;            /* documents; 0 (or cuSeqlens NULL) = one sequence */
  const int64_t* cuSeqlens;   /* host, numSeqs+1 offsets, [0] = 0, [numSeqs] = seqLen */
  /* --- 0.2: a descriptor whose size ends before a field leaves it at its default --- */
  int64_t batch; /* 0 or 1 = one sequence; B > 1 = B sequences of seqLen tokens, each sharded by
                    the same layout and documents; tensors [B][T_local][H][D], LSE [B][Hq][T_local] */
} attncclAttnDesc_t;

#define ATTNCCL_ATTN_DESC_INITIALIZER                                                          \
  {                                                                                            \
    sizeof(attncclAttnDesc_t), ATTNCCL_ATTN_DESC_MAGIC, ATTNCCL_VERSION_CODE, attncclFloat32,  \
        0, 0, 0, 0, attncclLayoutContiguous, 0, -1, -1, 0.0f, 0, NULL, 0                       \
  }

/* This rank's tokens under the descriptor's layout. Pure function. positions may be NULL. */
attncclResult_t attncclAttnLocalTokens(const attncclAttnDesc_t* desc, int nranks, int rank,
                                       int64_t* numTokens, int64_t* positions);

/* ------------------------------------------------------------------ attention collectives */
typedef enum {
  attncclAlgoAuto = 0,
  attncclAlgoRing = 1,      /* pass-KV ring */
  attncclAlgoPassQ = 2,     /* Q-send / result-return */
  attncclAlgoAllGather = 3, /* fused gather-scatter */
  attncclAlgoUlysses = 4,   /* head all-to-all */
  attncclAlgoHybrid = 5,    /* head all-to-all in groups, ring across groups */
  attncclNumAlgos = 6,
  ATTNCCL_ENUM_INT_RANGE(attncclAlgo)
} attncclAlgo_t;

/* Name of an algorithm ("auto", "ring", "passq", "allgather", "ulysses", "hybrid"). */
const char* attncclAlgoName(attncclAlgo_t algo);

attncclResult_t attncclAttnForward(const void* q, const void* k, const void* v, void* out, float* lse,
                                   const attncclAttnDesc_t* desc, attncclAlgo_t algo, attncclComm_t comm,
                                   cudaStream_t stream);
attncclResult_t attncclAttnBackward(const void* q, const void* k, const void* v, const void* out,
                                    const float* lse, const void* dout, void* dq, void* dk, void* dv,
                                    const attncclAttnDesc_t* desc, attncclAlgo_t algo, attncclComm_t comm,
                                    cudaStream_t stream);

/* ------------------------------------------------------------------ framework tensors (0.2) */
/* Strides in elements of a [batch][T_local][H][headDim] tensor view; the head dimension (the last)
 * is always contiguous. Element (b, t, h, e) lies at b*batch + t*token + h*head + e. All three 0 =
 * contiguous. q, k and v as slices of one packed [B][T][Hq+2*Hkv][D] QKV buffer go in as they
 * are: token stride (Hq+2*Hkv)*D, head stride D. */
typedef struct {
  int64_t batch, token, head;
} attncclStrides_t;

#define ATTNCCL_ATTN_TENSORS_MAGIC 0xa77e75c0u

typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  const void *q, *k, *v;
  void* out;
  float* lse; /* float32 [batch][numHeadsQ][T_local]; may be NULL in forward */
  const void* dout;
  void *dq, *dk, *dv;
  const float* sinks; /* NULL, or float32 [numHeadsQ]: one extra logit per head whose value is 0 */
  float* dsinks;      /* backward: written (not added); the total over all ranks; may be NULL */
  attncclStrides_t qStrides, kStrides, vStrides, outStrides, doutStrides, dqStrides, dkStrides, dvStrides;
  attncclStrides_t lseStrides; /* (b, h, t) at b*batch + h*head + t: token must be 0 or 1 */
} attncclAttnTensors_t;

#define ATTNCCL_ATTN_TENSORS_INITIALIZER                                                                  \
  {                                                                                                       \
    sizeof(attncclAttnTensors_t), ATTNCCL_ATTN_TENSORS_MAGIC, ATTNCCL_VERSION_CODE, NULL, NULL, NULL,     \
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0},       \
        {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}                                             \
  }

/* Reads q, k, v, sinks; writes out and (if not NULL) lse. With sinks, LSE includes the sink:
 * LSE = log(exp(sinks[h]) + sum_j exp(s_j)), and a row that sees no key has O = 0, LSE = sinks[h]. */
attncclResult_t attncclAttnForwardEx(const attncclAttnTensors_t* tensors, const attncclAttnDesc_t* desc,
                                     attncclAlgo_t algo, attncclComm_t comm, cudaStream_t stream);
/* Reads q, k, v, out, lse, dout, sinks; writes dq, dk, dv and (if not NULL) dsinks[h] =
 * -sum over every query row of head h (whole batch and sequence, all ranks) of
 * exp(sinks[h] - LSE) * (dO . O), the same on every rank. */
attncclResult_t attncclAttnBackwardEx(const attncclAttnTensors_t* tensors, const attncclAttnDesc_t* desc,
                                      attncclAlgo_t algo, attncclComm_t comm, cudaStream_t stream);

typedef enum {
  attncclSeqToHead = 0,
  attncclHeadToSeq = 1,
  ATTNCCL_ENUM_INT_RANGE(attncclHeadDirection)
} attncclHeadDirection_t;

/* Head range of a rank for a head all-to-all: contiguous, as even as possible. */
attncclResult_t attncclHeadRange(int numHeads, int nranks, int rank, int* first, int* count);
/* attncclSeqToHead: in [T_local][numHeads][headDim] -> out [seqLen][H_r][headDim]
 * (all tokens in global position order, this rank's head range); attncclHeadToSeq inverts it.
 * The descriptor gives dtype, seqLen, layout, documents and headDim; its head counts are ignored. */
attncclResult_t attncclHeadAllToAll(const void* in, void* out, int numHeads, int direction,
                                    const attncclAttnDesc_t* desc, attncclComm_t comm, cudaStream_t stream);

/* Merge the partial result B into (out, lse), numerically stable. out and outB are
 * [tokens][numHeads][headDim] in t; lse and lseB float32 [numHeads][tokens]. A row whose lse is
 * -inf holds nothing yet. comm may be NULL (host memory). */
attncclResult_t attncclMergeStates(void* out, float* lse, const void* outB, const float* lseB, int64_t tokens,
                                   int numHeads, int headDim, attncclDataType_t t, attncclComm_t comm,
                                   cudaStream_t stream);

/* ------------------------------------------------------------------ inference: sharded KV cache (0.2) */
typedef struct attncclKvCache* attncclKvCache_t;

typedef enum {
  attncclKvPlaceRoundRobin = 0, /* block b of blockTokens positions lives on rank b mod P */
  attncclKvPlaceContiguous = 1, /* rank r holds piece r of capacity (as even as possible) */
  attncclNumKvPlacements = 2,
  ATTNCCL_ENUM_INT_RANGE(attncclKvPlacement)
} attncclKvPlacement_t;

#define ATTNCCL_KV_CACHE_DESC_MAGIC 0xa77cac5eu

typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  attncclDataType_t dtype;
  int numHeadsQ, numHeadsKV, headDim;
  int64_t capacity; /* positions the cache can hold, all ranks together */
  attncclKvPlacement_t placement;
  int64_t blockTokens; /* 0 = the library's choice */
  int64_t windowLeft;  /* -1 = unbounded */
  float softmaxScale;  /* 0 = 1/sqrt(headDim) */
} attncclKvCacheDesc_t;

#define ATTNCCL_KV_CACHE_DESC_INITIALIZER                                                      \
  {                                                                                            \
    sizeof(attncclKvCacheDesc_t), ATTNCCL_KV_CACHE_DESC_MAGIC, ATTNCCL_VERSION_CODE,           \
        attncclFloat32, 0, 0, 0, 0, attncclKvPlaceRoundRobin, 0, -1, 0.0f                      \
  }

/* Collective: every rank's shard is allocated by the library. Length starts at 0. */
attncclResult_t attncclKvCacheCreate(attncclKvCache_t* cache, const attncclKvCacheDesc_t* desc,
                                     attncclComm_t comm);
attncclResult_t attncclKvCacheDestroy(attncclKvCache_t cache);
attncclResult_t attncclKvCacheLength(attncclKvCache_t cache, int64_t* tokens);
/* Every rank passes the same n tokens k, v [n][numHeadsKV][headDim] (positions [length,
 * length+n)); each keeps the ones it owns. Past capacity: an error that changes nothing. */
attncclResult_t attncclKvCacheAppend(attncclKvCache_t cache, const void* k, const void* v, int64_t n,
                                     cudaStream_t stream);
/* Collective: n queries q [n][numHeadsQ][headDim] (the same on every rank) at positions
 * [length-n, length); every rank receives out [n][numHeadsQ][headDim] and lse float32
 * [numHeadsQ][n] (may be NULL). n = 1: decode; n > 1: chunked prefill (append, then attend). */
attncclResult_t attncclKvCacheAttend(attncclKvCache_t cache, const void* q, int64_t n, void* out, float* lse,
                                     cudaStream_t stream);

/* ------------------------------------------------------------------ fault tolerance (0.2) */
/* Called by every surviving rank; works on a parent in an error state without aborting it
 * first. The excluded ranks take no part (they may be dead). The new communicator numbers the
 * survivors in their old order; the parent stays valid for destroy. */
attncclResult_t attncclCommShrink(attncclComm_t comm, const int* excludeRanks, int excludeCount,
                                  attncclComm_t* newcomm, attncclConfig_t* config);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATTNCCL_H_ */
