#include "attn/tune/cost_model.h"

#include <algorithm>
#include <cmath>

#include "attn/algos/algos.h"
#include "attn/algos/registry.h"
#include "attn/algos/ulysses.h"
#include "attn/items.h"
#include "attn/visibility.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {
namespace {

double flopsPerPair(const Problem& p, bool backward) {
  double f = 4.0 * p.shape.headDim * p.heads.numQ;
  return backward ? 2.5 * f : f;
}

double rate(const ClusterModel& m, bool backward) { return backward ? m.bwdFlops : m.fwdFlops; }

double maskRowPairs(const ClusterModel& m, bool backward) { return backward ? m.bwdMaskRowPairs : m.fwdMaskRowPairs; }

// The keys of k (local indices [*first, *last)) a query at global position pos of document doc
// sees: one interval of positions (attn/visibility.h).
void visibleKeys(const Problem& p, int64_t pos, int64_t doc, const RankTokens& k, int64_t* first, int64_t* last) {
  int64_t lo, hi;
  visibleKeyRange(p.shape, pos, p.shape.cuSeqlens[doc], p.shape.cuSeqlens[doc + 1], &lo, &hi);
  *first = std::lower_bound(k.pos.begin(), k.pos.end(), lo) - k.pos.begin();
  *last = hi <= lo ? *first : std::lower_bound(k.pos.begin(), k.pos.end(), hi) - k.pos.begin();
}

// Query rows of q [qb, qe) on a mask staircase against k: they see some but not all of k's keys
// and their visible interval differs from the previous row's (a causal diagonal, a window's
// edge, a striped layout). Rows that all stop at the same key (a block seen up to a piece
// boundary) cost nothing extra: the tile skips whole invisible blocks.
double staircaseRows(const Problem& p, const RankTokens& q, int64_t qb, int64_t qe, const RankTokens& k) {
  if (k.pos.empty() || !anyVisible(p, q, qb, qe, k)) return 0;
  double n = 0;
  int64_t prevFirst = -1, prevLast = -1;
  for (int64_t r = qb; r < qe; ++r) {
    int64_t first, last;
    visibleKeys(p, q.pos[r], q.doc[r], k, &first, &last);
    const bool partial = last > first && last - first < k.size();
    if (partial && r > qb && (first != prevFirst || last != prevLast)) n += 1;
    prevFirst = first;
    prevLast = last;
  }
  return n;
}

// Visible pairs of a task plus its masked work (pair equivalents).
double taskPairs(const Problem& p, const Task& t, const ClusterModel& m, bool backward) {
  int64_t b, e;
  partRows(p.tokens[t.q.origin].size(), t.q.part, t.q.parts, &b, &e);
  const RankTokens &q = p.tokens[t.q.origin], &k = p.tokens[t.kvOrigin];
  double pairs = static_cast<double>(visiblePairs(p, q, b, e, k));
  const double w = maskRowPairs(m, backward);
  if (w > 0 && pairs > 0) pairs += w * staircaseRows(p, q, b, e, k);
  return pairs;
}

bool isAccumulator(ItemKind k) { return k == ItemKind::kOut || k == ItemKind::kDQ || k == ItemKind::kDKV; }

// One rank's round: compute (tiles, at T threads), single-threaded work (copies, merges) and
// its share of the round's transfers.
struct RankRound {
  double tiles = 0, serial = 0;
  double busy() const { return tiles + serial; }
};

// When a node runs n threads on C < n cores, Linux spreads them over the cores and migrates them
// only now and then, so between migrations some core holds ceil(n/C) threads and its ranks run
// ceil(n/C) C / n times slower than perfect sharing would let them (waiting ranks poll, so they
// stay runnable). Measured on 2 cores with 3 ranks: 1.05-1.3 x perfect sharing (static placement
// would be 1.33 x); the model takes the middle.
constexpr double kStaticPlacementWeight = 0.5;

// Node sharing (cost_model.h): the factor that stretches every busy time of a node's ranks so
// the longest takes max(longest, node core-seconds / cores), and the placement penalty above.
std::vector<double> nodeStretch(const std::vector<RankRound>& rr, const ClusterModel& m) {
  const int P = static_cast<int>(rr.size());
  std::vector<double> stretch(P, 1.0);
  if (m.coresPerNode <= 0) return stretch;
  const int rpn = std::max(1, m.ranksPerNode);
  for (int first = 0; first < P; first += rpn) {
    double coreSeconds = 0, longest = 0;
    const int last = std::min(P, first + rpn);
    for (int r = first; r < last; ++r) {
      coreSeconds += rr[r].tiles * m.threadsPerRank + rr[r].serial;
      longest = std::max(longest, rr[r].busy());
    }
    double f = longest > 0 ? std::max(1.0, coreSeconds / m.coresPerNode / longest) : 1.0;
    const double threads = static_cast<double>(last - first) * m.threadsPerRank;
    if (f > 1 && threads > m.coresPerNode) {
      const double busiest = std::ceil(threads / m.coresPerNode) * m.coresPerNode / threads;
      f *= 1 + kStaticPlacementWeight * (busiest - 1);
    }
    for (int r = first; r < last; ++r) stretch[r] = f;
  }
  return stretch;
}

// fp32 accumulator bytes a task reads and writes (m.accumulatorTraffic).
double taskAccumulatorBytes(const Problem& p, const Task& t, bool backward) {
  int64_t b, e;
  partRows(p.tokens[t.q.origin].size(), t.q.part, t.q.parts, &b, &e);
  const double D = p.shape.headDim, rows = static_cast<double>(e - b);
  double bytes = rows * p.heads.numQ * D * 4 * 2;  // O (forward) or dQ (backward), read + write
  if (backward) bytes += static_cast<double>(p.tokens[t.kvOrigin].size()) * p.heads.numKV * D * 4 * 2 * 2;
  return bytes;
}

// The tokens of ranks [first, first + count) together, in position order.
RankTokens unionOf(const Problem& p, int first, int count) {
  std::vector<std::pair<int64_t, int64_t>> all;
  for (int r = first; r < first + count; ++r) {
    const RankTokens& t = p.tokens[r];
    for (int64_t i = 0; i < t.size(); ++i) all.push_back({t.pos[i], t.doc[i]});
  }
  std::sort(all.begin(), all.end());
  RankTokens u;
  for (const auto& pd : all) {
    u.pos.push_back(pd.first);
    u.doc.push_back(pd.second);
  }
  return u;
}

}  // namespace

