// The public attention calls of include/attnccl.h: argument checks (every failure names the
// argument and its value), then the one-rank path (local attention; every algorithm reduces to
// it) or the distributed executors (attn/dispatch.h).
#include <cstring>
#include <new>
#include <vector>

#include "attn/algos/registry.h"
#include "attn/batch_run.h"
#include "attn/call_tensors.h"
#include "attn/desc.h"
#include "attn/device_entry.h"
#include "attn/dispatch.h"
#include "attn/layout.h"
#include "attn/local.h"
#include "attn/tile.h"
#include "comm/comm.h"
#include "core/dtype.h"
#include "core/export.h"
#include "core/result.h"

using namespace attnccl;
using namespace attnccl::attn;

namespace {

attncclResult_t resolveFor(const char* fn, const attncclAttnDesc_t* desc, AttnShape* shape) {
  attncclResult_t r = resolveDesc(desc, shape);
  if (r != attncclSuccess) prefixLastError(fn);
  return r;
}

// Enum arguments are checked as the integers the caller passed (an out-of-range value must not
// be used as the enum type).
attncclResult_t checkAlgo(const char* fn, attncclAlgo_t algo) {
  int v;
  static_assert(sizeof(v) == sizeof(algo), "attncclAlgo_t is int-sized");
  memcpy(&v, &algo, sizeof v);
  ATTN_ARG(v >= 0 && v < attncclNumAlgos, "%s: algo %d is not a known attncclAlgo_t", fn, v);
  return attncclSuccess;
}

// On a CPU communicator (or without one) the stream must be NULL.
attncclResult_t checkStream(const char* fn, const attncclComm* comm, cudaStream_t stream) {
  if (comm == nullptr || comm->config.device == ATTNCCL_DEVICE_CPU) {
    ATTN_ARG(stream == nullptr, "%s: stream is %p but the %s is on the CPU (pass NULL)", fn, static_cast<void*>(stream),
             comm == nullptr ? "call (comm NULL)" : "communicator");
  }
  return attncclSuccess;
}

// What every attention collective checks first: the communicator, the descriptor (resolved into
// *s), the algorithm and the stream; *tokens = this rank's tokens of each sequence.
attncclResult_t checkAttentionCall(const char* fn, const attncclAttnDesc_t* desc, attncclAlgo_t algo,
                                   attncclComm* comm, cudaStream_t stream, AttnShape* s, int64_t* tokens) {
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(resolveFor(fn, desc, s));
  ATTN_CHECK(checkAlgo(fn, algo));
  ATTN_CHECK(checkStream(fn, comm, stream));
  *tokens = localTokenCount(*s, comm->nranks, comm->rank);
  return attncclSuccess;
}

#define ATTN_TENSOR(ptr, tokens, fn)                                                                         \
  ATTN_ARG((ptr) != nullptr || (tokens) == 0, "%s: " #ptr " is NULL but this rank holds %lld tokens", fn, \
           static_cast<long long>(tokens))

}  // namespace

ATTN_EXPORT const char* attncclAlgoName(attncclAlgo_t algo) {
  if (algo == attncclAlgoAuto) return "auto";  // not an algorithm of the table: it picks one
  const AlgoEntry* a = findAlgorithm(algo);
  return a != nullptr ? a->name : "unknown";
}

