#include "attn/plan.h"

#include <algorithm>
#include <map>
#include <memory>

namespace attnccl {
namespace attn {
namespace {

bool isAccumulator(ItemKind k) { return k == ItemKind::kOut || k == ItemKind::kDQ || k == ItemKind::kDKV; }

struct Instance {
  ItemId item;
  size_t bytes = 0;
  int start = 0, end = 0;  // rounds during which the slot is in use
  size_t offset = 0;
  std::vector<size_t*> patches;  // ItemRef offsets to fill once placed
};

// First fit in address order among instances whose lifetimes overlap.
size_t place(std::vector<std::unique_ptr<Instance>>& all) {
  std::vector<Instance*> order;
  for (auto& i : all) order.push_back(i.get());
  std::stable_sort(order.begin(), order.end(), [](Instance* a, Instance* b) { return a->start < b->start; });
  std::vector<Instance*> placed;
  size_t top = 0;
  for (Instance* in : order) {
    std::vector<std::pair<size_t, size_t>> busy;
    for (Instance* o : placed) {
      if (o->start <= in->end && in->start <= o->end) busy.push_back({o->offset, o->offset + o->bytes});
    }
    std::sort(busy.begin(), busy.end());
    size_t at = 0;
    for (const auto& b : busy) {
      if (at + in->bytes <= b.first) break;
      at = std::max(at, b.second);
    }
    in->offset = at;
    top = std::max(top, at + in->bytes);
    placed.push_back(in);
    for (size_t* p : in->patches) *p = at;
  }
  return top;
}

}  // namespace

Plan compilePlan(const Problem& p, const Schedule& s, int me) {
  Plan plan;
  const auto& rounds = s.ranks[me].rounds;
  plan.rounds.resize(rounds.size());
  std::vector<std::unique_ptr<Instance>> instances;
  std::map<ItemId, Instance*> data;   // received Q/KV items, by name
  std::map<ItemId, Instance*> accum;  // this rank's live accumulators of others' tokens

  auto newInstance = [&](const ItemId& id, int start) {
    instances.push_back(std::make_unique<Instance>());
    Instance* in = instances.back().get();
    in->item = id;
    in->bytes = slotBytes(itemLayout(p, id, s.backward));
    in->start = in->end = start;
    return in;
  };
  // Where a Q/KV item can be read in round k.
  auto dataRef = [&](const ItemId& id, int k, ItemRef* ref) {
    ref->item = ref->stored = id;
    if (id.origin == me) {
      ref->local = true;
      return;
    }
    auto it = data.find(id);
    if (it == data.end() && id.parts > 1) it = data.find(ItemId{id.kind, id.origin, 0, 1});
    Instance* in = it->second;  // the verifier guarantees presence
    in->end = std::max(in->end, k);
    ref->stored = in->item;
    in->patches.push_back(&ref->offset);
  };
  auto accumRef = [&](const ItemId& id, int k, ItemRef* ref) {
    ref->item = ref->stored = id;
    if (id.origin == me) {
      ref->local = true;
      return;
    }
    auto it = accum.find(id);
    Instance* in;
    if (it == accum.end()) {
      in = newInstance(id, k);
      accum[id] = in;
      ref->init = true;
    } else {
      in = it->second;
    }
    in->end = std::max(in->end, k);
    in->patches.push_back(&ref->offset);
  };

  // Patches point into the plan's vectors: size them first so they never move.
  for (size_t k = 0; k < rounds.size(); ++k) {
    size_t nMerges = 0;
    for (const Transfer& t : rounds[k].transfers) nMerges += (!t.send && isAccumulator(t.item.kind));
    plan.rounds[k].transfers.resize(rounds[k].transfers.size());
    plan.rounds[k].tasks.resize(rounds[k].tasks.size());
    plan.rounds[k].merges.resize(nMerges);
  }

  for (size_t kk = 0; kk < rounds.size(); ++kk) {
    const int k = static_cast<int>(kk);
    PlannedRound& pr = plan.rounds[k];
    std::vector<ItemId> sentAccums;
    size_t m = 0;
    for (size_t i = 0; i < rounds[k].transfers.size(); ++i) {
      const Transfer& t = rounds[k].transfers[i];
      PlannedTransfer& pt = pr.transfers[i];
      pt.item = t.item;
      pt.peer = t.peer;
      pt.send = t.send;
      if (t.send) {
        if (isAccumulator(t.item.kind)) {
          Instance* in = accum.at(t.item);
          in->end = std::max(in->end, k);
          pt.ref.item = pt.ref.stored = t.item;
          in->patches.push_back(&pt.ref.offset);
          sentAccums.push_back(t.item);
        } else {
          dataRef(t.item, k, &pt.ref);
        }
      } else {
        Instance* in = newInstance(t.item, k);
        pt.ref.item = pt.ref.stored = t.item;
        in->patches.push_back(&pt.ref.offset);
        if (isAccumulator(t.item.kind)) {
          PlannedMerge& mg = pr.merges[m++];
          mg.from = pt.ref;
          in->patches.push_back(&mg.from.offset);
          mg.into.item = mg.into.stored = t.item;
          mg.into.local = t.item.origin == me;
        } else {
          data[t.item] = in;
        }
      }
    }
    for (size_t i = 0; i < rounds[k].tasks.size(); ++i) {
      const Task& t = rounds[k].tasks[i];
      PlannedTask& pt = pr.tasks[i];
      dataRef(t.q, k, &pt.q);
      dataRef(ItemId{ItemKind::kKV, t.kvOrigin, 0, 1}, k, &pt.kv);
      ItemId out = t.q;
      out.kind = s.backward ? ItemKind::kDQ : ItemKind::kOut;
      accumRef(out, k, &pt.out);
      if (s.backward) accumRef(ItemId{ItemKind::kDKV, t.kvOrigin, 0, 1}, k, &pt.dkv);
    }
    for (const ItemId& id : sentAccums) accum.erase(id);
    // Merges of arrived accumulators run after the round's tasks; one into a missing
    // accumulator creates it (by copy).
    for (PlannedMerge& mg : pr.merges) {
      if (mg.into.local) continue;
      auto it = accum.find(mg.into.item);
      Instance* in;
      if (it == accum.end()) {
        in = newInstance(mg.into.item, k);
        accum[mg.into.item] = in;
        mg.into.init = true;
      } else {
        in = it->second;
      }
      in->end = std::max(in->end, k);
      in->patches.push_back(&mg.into.offset);
    }
  }
  // Slots of one kind share the largest size, so they are interchangeable and reuse never
  // fragments the arena (blocks of uneven layouts differ by a row).
  size_t maxBytes[5] = {0, 0, 0, 0, 0};
  for (auto& in : instances) maxBytes[static_cast<int>(in->item.kind)] = std::max(maxBytes[static_cast<int>(in->item.kind)], in->bytes);
  for (auto& in : instances) in->bytes = maxBytes[static_cast<int>(in->item.kind)];
  plan.arenaBytes = place(instances);
  // Every reference's rows and stored layout, and each round's operation count (a send of a
  // local item posts the segments of its layout too: sendSegments in executor.cc).
  auto resolve = [&](ItemRef& r) {
    partRows(p.tokens[r.item.origin].size(), r.item.part, r.item.parts, &r.rowBegin, &r.rowEnd);
    r.layout = itemLayout(p, r.stored, s.backward);
  };
  for (PlannedRound& pr : plan.rounds) {
    size_t ops = 0;
    for (PlannedTransfer& t : pr.transfers) {
      resolve(t.ref);
      ops += t.ref.layout.segBytes.size();
    }
    for (PlannedTask& t : pr.tasks) {
      for (ItemRef* r : {&t.q, &t.kv, &t.out}) resolve(*r);
      if (s.backward) resolve(t.dkv);
    }
    for (PlannedMerge& m : pr.merges) {
      resolve(m.from);
      resolve(m.into);
    }
    plan.maxRoundOps = std::max(plan.maxRoundOps, ops);
  }
  // Peak number of received K/V blocks alive at once.
  for (size_t k = 0; k < rounds.size(); ++k) {
    int live = 0;
    for (auto& in : instances) {
      live += in->item.kind == ItemKind::kKV && in->start <= static_cast<int>(k) && static_cast<int>(k) <= in->end;
    }
    plan.peakKvSlots = std::max(plan.peakKvSlots, live);
  }
  return plan;
}

}  // namespace attn
}  // namespace attnccl
