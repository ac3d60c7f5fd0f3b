#include "attn/verify.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

namespace attnccl {
namespace attn {
namespace {

std::string msg(const char* fmt, int rank, int round, const std::string& what) {
  char buf[512];
  snprintf(buf, sizeof(buf), fmt, rank, round, what.c_str());
  return buf;
}

bool isAccumulator(ItemKind k) { return k == ItemKind::kOut || k == ItemKind::kDQ || k == ItemKind::kDKV; }

ItemId withKind(ItemId id, ItemKind k) {
  id.kind = k;
  return id;
}

// Data items a rank holds: its own Q and KV, plus what arrived (available from the next round).
struct Holdings {
  std::map<ItemId, int> arrivedAt;  // item -> round it becomes usable

  bool has(int rank, const ItemId& id, int round) const {
    if ((id.kind == ItemKind::kQ || id.kind == ItemKind::kKV) && id.origin == rank) return true;
    auto it = arrivedAt.find(id);
    if (it != arrivedAt.end() && it->second <= round) return true;
    if (id.parts > 1) {  // a part of an item that arrived whole
      ItemId whole = id;
      whole.part = 0;
      whole.parts = 1;
      it = arrivedAt.find(whole);
      if (it != arrivedAt.end() && it->second <= round) return true;
    }
    return false;
  }
};

struct Contribution {
  ItemId target;  // accumulator item it belongs to (origin = home rank)
  int delivered = 0;
};

std::string checkMatching(const Schedule& s) {
  const int P = static_cast<int>(s.ranks.size());
  for (int r = 0; r < P; ++r) {
    const auto& rounds = s.ranks[r].rounds;
    for (size_t k = 0; k < rounds.size(); ++k) {
      for (const Transfer& t : rounds[k].transfers) {
        if (t.peer < 0 || t.peer >= P || t.peer == r) {
          return msg("rank %d round %d: transfer of %s to an invalid peer", r, static_cast<int>(k), t.item.str());
        }
        // Count equal transfers on both sides.
        auto count = [&](int rank, int peer, bool send) {
          int c = 0;
          const auto& rr = s.ranks[rank].rounds;
          if (k >= rr.size()) return 0;
          for (const Transfer& u : rr[k].transfers) c += (u.item == t.item && u.peer == peer && u.send == send);
          return c;
        };
        if (count(r, t.peer, t.send) != count(t.peer, r, !t.send)) {
          return msg("rank %d round %d: %s has no matching transfer at the peer", r, static_cast<int>(k),
                     t.item.str() + (t.send ? " send" : " recv") + " with rank " + std::to_string(t.peer));
        }
      }
    }
  }
  return "";
}

std::string checkCoverage(const Problem& p, const Schedule& s) {
  const int P = p.nranks;
  // (q origin, kv origin) -> row ranges computed
  std::map<std::pair<int, int>, std::vector<std::pair<int64_t, int64_t>>> cover;
  for (int r = 0; r < P; ++r) {
    for (const Round& round : s.ranks[r].rounds) {
      for (const Task& t : round.tasks) {
        if (t.q.kind != ItemKind::kQ) return "a task's query item is not a Q item: " + t.q.str();
        int64_t b, e;
        partRows(p.tokens[t.q.origin].size(), t.q.part, t.q.parts, &b, &e);
        cover[{t.q.origin, t.kvOrigin}].push_back({b, e});
      }
    }
  }
  for (int o = 0; o < P; ++o) {
    for (int k = 0; k < P; ++k) {
      auto& ranges = cover[{o, k}];
      std::sort(ranges.begin(), ranges.end());
      const int64_t n = p.tokens[o].size();
      // Ranges must not overlap, and rows outside every range must see nothing of k.
      bool missing = false;
      int64_t prev = 0;
      for (const auto& rg : ranges) {
        if (rg.first < prev) {
          char buf[160];
          snprintf(buf, sizeof(buf), "query rows %lld.. of rank %d are computed against rank %d's keys twice",
                   static_cast<long long>(rg.first), o, k);
          return buf;
        }
        if (rg.first > prev && anyVisible(p, p.tokens[o], prev, rg.first, p.tokens[k])) missing = true;
        prev = rg.second;
      }
      if (prev < n && anyVisible(p, p.tokens[o], prev, n, p.tokens[k])) missing = true;
      if (missing) {
        char buf[160];
        snprintf(buf, sizeof(buf), "visible pairs of rank %d's queries with rank %d's keys are never computed", o, k);
        return buf;
      }
    }
  }
  return "";
}

std::string checkDataflow(const Problem& p, const Schedule& s) {
  const int P = p.nranks;
  const int R = s.numRounds();
  std::vector<Holdings> hold(P);
  std::vector<std::map<ItemId, std::vector<int>>> accum(P);  // accumulators with contribution ids
  std::vector<Contribution> contribs;

  for (int k = 0; k < R; ++k) {
    struct Delivery {
      int to;
      ItemId item;
      std::vector<int> contents;
      bool data;
    };
    std::vector<Delivery> deliveries;
    std::vector<std::set<ItemId>> sending(P);
    for (int r = 0; r < P; ++r) {
      if (k >= static_cast<int>(s.ranks[r].rounds.size())) continue;
      for (const Transfer& t : s.ranks[r].rounds[k].transfers) {
        if (!t.send) continue;
        if (isAccumulator(t.item.kind)) {
          auto it = accum[r].find(t.item);
          if (it == accum[r].end()) {
            return msg("rank %d round %d: sends %s, which it does not hold", r, k, t.item.str());
          }
          if (!sending[r].insert(t.item).second) {
            return msg("rank %d round %d: sends accumulator %s twice", r, k, t.item.str());
          }
          deliveries.push_back({t.peer, t.item, it->second, false});
        } else {
          if (!hold[r].has(r, t.item, k)) {
            return msg("rank %d round %d: sends %s before it has it", r, k, t.item.str());
          }
          deliveries.push_back({t.peer, t.item, {}, true});
        }
      }
    }
    for (int r = 0; r < P; ++r) {
      if (k >= static_cast<int>(s.ranks[r].rounds.size())) continue;
      for (const Task& t : s.ranks[r].rounds[k].tasks) {
        if (!hold[r].has(r, t.q, k)) return msg("rank %d round %d: computes on %s before it has it", r, k, t.q.str());
        ItemId kv{ItemKind::kKV, t.kvOrigin, 0, 1};
        if (!hold[r].has(r, kv, k)) return msg("rank %d round %d: computes on %s before it has it", r, k, kv.str());
        std::vector<std::pair<ItemId, int>> targets;  // accumulator item, home rank
        targets.push_back({withKind(t.q, s.backward ? ItemKind::kDQ : ItemKind::kOut), t.q.origin});
        if (s.backward) targets.push_back({ItemId{ItemKind::kDKV, t.kvOrigin, 0, 1}, t.kvOrigin});
        for (const auto& tg : targets) {
          int id = static_cast<int>(contribs.size());
          contribs.push_back({tg.first, 0});
          if (tg.second == r) {
            contribs[id].delivered++;
          } else {
            if (sending[r].count(tg.first)) {
              return msg("rank %d round %d: a task writes %s while it is being sent", r, k, tg.first.str());
            }
            accum[r][tg.first].push_back(id);
          }
        }
      }
    }
    for (int r = 0; r < P; ++r) {
      for (const ItemId& id : sending[r]) accum[r].erase(id);
    }
    for (Delivery& d : deliveries) {
      if (d.data) {
        auto& at = hold[d.to].arrivedAt;
        if (!at.count(d.item)) at[d.item] = k + 1;
      } else if (d.item.origin == d.to) {
        for (int id : d.contents) contribs[id].delivered++;
      } else {
        auto& acc = accum[d.to][d.item];
        acc.insert(acc.end(), d.contents.begin(), d.contents.end());
      }
    }
  }
  for (int r = 0; r < P; ++r) {
    if (!accum[r].empty()) {
      return msg("rank %d round %d: partial results %s never reach their owner", r, R,
                 accum[r].begin()->first.str());
    }
  }
  for (const Contribution& c : contribs) {
    if (c.delivered != 1) {
      return msg("rank %d round %d: a contribution to %s is delivered a wrong number of times", c.target.origin, R,
                 c.target.str());
    }
  }
  return "";
}

}  // namespace

std::string verifySchedule(const Problem& problem, const Schedule& schedule) {
  if (static_cast<int>(schedule.ranks.size()) != problem.nranks) return "schedule has the wrong number of ranks";
  std::string e = checkMatching(schedule);
  if (e.empty()) e = checkCoverage(problem, schedule);
  if (e.empty()) e = checkDataflow(problem, schedule);
  if (!e.empty()) e = std::string(schedule.algorithm) + (schedule.backward ? " backward: " : " forward: ") + e;
  return e;
}

}  // namespace attn
}  // namespace attnccl