double singleRankPairs(const Problem& p, const ClusterModel& m, bool backward) {
  const double pairs = totalVisiblePairs(p), w = maskRowPairs(m, backward);
  if (w <= 0) return pairs;
  const RankTokens whole = unionOf(p, 0, p.nranks);
  return pairs + w * staircaseRows(p, whole, 0, whole.size(), whole);
}

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
  std::vector<double> now(P, 0.0), busyTotal(P, 0.0), sent(P, 0.0);
  const double fpp = flopsPerPair(p, s.backward);
  const double F = rate(m, s.backward);
  for (int k = 0; k < R; ++k) {
    std::vector<RankRound> rr(P);
    for (int r = 0; r < P; ++r) {
      if (k >= static_cast<int>(s.ranks[r].rounds.size())) continue;
      const Round& round = s.ranks[r].rounds[k];
      for (const Task& t : round.tasks) {
        rr[r].tiles += taskPairs(p, t, m, s.backward) * fpp / F;
        rr[r].serial += m.taskOverhead;
        if (m.accumulatorTraffic && m.memBandwidth > 0) {
          rr[r].serial += taskAccumulatorBytes(p, t, s.backward) / m.memBandwidth;
        }
      }
      for (const Transfer& t : round.transfers) {
        if (t.send) continue;
        const double bytes = static_cast<double>(itemLayout(p, t.item, s.backward).bytes());
        if (m.link(r, t.peer).copiedByReceiver) rr[r].serial += bytes / m.link(r, t.peer).bandwidth;
        if (isAccumulator(t.item.kind) && m.memBandwidth > 0) rr[r].serial += 3 * bytes / m.memBandwidth;
      }
    }
    const std::vector<double> stretch = nodeStretch(rr, m);
    // Transfers complete once both ends have started the round (posted) and the bytes crossed.
    std::vector<double> end(P);
    for (int r = 0; r < P; ++r) {
      end[r] = now[r] + rr[r].busy() * stretch[r];
      busyTotal[r] += rr[r].busy() * stretch[r];
    }
    // A shared node link: the bytes of the round's transfers leaving and entering every node.
    const int rpn = std::max(1, m.ranksPerNode);
    std::vector<double> leaving((P + rpn - 1) / rpn, 0.0), entering(leaving.size(), 0.0);
    if (m.interNodeShared) {
      for (int r = 0; r < P; ++r) {
        if (k >= static_cast<int>(s.ranks[r].rounds.size())) continue;
        for (const Transfer& t : s.ranks[r].rounds[k].transfers) {
          if (!t.send || r / rpn == t.peer / rpn) continue;
          const double bytes = static_cast<double>(itemLayout(p, t.item, s.backward).bytes());
          leaving[r / rpn] += bytes;
          entering[t.peer / rpn] += bytes;
        }
      }
    }
    for (int r = 0; r < P; ++r) {
      if (k >= static_cast<int>(s.ranks[r].rounds.size())) continue;
      for (const Transfer& t : s.ranks[r].rounds[k].transfers) {
        if (!t.send) continue;
        const LinkModel& l = m.link(r, t.peer);
        const ItemLayout lay = itemLayout(p, t.item, s.backward);
        const double bytes = static_cast<double>(lay.bytes());
        const bool shared = m.interNodeShared && r / rpn != t.peer / rpn;
        const double moved = shared ? std::max(leaving[r / rpn], entering[t.peer / rpn]) : bytes;
        const double done = std::max(now[r], now[t.peer]) + moved / l.bandwidth + l.latency * lay.segBytes.size();
        end[r] = std::max(end[r], done);
        end[t.peer] = std::max(end[t.peer], done);
        sent[r] += bytes;
      }
    }
    now = end;
  }
  double sumBusy = 0, maxBusy = 0, sumSent = 0, maxSent = 0;
  for (int r = 0; r < P; ++r) {
    out.seconds = std::max(out.seconds, now[r]);
    sumBusy += busyTotal[r];
    maxBusy = std::max(maxBusy, busyTotal[r]);
    sumSent += sent[r];
    maxSent = std::max(maxSent, sent[r]);
  }
  out.computeSeconds = maxBusy;
  out.exposedCommSeconds = std::max(0.0, out.seconds - maxBusy);
  out.idleFraction = out.seconds > 0 ? 1.0 - sumBusy / (P * out.seconds) : 0.0;
  out.bytesPerRank = sumSent / P;
  out.maxLinkBytes = maxSent;
  out.balance = sumBusy > 0 ? maxBusy / (sumBusy / P) : 1.0;
  return out;
}