ATTN_EXPORT attncclResult_t attncclAttnLocalTokens(const attncclAttnDesc_t* desc, int nranks, int rank,
                                                   int64_t* numTokens, int64_t* positions) {
  const char* fn = "attncclAttnLocalTokens";
  AttnShape s;
  ATTN_CHECK(resolveFor(fn, desc, &s));
  ATTN_ARG(nranks >= 1, "%s: nranks %d must be >= 1", fn, nranks);
  ATTN_ARG(rank >= 0 && rank < nranks, "%s: rank %d is not in 0..%d", fn, rank, nranks - 1);
  ATTN_ARG(numTokens != nullptr, "%s: numTokens is NULL", fn);
  try {
    if (positions == nullptr) {
      *numTokens = localTokenCount(s, nranks, rank);
    } else {
      std::vector<int64_t> pos = localPositions(s, nranks, rank);
      *numTokens = static_cast<int64_t>(pos.size());
      if (!pos.empty()) memcpy(positions, pos.data(), pos.size() * sizeof(int64_t));
    }
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "%s: out of memory", fn);
  }
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclAttnForward(const void* q, const void* k, const void* v, void* out, float* lse,
                                               const attncclAttnDesc_t* desc, attncclAlgo_t algo, attncclComm_t comm,
                                               cudaStream_t stream) {
  const char* fn = "attncclAttnForward";
  AttnShape s;
  int64_t tokens = 0;
  ATTN_CHECK(checkAttentionCall(fn, desc, algo, comm, stream, &s, &tokens));
  ATTN_TENSOR(q, tokens, fn);
  ATTN_TENSOR(k, tokens, fn);
  ATTN_TENSOR(v, tokens, fn);
  ATTN_TENSOR(out, tokens, fn);
  CallTensors c = contiguousCallTensors(s, s.batch, tokens, false, q, k, v, out, lse, nullptr, nullptr, nullptr, nullptr);
  return commRun(comm, fn, [comm, s, c, algo, stream]() { return runForward(comm, s, c, algo, stream); });
}

