#include "attn/cost_model.h"

#include <algorithm>
#include <cmath>

#include "attn/algos/algos.h"
#include "attn/items.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace {

double flopsPerPair(const Problem& p, bool backward) {
  double f = 4.0 * p.shape.headDim * p.heads.numQ;
  return backward ? 2.5 * f : f;
}

double rate(const ClusterModel& m, bool backward) { return backward ? m.bwdFlops : m.fwdFlops; }

}  // namespace

double totalVisiblePairs(const Problem& p) {
  double n = 0;
  for (int q = 0; q < p.nranks; ++q)
    for (int k = 0; k < p.nranks; ++k) n += static_cast<double>(visiblePairs(p, p.tokens[q], 0, p.tokens[q].size(), p.tokens[k]));
  return n;
}

Prediction predictSchedule(const Problem& p, const Schedule& s, const ClusterModel& m) {
  const int P = p.nranks;
  const int R = s.numRounds();
  Prediction out;
  out.algorithm = s.algorithm;
  out.rounds = R;
  std::vector<double> computeTotal(P, 0.0), sent(P, 0.0);
  const double fpp = flopsPerPair(p, s.backward);
  const double F = rate(m, s.backward);
  double critical = 0;
  for (int k = 0; k < R; ++k) {
    double roundTime = 0, roundCompute = 0;
    for (int r = 0; r < P; ++r) {
      if (k >= static_cast<int>(s.ranks[r].rounds.size())) continue;
      const Round& round = s.ranks[r].rounds[k];
      double c = 0;
      for (const Task& t : round.tasks) {
        int64_t b, e;
        partRows(p.tokens[t.q.origin].size(), t.q.part, t.q.parts, &b, &e);
        c += static_cast<double>(visiblePairs(p, p.tokens[t.q.origin], b, e, p.tokens[t.kvOrigin])) * fpp / F;
      }
      double sendT = 0, recvT = 0, lat = 0, copyT = 0;
      for (const Transfer& t : round.transfers) {
        const LinkModel& l = m.link(r, t.peer);
        double bytes = static_cast<double>(itemLayout(p, t.item, s.backward).bytes());
        (t.send ? sendT : recvT) += bytes / l.bandwidth;
        if (t.send) sent[r] += bytes;
        if (!t.send && l.copiedByReceiver) copyT += bytes / l.bandwidth;
        lat += l.latency;
      }
      double x = std::max(sendT, recvT) + lat;
      double t = copyT > 0 ? std::max(c + copyT, x) : std::max(c, x);
      computeTotal[r] += c;
      roundTime = std::max(roundTime, t);
      roundCompute = std::max(roundCompute, c);
    }
    out.seconds += roundTime;
    critical += roundCompute;
  }
  double sumCompute = 0, maxCompute = 0, sumSent = 0;
  for (int r = 0; r < P; ++r) {
    sumCompute += computeTotal[r];
    maxCompute = std::max(maxCompute, computeTotal[r]);
    sumSent += sent[r];
  }
  out.computeSeconds = critical;
  out.exposedCommSeconds = std::max(0.0, out.seconds - critical);
  out.idleFraction = out.seconds > 0 ? 1.0 - sumCompute / (P * out.seconds) : 0.0;
  out.bytesPerRank = sumSent / P;
  out.balance = sumCompute > 0 ? maxCompute / (sumCompute / P) : 1.0;
  return out;
}

namespace {

// Bytes rank r sends in one head exchange of rows with `heads` heads split over P ranks:
// its rows of every other rank's heads.
double exchangeBytes(double rows, int heads, int P, int rank, double elemBytes, double D) {
  int64_t b, e;
  partRows(heads, rank, P, &b, &e);
  return rows * static_cast<double>(heads - (e - b)) * D * elemBytes;
}

// Bytes rank r of a head exchange among P ranks moves (sent + received, about equal): Q, K, V
// in (K/V heads: at most one replica per rank) and O (+ fp32 LSE) back; backward also O, dO,
// LSE in and dQ, dK, dV back.
double ulyssesBytes(double T, int Hq, int Hkv, int P, int r, double es, double D, bool backward) {
  const int kvHeads = std::max(Hkv, std::min(Hq, P));
  double in = exchangeBytes(T, Hq, P, r, es, D) + 2 * exchangeBytes(T, kvHeads, P, r, es, D);
  double back = exchangeBytes(T, Hq, P, r, es, D) + T * Hq * 4.0 * (P - 1) / P;
  if (backward) {
    in += 2 * exchangeBytes(T, Hq, P, r, es, D) + T * Hq * 4.0 * (P - 1) / P;
    back += 2 * exchangeBytes(T, kvHeads, P, r, es, D);
  }
  return in + back;
}

}  // namespace