namespace {

// A head all-to-all level over `members` ranks (rank r of them is member r % members): every
// member computes its heads over all the group's tokens while the chunked exchange moves its
// inputs and results (ulysses.cc: C chunks, chunk c+1's inputs and chunk c-1's results travel
// while chunk c computes). Writes the per-rank busy time and the exposed transfer time.
struct HeadLevel {
  std::vector<double> tiles, serial, transfer;  // per rank
  std::vector<double> sentBytes;
  int chunks = 1;
};

// groupPairs: visible pairs plus masked work over the group's tokens (0: exchanges only).
HeadLevel headLevel(const Problem& p, int members, double groupPairs, bool backward, const ClusterModel& m) {
  const int P = p.nranks;
  HeadLevel h;
  h.tiles.assign(P, 0);
  h.serial.assign(P, 0);
  h.transfer.assign(P, 0);
  h.sentBytes.assign(P, 0);
  AttnShape groupShape = p.shape;
  // The members hold the group's tokens: Ulysses' volume over `members` ranks of that many tokens.
  int64_t groupTokens = 0;
  for (int r = 0; r < members && r < P; ++r) groupTokens += p.tokens[r].size();
  groupShape.seqLen = std::max<int64_t>(groupTokens, 1);
  groupShape.cuSeqlens = {0, groupShape.seqLen};
  h.chunks = ulyssesChunks(groupShape, members);
  // Every member sends each other member an equal share; the shares to members on other nodes
  // cross interNode (shared by the node's ranks where interNodeShared), the rest intraNode, the
  // two at once. Groups are blocks of `members` consecutive ranks.
  const int rpn = std::max(1, m.ranksPerNode);
  auto remoteShare = [&](int r) {
    if (members <= 1) return 0.0;
    const int first = r - r % members;
    int remote = 0;
    for (int q = first; q < first + members && q < P; ++q) remote += q / rpn != r / rpn;
    return static_cast<double>(remote) / (members - 1);
  };
  std::vector<double> nodeInter((P + rpn - 1) / rpn, 0.0);
  for (int r = 0; r < P && members > 1; ++r) {
    const HeadVolume v = ulyssesVolume(groupShape, members, r % members, backward);
    nodeInter[r / rpn] += static_cast<double>(std::max(v.sent, v.recv)) * remoteShare(r);
  }
  for (int r = 0; r < P; ++r) {
    const int i = r % members;
    int64_t hb, he;
    partRows(p.heads.numQ, i, members, &hb, &he);
    const double myHeads = static_cast<double>(he - hb);
    h.tiles[r] = groupPairs * 4.0 * p.shape.headDim * myHeads * (backward ? 2.5 : 1.0) / rate(m, backward);
    if (groupPairs > 0) h.serial[r] = m.taskOverhead * h.chunks;
    if (groupPairs > 0 && m.accumulatorTraffic && m.memBandwidth > 0) {
      h.serial[r] += static_cast<double>(groupTokens) * myHeads * p.shape.headDim * 4 * 2 / m.memBandwidth;
    }
    if (members <= 1) continue;
    const HeadVolume v = ulyssesVolume(groupShape, members, i, backward);
    const double messages = 2.0 * h.chunks * (members - 1) * (backward ? 5 : 3);
    const double remote = remoteShare(r), most = static_cast<double>(std::max(v.sent, v.recv));
    const double inter = m.interNodeShared ? nodeInter[r / rpn] : most * remote;
    h.transfer[r] = most * (1 - remote) / m.intraNode.bandwidth + messages * (1 - remote) * m.intraNode.latency;
    if (remote > 0) {
      h.transfer[r] = std::max(h.transfer[r], inter / m.interNode.bandwidth + messages * remote * m.interNode.latency);
    }
    if (m.intraNode.copiedByReceiver) h.serial[r] += static_cast<double>(v.recv) * (1 - remote) / m.intraNode.bandwidth;
    h.sentBytes[r] = static_cast<double>(v.sent);
  }
  return h;
}

}  // namespace

