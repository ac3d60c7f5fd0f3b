// One sweep value of an attention perf tool (perf/*_attn_perf.cc) on one rank: the rank's slice
// of seeded Q, K, V, dO over the global sequence, attncclAttnForward/Backward with the tool's
// algorithm, the check against the one-rank result, and the per-rank numbers of the table.
//
// Inputs: element (position p, head h, dim d) of tensor X is a hash of (X, p, h, d) mapped to
// [-1, 1), so every rank fills its own tokens (attncclAttnLocalTokens) and the one-rank
// reference fills the whole sequence with the very same values. With a batch (-Z B) sequence b
// uses positions b*S + p, so the sequences differ; tensors are [B][T][H][D], LSE [B][H][T]. With
// -Q the calls are attncclAttnForwardEx/BackwardEx and q, k, v are strided views of one
// [B][T][Hq+2*Hkv][D] buffer, as a framework's fused QKV projection leaves them (outputs and
// gradients stay contiguous).
//
// Reference (the -c check and the efficiency column): once per process and sweep value, the
// first rank thread to arrive creates a one-rank communicator with P x T compute threads (all
// of this process's rank threads' compute: the same resources), runs the whole sequence on it
// while the other rank threads sleep on a mutex, and keeps O, LSE, dQ, dK, dV. With the
// efficiency column on (and all ranks threads of this process) it also times that call
// (-w warm-up, -n iterations, the mean), so efficiency = t(1 rank, P x T threads) / t(P ranks).
//
// Check: every rank compares its rows with the reference's rows of the same global positions,
// by relative norm per tensor with docs/design.md's tolerances (fp32 1e-5, fp16 5e-3, bf16 2e-2) and
// LSE by absolute 1e-4. A tensor over its tolerance counts its elements whose error exceeds
// tolerance x rms(reference) (at least one); a NaN or an unwritten (poisoned) element always
// counts.
//
// Per-rank compute (the balance column): the seconds the rank's thread spent inside the tiles
// (attn/tile_clock.h) during the timed iterations; bytes sent: attncclCommGetStats around each
// timed call.
//
// A library call that fails (e.g. attncclNotSupported) does not end the tool: the rank prints
// the message, skips the later calls of this value, and the row says ERR.
#pragma once

#include <cstdint>
#include <memory>

#include "attnccl.h"
#include "harness/harness.h"

namespace perf {

struct AttnParams {
  int heads = 8;      // -H
  int kvHeads = 0;    // -K, 0 = heads
  int headDim = 64;   // -D
  bool causal = true;                              // -C
  attncclLayout_t layout = attncclLayoutZigzag;    // -l
  int64_t window = -1;                             // -W: left window, -1 = none
  bool forward = true, backward = true;            // -B
  bool efficiency = true;                          // -E
  int64_t batch = 1;                               // -Z: sequences per call (desc.batch)
  bool packed = false;                             // -Q: q, k, v as views of one packed QKV buffer
  attncclAlgo_t algo = attncclAlgoAuto;            // the tool's algorithm
  int kv() const { return kvHeads > 0 ? kvHeads : heads; }
};

enum AttnDir { kAttnFwd = 0, kAttnBwd = 1 };

// Case::stats() of an attention case, per timed direction (in phase order), in this order:
enum AttnStat {
  kStatTileSeconds = 0,  // the rank's tile seconds over the timed iterations
  kStatBytesPerCall,     // bytes this rank sent per call
  kStatRefSeconds,       // one-rank time per call (0 = not measured); only one rank reports it
  kStatAlgo,             // the algorithm that ran (auto: the one it chose)
  kStatError,            // 1 when a call of this direction failed on this rank
  kNumAttnStats
};

// The descriptor of a sweep value.
attncclAttnDesc_t attnDesc(const AttnParams& ap, attncclDataType_t dtype, int64_t seqLen);
// Visible (query, key) pairs of the descriptor (one document).
double attnVisiblePairs(const attncclAttnDesc_t& d);

std::unique_ptr<Case> makeAttnCase(const AttnParams& ap, const RankInfo& ri, int64_t seqLen);

// True when some call failed on a rank of this process (the tool then exits 3).
bool attnErrorSeen();

}  // namespace perf