namespace {

// attncclAttnForwardEx / BackwardEx: the same checks as the 0.1 calls, then the tensors struct.
attncclResult_t attentionEx(const char* fn, bool backward, const attncclAttnTensors_t* tensors,
                            const attncclAttnDesc_t* desc, attncclAlgo_t algo, attncclComm_t comm, cudaStream_t stream) {
  AttnShape s;
  int64_t tokens = 0;
  ATTN_CHECK(checkAttentionCall(fn, desc, algo, comm, stream, &s, &tokens));
  CallTensors c;
  ATTN_CHECK(resolveCallTensors(fn, tensors, s, s.batch, tokens, backward, &c));
  ATTN_CHECK(checkBackendServes(fn, comm, s, c));
  return commRun(comm, fn, [comm, s, c, algo, stream, backward]() {
    return backward ? runBackward(comm, s, c, algo, stream) : runForward(comm, s, c, algo, stream);
  });
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclAttnForwardEx(const attncclAttnTensors_t* tensors, const attncclAttnDesc_t* desc,
                                                 attncclAlgo_t algo, attncclComm_t comm, cudaStream_t stream) {
  return attentionEx("attncclAttnForwardEx", false, tensors, desc, algo, comm, stream);
}

ATTN_EXPORT attncclResult_t attncclAttnBackwardEx(const attncclAttnTensors_t* tensors, const attncclAttnDesc_t* desc,
                                                  attncclAlgo_t algo, attncclComm_t comm, cudaStream_t stream) {
  return attentionEx("attncclAttnBackwardEx", true, tensors, desc, algo, comm, stream);
}

ATTN_EXPORT attncclResult_t attncclAttnBackward(const void* q, const void* k, const void* v, const void* out,
                                                const float* lse, const void* dout, void* dq, void* dk, void* dv,
                                                const attncclAttnDesc_t* desc, attncclAlgo_t algo,
                                                attncclComm_t comm, cudaStream_t stream) {
  const char* fn = "attncclAttnBackward";
  AttnShape s;
  int64_t tokens = 0;
  ATTN_CHECK(checkAttentionCall(fn, desc, algo, comm, stream, &s, &tokens));
  ATTN_TENSOR(q, tokens, fn);
  ATTN_TENSOR(k, tokens, fn);
  ATTN_TENSOR(v, tokens, fn);
  ATTN_TENSOR(out, tokens, fn);
  ATTN_TENSOR(lse, tokens, fn);
  ATTN_TENSOR(dout, tokens, fn);
  ATTN_TENSOR(dq, tokens, fn);
  ATTN_TENSOR(dk, tokens, fn);
  ATTN_TENSOR(dv, tokens, fn);
  CallTensors c = contiguousCallTensors(s, s.batch, tokens, true, q, k, v, out, lse, dout, dq, dk, dv);
  return commRun(comm, fn, [comm, s, c, algo, stream]() { return runBackward(comm, s, c, algo, stream); });
}

namespace {

attncclResult_t mergeStates(void* out, float* lse, const void* outB, const float* lseB, int64_t tokens, int numHeads,
                            int headDim, attncclDataType_t t, ThreadPool& pool) {
  const int64_t width = static_cast<int64_t>(numHeads) * headDim;
  if (t == attncclFloat32) {
    mergeAccumulators(static_cast<float*>(out), lse, static_cast<const float*>(outB), lseB, tokens, numHeads,
                      headDim, width, tokens, pool);
    return attncclSuccess;
  }
  try {
    std::vector<float> a(static_cast<size_t>(tokens * width)), b(a.size());
    loadRows(t, out, width, a.data(), width, tokens, width, pool);
    loadRows(t, outB, width, b.data(), width, tokens, width, pool);
    mergeAccumulators(a.data(), lse, b.data(), lseB, tokens, numHeads, headDim, width, tokens, pool);
    storeRows(t, a.data(), width, out, width, tokens, width, pool);
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "attncclMergeStates: out of memory (%lld tokens)", static_cast<long long>(tokens));
  }
  return attncclSuccess;
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclMergeStates(void* out, float* lse, const void* outB, const float* lseB,
                                               int64_t tokens, int numHeads, int headDim, attncclDataType_t t,
                                               attncclComm_t comm, cudaStream_t stream) {
  const char* fn = "attncclMergeStates";
  if (comm != nullptr) ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkStream(fn, comm, stream));
  ATTN_ARG(tokens >= 0, "%s: tokens %lld must be >= 0", fn, static_cast<long long>(tokens));
  ATTN_ARG(numHeads >= 1, "%s: numHeads %d must be >= 1", fn, numHeads);
  ATTN_ARG(headDim >= 1, "%s: headDim %d must be >= 1", fn, headDim);
  // Element counts are formed in int64 (and the staging of 16-bit types in size_t): no overflow.
  ATTN_ARG(tokens <= (int64_t{1} << 40) / (static_cast<int64_t>(numHeads) * headDim),
           "%s: tokens %lld x numHeads %d x headDim %d is more than 2^40 elements", fn, static_cast<long long>(tokens),
           numHeads, headDim);
  int tv;
  memcpy(&tv, &t, sizeof tv);
  ATTN_ARG(tv == attncclFloat32 || tv == attncclFloat16 || tv == attncclBfloat16,
           "%s: datatype %d (%s) is not attncclFloat32, attncclFloat16 or attncclBfloat16", fn, tv,
           tv >= 0 && tv < attncclNumTypes ? dtypeName(static_cast<attncclDataType_t>(tv)) : "unknown");
  ATTN_TENSOR(out, tokens, fn);
  ATTN_TENSOR(lse, tokens, fn);
  ATTN_TENSOR(outB, tokens, fn);
  ATTN_TENSOR(lseB, tokens, fn);
  if (tokens == 0) return attncclSuccess;
  if (comm == nullptr) {
    ThreadPool inlinePool(1);  // no worker threads: runs on the caller
    return mergeStates(out, lse, outB, lseB, tokens, numHeads, headDim, t, inlinePool);
  }
  return commRun(comm, fn, [=]() {
    if (comm->dev) return deviceMergeStates(comm, out, lse, outB, lseB, tokens, numHeads, headDim, t, stream);
    return mergeStates(out, lse, outB, lseB, tokens, numHeads, headDim, t, *comm->pool);
  });
}

ATTN_EXPORT attncclResult_t attncclHeadRange(int numHeads, int nranks, int rank, int* first, int* count) {
  const char* fn = "attncclHeadRange";
  ATTN_ARG(numHeads >= 1, "%s: numHeads %d must be >= 1", fn, numHeads);
  ATTN_ARG(nranks >= 1, "%s: nranks %d must be >= 1", fn, nranks);
  ATTN_ARG(rank >= 0 && rank < nranks, "%s: rank %d is not in 0..%d", fn, rank, nranks - 1);
  ATTN_ARG(first != nullptr && count != nullptr, "%s: %s is NULL", fn, first == nullptr ? "first" : "count");
  int64_t b, e;
  evenPiece(numHeads, nranks, rank, &b, &e);
  *first = static_cast<int>(b);
  *count = static_cast<int>(e - b);
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclHeadAllToAll(const void* in, void* out, int numHeads, int direction,
                                                const attncclAttnDesc_t* desc, attncclComm_t comm,
                                                cudaStream_t stream) {
  const char* fn = "attncclHeadAllToAll";
  ATTN_CHECK(checkComm(comm, fn));
  ATTN_CHECK(checkStream(fn, comm, stream));
  ATTN_ARG(numHeads >= 1, "%s: numHeads %d must be >= 1", fn, numHeads);
  ATTN_ARG(direction == attncclSeqToHead || direction == attncclHeadToSeq,
           "%s: direction %d is not attncclSeqToHead or attncclHeadToSeq", fn, direction);
  ATTN_ARG(desc != nullptr, "%s: desc is NULL", fn);
  // The descriptor's head counts are ignored here (numHeads says them): validate it with numHeads.
  attncclAttnDesc_t d;
  memset(&d, 0, sizeof(d));
  memcpy(&d, desc, desc->size < sizeof(d) ? desc->size : sizeof(d));
  d.numHeadsQ = numHeads;
  d.numHeadsKV = numHeads;
  AttnShape s;
  ATTN_CHECK(resolveFor(fn, &d, &s));
  int first = 0, count = 0;
  ATTN_CHECK(attncclHeadRange(numHeads, comm->nranks, comm->rank, &first, &count));
  const int64_t seqRows = localTokenCount(s, comm->nranks, comm->rank);
  const int64_t headRows = count > 0 ? s.seqLen : 0;
  const int64_t inRows = direction == attncclSeqToHead ? seqRows : headRows;
  const int64_t outRows = direction == attncclSeqToHead ? headRows : seqRows;
  ATTN_TENSOR(in, inRows, fn);
  ATTN_TENSOR(out, outRows, fn);
  // Out of place (one rank: any overlap is a plain move of the whole tensor).
  const int64_t rowBytes = static_cast<int64_t>(s.headDim) * static_cast<int64_t>(dtypeSize(s.dtype));
  const int64_t inBytes = inRows * (direction == attncclSeqToHead ? numHeads : count) * rowBytes;
  const int64_t outBytes = outRows * (direction == attncclSeqToHead ? count : numHeads) * rowBytes;
  const char* inB = static_cast<const char*>(in);
  const char* outB = static_cast<const char*>(out);
  const int64_t inAll = inBytes * s.batch, outAll = outBytes * s.batch;
  ATTN_ARG(comm->nranks == 1 || inAll == 0 || outAll == 0 || inB >= outB + outAll || outB >= inB + inAll,
           "%s: in (%p, %lld bytes) and out (%p, %lld bytes) overlap", fn, in, static_cast<long long>(inAll), out,
           static_cast<long long>(outAll));
  // A batch (desc->batch > 1): in and out hold B sequences back to back, each exchanged alone.
  return commRun(comm, fn, [=]() -> attncclResult_t {
    for (int64_t b = 0; b < s.batch; ++b) {
      const void* inB = in ? static_cast<const char*>(in) + b * inBytes : nullptr;
      void* outB = out ? static_cast<char*>(out) + b * outBytes : nullptr;
      if (comm->dev) {
        ATTN_CHECK(deviceHeadAllToAll(comm, s, inB, outB, numHeads, direction, stream));
      } else if (comm->nranks == 1) {  // one rank holds every token and every head: the layouts agree
        if (inB != outB) memmove(outB, inB, static_cast<size_t>(inBytes));
      } else {
        ATTN_CHECK(headAllToAll(comm, s, inB, outB, numHeads, direction));
      }
    }
    return attncclSuccess;
  });
}
