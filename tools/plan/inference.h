// Inference with a K/V cache (the planner's analytic part): T new tokens attend to C cached
// tokens and causally to each other, context-parallel over P ranks that each hold 1/P of the
// cache and of the new tokens. The library's collectives are self-attention, so this is not run
// through a schedule; it follows Meta's context-parallel inference (Yang et al. 2024):
//
//   pass-KV  a ring of P steps; each step computes the local queries against one K/V shard
//            while the next shard travels: 2 (T + C)/P Hkv D es bytes per hop.
//   pass-Q   the queries travel instead: T/P Hq D es bytes per hop, every rank computes the
//            visiting queries against its own shard and sends the partial output home (storage
//            dtype plus fp32 LSE: T/P Hq (D es + 4) bytes) during the next step, as attnccl's
//            pass-Q returns results a round later (Meta's variant returns them all at the end
//            in one all-to-all: the same bytes, none of them hidden). The last partial goes home
//            exposed.
//   step     max(compute, transfer) as the ring overlaps them; compute = visible pairs / P^2 *
//            4 D Hq / F (+ the task overhead and accumulator traffic of the cluster model); the
//            ring's hop is the slowest link on it (InfiniBand when it spans nodes).
//
//   kv-cache attnccl's own path (attncclKvCacheAttend, src/attn/kvcache): the T new queries are
//            replicated, every rank attends them to its (C + T)/P cached tokens, then the
//            combine of attn/kvcache/cost.h: one round of an all-gather of the fp32 partials
//            (P-1 messages of 32 + T Hq (D + 1) 4 bytes per rank), or for large partials a
//            reduce-scatter by heads + all-gather (2 rounds, about 2 (P-1)/P of a partial), and
//            the merge. Its step is max(compute, reading the shard's K and V at memBandwidth)
//            + the rounds + the merge.
//
// Per hop the queries are smaller than the K/V shard when T/(T+C) < 2 Hkv/Hq (Meta's rule). But
// pass-Q also returns every partial output, as many bytes as its queries, so when both are
// bound by their links pass-Q's total traffic T Hq (2 D es + 4) meets pass-KV's 2 (T + C) Hkv D es
// near T/(T+C) = Hkv/Hq: half the rule. Compute that hides transfers moves it from there.
#pragma once

#include <cstdint>
#include <string>

#include "attnccl.h"
#include "plan/cluster.h"

namespace attnccl {
namespace plan {

struct InferenceSpec {
  int64_t newTokens = 1;
  int64_t cachedTokens = 0;
  int heads = 32, kvHeads = 8, headDim = 128;
  attncclDataType_t dtype = attncclBfloat16;
};

struct InferencePrediction {
  double missRate = 0;                 // T / (T + C)
  double passKVSeconds = 0, passQSeconds = 0;
  double passKVBytes = 0, passQBytes = 0;      // sent per rank
  double passKVExposed = 0, passQExposed = 0;  // time beyond the compute
  double computeSeconds = 0;           // one rank's attention compute
  // attnccl's KV cache path (attncclKvCacheAttend): time, bytes sent per rank, rounds.
  double kvCacheSeconds = 0, kvCacheBytes = 0;
  int kvCacheRounds = 0;
  std::string pick;                    // "pass-kv" or "pass-q"
};

InferencePrediction predictInference(const InferenceSpec& s, const ClusterSpec& c);

// The miss rate T/(T+C) at which pass-Q and pass-KV take the same time, for s.cachedTokens
// cached tokens (searching the new-token count); -1 when one wins everywhere.
double inferenceCrossover(const InferenceSpec& s, const ClusterSpec& c);

// Meta's rule of thumb: the miss rate above which pass-KV sends less per hop, 2 Hkv / Hq.
inline double metaThreshold(const InferenceSpec& s) { return 2.0 * s.kvHeads / s.heads; }

}  // namespace plan
}  // namespace attnccl
