// The batch: B sequences that attention never crosses, each sharded by the same layout. Every
// backend serves one sequence (its plans, schedules and tuned choices are per sequence shape), so
// a call runs them back to back, B collectives inside one library call (one commRun: a
// non-blocking communicator completes the whole batch as one operation). Sequence b's tensors are
// the caller's views offset by b times their batch strides (call_tensors.h): nothing is copied.
//
// Sinks' gradient (API: dsinks[h] = -sum over every query row of head h, all sequences, all ranks,
// of exp(sinks[h] - LSE) * (dO . O)): each rank sums its own rows in fp64, then one all-reduce of
// Hq doubles (rank order, so every rank gets the same bits), negated and rounded once.
#include "attn/batch_run.h"

#include <cmath>
#include <new>
#include <vector>

#include "attn/device_entry.h"
#include "attn/dispatch.h"
#include "attn/local.h"
#include "attn/tile.h"
#include "collectives/exchange.h"
#include "collectives/segments.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

namespace {

attncclResult_t sinkGradient(attncclComm* comm, const AttnShape& s, const CallTensors& c) {
  const int Hq = s.numHeadsQ, D = s.headDim;
  const int64_t T = c.tokens;
  std::vector<double> part(static_cast<size_t>(Hq), 0.0), total(part.size(), 0.0);
  try {
    std::vector<float> delta(static_cast<size_t>(T) * Hq);
    for (int64_t b = 0; b < c.batch && T > 0; ++b) {
      BwdTensors t = c.backwardOf(b);
      computeDelta(s.dtype, t.out, tokenStride(t.os, Hq, D), headStride(t.os, D), t.dout, tokenStride(t.dos, Hq, D),
                   headStride(t.dos, D), T, Hq, D, delta.data(), T, *comm->pool);
      const int64_t ld = t.ldlse ? t.ldlse : T;
      for (int h = 0; h < Hq; ++h) {
        double sum = 0.0;
        for (int64_t i = 0; i < T; ++i)
          sum += std::exp(static_cast<double>(c.sinks[h]) - t.lse[h * ld + i]) * delta[h * T + i];
        part[h] += sum;
      }
    }
  } catch (const std::bad_alloc&) {
    return fail(attncclSystemError, "attention sinks' gradient: out of memory (%lld tokens)", static_cast<long long>(T));
  }
  if (comm->nranks > 1) {
    const std::vector<int> peers = peerOrder(comm->rank, comm->nranks);
    ATTN_CHECK(exchangeWholeAndReduce(comm, reinterpret_cast<const char*>(part.data()),
                                      reinterpret_cast<char*>(total.data()), part.size(), attncclFloat64, attncclSum,
                                      peers, peers));
  } else {
    total = part;
  }
  for (int h = 0; h < Hq; ++h) c.dsinks[h] = static_cast<float>(-total[h]);
  return attncclSuccess;
}

}  // namespace

attncclResult_t checkBackendServes(const char* fn, const attncclComm* comm, const AttnShape& s, const CallTensors& c) {
  if (comm->dev == nullptr) return attncclSuccess;
  if (c.sinks != nullptr)
    return fail(attncclNotSupported, "%s: attention sinks are not supported on a CUDA communicator yet", fn);
  if (!c.allDense(s))
    return fail(attncclNotSupported,
                "%s: strided tensor views are not supported on a CUDA communicator yet (pass contiguous tensors)", fn);
  return attncclSuccess;
}

attncclResult_t runForward(attncclComm* comm, const AttnShape& s, const CallTensors& c, attncclAlgo_t algo,
                           cudaStream_t stream) {
  for (int64_t b = 0; b < c.batch; ++b) {
    const FwdTensors t = c.forward(b);
    if (comm->dev) {
      ATTN_CHECK(deviceForward(comm, s, t, algo, stream));
    } else if (comm->nranks == 1) {
      ATTN_CHECK(localForward(s, t, *comm->pool));
    } else {
      ATTN_CHECK(distributedForward(comm, s, t, algo));
    }
  }
  return attncclSuccess;
}

attncclResult_t runBackward(attncclComm* comm, const AttnShape& s, const CallTensors& c, attncclAlgo_t algo,
                            cudaStream_t stream) {
  for (int64_t b = 0; b < c.batch; ++b) {
    const BwdTensors t = c.backwardOf(b);
    if (comm->dev) {
      ATTN_CHECK(deviceBackward(comm, s, t, algo, stream));
    } else if (comm->nranks == 1) {
      ATTN_CHECK(localBackward(s, t, *comm->pool));
    } else {
      ATTN_CHECK(distributedBackward(comm, s, t, algo));
    }
  }
  if (c.dsinks != nullptr) ATTN_CHECK(sinkGradient(comm, s, c));
  return attncclSuccess;
}

}  // namespace attn
}  // namespace attnccl