Prediction predictUlysses(const Problem& p, bool backward, const ClusterModel& m) {
  const int P = p.nranks;
  Prediction out;
  out.algorithm = "ulysses";
  out.rounds = 2;
  // Every member attends over all tokens in position order, as one rank would.
  const double pairs = singleRankPairs(p, m, backward);
  HeadLevel h = headLevel(p, P, pairs, backward, m);
  std::vector<RankRound> rr(P);
  for (int r = 0; r < P; ++r) rr[r] = RankRound{h.tiles[r], h.serial[r]};
  const std::vector<double> stretch = nodeStretch(rr, m);
  double maxT = 0, sumBusy = 0, maxBusy = 0, sumSent = 0, maxSent = 0;
  for (int r = 0; r < P; ++r) {
    const double busy = rr[r].busy() * stretch[r];
    const double x = h.transfer[r];
    // The first chunk's inputs and the last chunk's results cannot overlap any compute.
    const double t = x / h.chunks + std::max(busy, x * (h.chunks - 1) / h.chunks);
    maxT = std::max(maxT, t);
    sumBusy += busy;
    maxBusy = std::max(maxBusy, busy);
    sumSent += h.sentBytes[r];
    maxSent = std::max(maxSent, h.sentBytes[r]);
  }
  out.seconds = maxT;
  out.computeSeconds = maxBusy;
  out.exposedCommSeconds = std::max(0.0, maxT - maxBusy);
  out.idleFraction = maxT > 0 ? 1.0 - sumBusy / (P * maxT) : 0.0;
  out.bytesPerRank = sumSent / P;
  out.maxLinkBytes = maxSent;
  out.balance = sumBusy > 0 ? maxBusy / (sumBusy / P) : 1.0;
  return out;
}