Prediction predictUlysses(const Problem& p, bool backward, const ClusterModel& m) {
  const int P = p.nranks;
  Prediction out;
  out.algorithm = "ulysses";
  out.rounds = 2;
  const double D = p.shape.headDim, es = static_cast<double>(dtypeSize(p.shape.dtype));
  const int Hq = p.heads.numQ, Hkv = p.heads.numKV;
  const double pairs = totalVisiblePairs(p);
  const bool oneNode = P <= m.ranksPerNode;
  const LinkModel& l = oneNode ? m.intraNode : m.interNode;
  double maxT = 0, sumCompute = 0, maxCompute = 0, sumSent = 0;
  for (int r = 0; r < P; ++r) {
    const double T = static_cast<double>(p.tokens[r].size());
    int64_t hb, he;
    partRows(Hq, r, P, &hb, &he);
    const double myHeads = static_cast<double>(he - hb);
    // Compute: this rank's heads over every visible pair.
    double c = pairs * 4.0 * D * myHeads * (backward ? 2.5 : 1.0) / (backward ? m.bwdFlops : m.fwdFlops);
    double bytes = ulyssesBytes(T, Hq, Hkv, P, r, es, D, backward);
    double x = bytes / 2 / l.bandwidth + 4 * (P - 1) * l.latency;
    // The pipeline hides the exchange of later head groups under earlier ones; about one head
    // group's inbound and outbound stay exposed.
    double exposed = x / std::max(1.0, myHeads);
    double t = l.copiedByReceiver ? c + x : std::max(c, x) + exposed;
    maxT = std::max(maxT, t);
    sumCompute += c;
    maxCompute = std::max(maxCompute, c);
    sumSent += bytes / 2;
  }
  out.seconds = maxT;
  out.computeSeconds = maxCompute;
  out.exposedCommSeconds = std::max(0.0, maxT - maxCompute);
  out.idleFraction = maxT > 0 ? 1.0 - sumCompute / (P * maxT) : 0.0;
  out.bytesPerRank = sumSent / P;
  out.balance = sumCompute > 0 ? maxCompute / (sumCompute / P) : 1.0;
  return out;
}

Prediction predictHybrid(const Problem& p, int g, bool backward, const ClusterModel& m) {
  const int P = p.nranks;
  Prediction out;
  out.algorithm = "hybrid";
  if (g <= 1 || g >= P || P % g != 0) {
    out.supported = false;
    out.seconds = INFINITY;
    return out;
  }
  // The ring level: P/g "ranks" holding their group's tokens and Hq/g heads.
  Problem ringP;
  ringP.shape = p.shape;
  ringP.nranks = P / g;
  ringP.tokens.resize(P / g);
  for (int grp = 0; grp < P / g; ++grp) {
    RankTokens& t = ringP.tokens[grp];
    for (int m2 = 0; m2 < g; ++m2) {
      const RankTokens& src = p.tokens[grp * g + m2];
      t.pos.insert(t.pos.end(), src.pos.begin(), src.pos.end());
      t.doc.insert(t.doc.end(), src.doc.begin(), src.doc.end());
    }
    std::vector<size_t> idx(t.pos.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return t.pos[a] < t.pos[b]; });
    RankTokens sorted;
    for (size_t i : idx) {
      sorted.pos.push_back(t.pos[i]);
      sorted.doc.push_back(t.doc[i]);
    }
    t = sorted;
  }
  ringP.heads = p.heads;
  ringP.heads.numQ = std::max(1, p.heads.numQ / g);
  ringP.heads.numKV = std::max(1, p.heads.numKV / g);
  ClusterModel across = m;
  across.nranks = P / g;
  across.ranksPerNode = std::max(1, m.ranksPerNode / g);
  Prediction ring = predictSchedule(ringP, ringSchedule(ringP, backward), across);
  // The exchanges inside the group (before and after the ring), not overlapped.
  const LinkModel& l = g <= m.ranksPerNode ? m.intraNode : m.interNode;
  const double es = static_cast<double>(dtypeSize(p.shape.dtype));
  double exchange = 0, exchangeBytesPerRank = 0;
  for (int r = 0; r < P; ++r) {
    double T = static_cast<double>(p.tokens[r].size());
    double bytes = ulyssesBytes(T, p.heads.numQ, p.heads.numKV, g, r % g, es, p.shape.headDim, backward);
    exchange = std::max(exchange, bytes / 2 / l.bandwidth + 4 * (g - 1) * l.latency);
    exchangeBytesPerRank += bytes / 2 / P;
  }
  out.seconds = ring.seconds + exchange;
  out.computeSeconds = ring.computeSeconds;
  out.exposedCommSeconds = out.seconds - ring.computeSeconds;
  out.idleFraction = ring.idleFraction;
  out.bytesPerRank = ring.bytesPerRank + exchangeBytesPerRank;
  out.balance = ring.balance;
  out.rounds = ring.rounds + 2;
  return out;
}

}  // namespace attn
}  // namespace attnccl
