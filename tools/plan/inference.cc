#include "plan/inference.h"

#include <algorithm>
#include <cmath>

#include "attn/kvcache/cost.h"
#include "core/dtype.h"

namespace attnccl {
namespace plan {
InferencePrediction predictInference(const InferenceSpec& s, const ClusterSpec& c) {
  const attn::ClusterModel m = c.model();
  const int P = std::max(1, m.nranks);
  const double T = static_cast<double>(s.newTokens), C = static_cast<double>(s.cachedTokens);
  const double D = s.headDim, es = static_cast<double>(dtypeSize(s.dtype));
  InferencePrediction out;
  out.missRate = T / (T + C);
  const bool spansNodes = P > m.ranksPerNode;
  const attn::LinkModel& hop = spansNodes ? m.interNode : m.intraNode;
  // One step of one rank: its share of the visible pairs against one shard.
  const double pairs = T * C + T * (T + 1) / 2;
  double step = pairs / (static_cast<double>(P) * P) * 4 * D * s.heads / m.fwdFlops + m.taskOverhead;
  if (m.accumulatorTraffic && m.memBandwidth > 0) step += T / P * s.heads * D * 4 * 2 / m.memBandwidth;
  // Host shared memory: the receiving core copies, so transfers add to the step instead of hiding.
  const bool copies = !spansNodes && hop.copiedByReceiver;
  auto overlap = [&](double x) { return copies ? step + x : std::max(step, x); };
  auto hopTime = [&](double bytes, int messages) { return bytes / hop.bandwidth + messages * hop.latency; };
  const double kvHop = 2 * (T + C) / P * s.kvHeads * D * es;
  const double qHop = T / P * s.heads * D * es;
  const double partial = T / P * s.heads * (D * es + 4);
  out.computeSeconds = P * step;
  if (P == 1) {
    out.passKVSeconds = out.passQSeconds = step;
  } else {
    // pass-KV: P steps, the next shard arriving under each of the first P-1.
    out.passKVSeconds = (P - 1) * overlap(hopTime(kvHop, 2)) + step;
    // pass-Q: step 0 sends the local queries on; steps 1..P-2 send queries on and the previous
    // partial home; step P-1 sends the previous partial home; then the last partial, exposed.
    out.passQSeconds = overlap(hopTime(qHop, 1)) + (P - 2) * overlap(hopTime(qHop + partial, 3)) +
                       overlap(hopTime(partial, 2)) + hopTime(partial, 2);
  }
  out.passKVBytes = (P - 1) * kvHop;
  out.passQBytes = (P - 1) * (qHop + partial);
  out.passKVExposed = out.passKVSeconds - out.computeSeconds;
  out.passQExposed = out.passQSeconds - out.computeSeconds;
  out.pick = out.passQSeconds < out.passKVSeconds ? "pass-q" : "pass-kv";
  // attnccl's KV cache: replicated queries, each rank's shard of the whole cache (C + T tokens),
  // one round of partials (the volumes of attn/kvcache/cost.h), the merge of P partials.
  {
    const double perRankPairs = pairs / P;
    double compute = perRankPairs * 4 * D * s.heads / m.fwdFlops + m.taskOverhead;
    const double shardBytes = (T + C) / P * s.kvHeads * D * es * 2;
    if (m.memBandwidth > 0) compute = std::max(compute, shardBytes / m.memBandwidth);
    out.kvCacheRounds = attn::kvCombineRounds(P, s.newTokens, s.heads, s.headDim);
    out.kvCacheBytes = attn::kvBytesSentPerRank(P, s.newTokens, s.heads, s.headDim);
    double combine = 0;
    if (P > 1) combine = hop.latency * out.kvCacheRounds + out.kvCacheBytes / hop.bandwidth;
    if (m.memBandwidth > 0) combine += P * static_cast<double>(attn::kvPartialFloats(s.newTokens, s.heads, s.headDim)) * 4 * 2 / m.memBandwidth;
    out.kvCacheSeconds = compute + combine;
  }
  return out;
}

double inferenceCrossover(const InferenceSpec& s, const ClusterSpec& c) {
  // diff(T) = pass-Q - pass-KV: negative for few new tokens when pass-Q wins. Scan T on a
  // geometric grid for the first sign change, then bisect.
  auto diff = [&](double T) {
    InferenceSpec x = s;
    x.newTokens = std::max<int64_t>(1, static_cast<int64_t>(T));
    InferencePrediction p = predictInference(x, c);
    return p.passQSeconds - p.passKVSeconds;
  };
  const double C = static_cast<double>(std::max<int64_t>(1, s.cachedTokens));
  double lo = 1, dlo = diff(lo);
  for (double T = 2; T <= 64 * C; T *= 1.25) {
    const double d = diff(T);
    if ((dlo < 0) != (d < 0)) {
      double hi = T;
      for (int it = 0; it < 60 && hi - lo > 1; ++it) {
        const double mid = std::sqrt(lo * hi);
        if ((diff(mid) < 0) == (dlo < 0)) lo = mid; else hi = mid;
      }
      const double t = std::sqrt(lo * hi);
      return t / (t + static_cast<double>(s.cachedTokens));
    }
    lo = T;
    dlo = d;
  }
  return -1;
}

}  // namespace plan
}  // namespace attnccl