Prediction predictHybrid(const Problem& p, int g, bool backward, const ClusterModel& m) {
  const int P = p.nranks;
  Prediction out;
  if (g >= P || g <= 1) {  // the executor runs these as Ulysses or the ring
    out = g >= P ? predictUlysses(p, backward, m) : predictSchedule(p, ringSchedule(p, backward), m);
    out.algorithm = "hybrid";
    return out;
  }
  out.algorithm = "hybrid";
  if (P % g != 0) {
    out.supported = false;
    out.seconds = INFINITY;
    return out;
  }
  // The ring level: P/g "ranks" holding their group's tokens and Hq/g heads; the g rings (one per
  // member index) run at once, each on 1/g of a node's cores.
  Problem ringP;
  ringP.shape = p.shape;
  ringP.nranks = P / g;
  ringP.tokens.resize(P / g);
  for (int grp = 0; grp < P / g; ++grp) ringP.tokens[grp] = unionOf(p, grp * g, g);
  ringP.heads = p.heads;
  ringP.heads.numQ = std::max(1, p.heads.numQ / g);
  ringP.heads.numKV = std::max(1, p.heads.numKV / g);
  ringP.heads.group = std::max(1, ringP.heads.numQ / ringP.heads.numKV);
  ClusterModel across = m;
  across.nranks = P / g;
  across.ranksPerNode = std::max(1, m.ranksPerNode / g);
  if (m.coresPerNode > 0) across.coresPerNode = m.coresPerNode / g;
  // The g rings cross between the same nodes at once: on a shared node link each gets 1/g of it.
  if (m.interNodeShared) across.interNode.bandwidth = m.interNode.bandwidth / g;
  Prediction ring = predictSchedule(ringP, ringSchedule(ringP, backward), across);
  // The exchanges inside the group (before and after the ring), not overlapped with it: only
  // their transfers and copies count here (members <= 1 compute: groupPairs = 0).
  HeadLevel h = headLevel(p, g, 0.0, backward, m);
  std::vector<RankRound> rr(P);
  for (int r = 0; r < P; ++r) rr[r] = RankRound{0, h.serial[r]};
  const std::vector<double> stretch = nodeStretch(rr, m);
  double exchange = 0, exchangeBytes = 0, maxSent = 0;
  for (int r = 0; r < P; ++r) {
    exchange = std::max(exchange, std::max(h.serial[r] * stretch[r], h.transfer[r]));
    exchangeBytes += h.sentBytes[r] / P;
    maxSent = std::max(maxSent, h.sentBytes[r]);
  }
  out.seconds = ring.seconds + exchange;
  out.computeSeconds = ring.computeSeconds;
  out.exposedCommSeconds = out.seconds - ring.computeSeconds;
  out.idleFraction = out.seconds > 0 ? 1.0 - (1.0 - ring.idleFraction) * ring.seconds / out.seconds : 0.0;
  out.bytesPerRank = ring.bytesPerRank + exchangeBytes;
  out.maxLinkBytes = ring.maxLinkBytes + maxSent;
  out.balance = ring.balance;
  out.rounds = ring.rounds + 2;
  return out;
}

std::vector<Candidate> predictAlgorithms(const Problem& p, bool backward, const ClusterModel& m, int hybridGroup) {
  std::vector<Candidate> c;
  for (const AlgoEntry& a : algorithms()) c.push_back({a.algo, predictAlgorithm(a, p, backward, m, hybridGroup)});
  return c;
}

attncclAlgo_t fastestAlgorithm(const std::vector<Candidate>& c) {
  size_t best = 0;
  for (size_t i = 1; i < c.size(); ++i) {
    if (c[i].pred.supported && (!c[best].pred.supported || c[i].pred.seconds < c[best].pred.seconds * 0.98)) best = i;
  }
  return c.empty() ? attncclAlgoRing : c[best].algo;
}

}  // namespace attn
}  // namespace attnccl
