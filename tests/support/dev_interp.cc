#include "support/dev_interp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <tuple>

#include "attn/layout.h"
#include "attn/tile.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "support/ranks.h"

namespace attnccl_test {

namespace attn = attnccl::attn;
namespace gpu = attnccl::attn::gpu;
using attnccl::test::format;

using Clock = std::vector<uint64_t>;

// A byte range an operation touches (object = rank * 16 + space).
struct InterpRange {
  int obj;
  size_t lo, hi;
  bool write;
};

namespace {
using Range = InterpRange;

bool before(const Clock& a, int threadA, const Clock& b) { return a[threadA] <= b[threadA]; }

void join(Clock& into, const Clock& from) {
  for (size_t i = 0; i < into.size(); ++i) into[i] = std::max(into[i], from[i]);
}

// Everything one run needs to resolve and execute operations.
struct Machine {
  const attn::Problem& p;
  const std::vector<InterpTensors>& t;
  std::vector<std::vector<char>>& win;
  int Hq, Hkv, D;
  size_t es, qRow, kvRow;
  attnccl::ThreadPool pool{1};
  const std::vector<gpu::DevProgram>& progs;

  Machine(const attn::Problem& pr, const std::vector<InterpTensors>& tensors, std::vector<std::vector<char>>& w,
          const std::vector<gpu::DevProgram>& programs)
      : p(pr), t(tensors), win(w), progs(programs) {
    Hq = p.heads.numQ;
    Hkv = p.heads.numKV;
    D = p.shape.headDim;
    es = attnccl::dtypeSize(p.shape.dtype);
    qRow = static_cast<size_t>(Hq) * D * es;
    kvRow = static_cast<size_t>(Hkv) * D * es;
  }
  int64_t T(int r) const { return p.tokens[r].size(); }

  int objOf(int rank, const gpu::Ref& ref) const {
    if (ref.space == gpu::Space::kPeer) return ref.peer * 16 + static_cast<int>(gpu::Space::kOwn);
    return rank * 16 + static_cast<int>(ref.space);
  }
  size_t sizeOf(int obj) const {
    const int r = obj / 16;
    const size_t T = static_cast<size_t>(this->T(r));
    switch (static_cast<gpu::Space>(obj % 16)) {
      case gpu::Space::kUserQ:
      case gpu::Space::kUserDout:
      case gpu::Space::kUserOut:
      case gpu::Space::kUserDq: return T * qRow;
      case gpu::Space::kUserK:
      case gpu::Space::kUserV:
      case gpu::Space::kUserDk:
      case gpu::Space::kUserDv: return T * kvRow;
      case gpu::Space::kUserLse: return T * Hq * 4;
      default: return win[r].size();
    }
  }
  char* base(int obj) const {
    const int r = obj / 16;
    const InterpTensors& x = t[r];
    switch (static_cast<gpu::Space>(obj % 16)) {
      case gpu::Space::kUserQ: return const_cast<char*>(static_cast<const char*>(x.q));
      case gpu::Space::kUserK: return const_cast<char*>(static_cast<const char*>(x.k));
      case gpu::Space::kUserV: return const_cast<char*>(static_cast<const char*>(x.v));
      case gpu::Space::kUserDout: return const_cast<char*>(static_cast<const char*>(x.dout));
      case gpu::Space::kUserOut: return static_cast<char*>(x.out);
      case gpu::Space::kUserLse: return reinterpret_cast<char*>(x.lse);
      case gpu::Space::kUserDq: return static_cast<char*>(x.dq);
      case gpu::Space::kUserDk: return static_cast<char*>(x.dk);
      case gpu::Space::kUserDv: return static_cast<char*>(x.dv);
      default: return win[r].data();
    }
  }
  char* ptr(int rank, const gpu::Ref& ref) const { return base(objOf(rank, ref)) + ref.offset; }
  float* fptr(int rank, const gpu::Ref& ref) const { return reinterpret_cast<float*>(ptr(rank, ref)); }

  attn::Tokens tokens(int rank, const gpu::Rows& r) const {
    const attn::RankTokens& tk = r.table >= 0 ? progs[rank].tables[r.table] : p.tokens[r.origin];
    return attn::Tokens{r.end - r.begin, tk.pos.data() + r.begin, tk.doc.data() + r.begin};
  }

  void common(const attn::HeadMap& heads, attn::TileCommon* c) const {
    c->dtype = p.shape.dtype;
    c->headDim = D;
    c->scale = p.shape.scale;
    c->mask = p.mask();
    c->heads = heads;
  }
  size_t rowBytes(int heads, size_t elem) const { return static_cast<size_t>(heads) * D * elem; }

  // Byte ranges an operation reads and writes.
  void ranges(int rank, const gpu::DevOp& op, std::vector<Range>* out) const;
  void execute(int rank, const gpu::DevOp& op);
};

void add(std::vector<Range>* out, int obj, size_t off, size_t bytes, bool write) {
  if (bytes > 0) out->push_back(Range{obj, off, off + bytes, write});
}

// A [heads][ld] fp32 block of `rows` columns: one range per head.
void add2d(std::vector<Range>* out, int obj, size_t off, size_t width, size_t height, size_t pitch, bool write) {
  for (size_t h = 0; h < height; ++h) add(out, obj, off + h * pitch, width, write);
}

void Machine::ranges(int r, const gpu::DevOp& op, std::vector<Range>* out) const {
  auto o = [&](const gpu::Ref& ref) { return objOf(r, ref); };
  if (auto* f = std::get_if<gpu::FwdTileOp>(&op.body)) {
    const size_t rows = static_cast<size_t>(f->qRows.size()), tk = static_cast<size_t>(f->kRows.size());
    const int hq = f->heads.numQ, hkv = f->heads.numKV;
    add(out, o(f->q), f->q.offset, rows * rowBytes(hq, es), false);
    add(out, o(f->k), f->k.offset, tk * rowBytes(hkv, es), false);
    add(out, o(f->v), f->v.offset, tk * rowBytes(hkv, es), false);
    add(out, o(f->o), f->o.offset, rows * rowBytes(hq, f->final ? es : 4), true);
    add2d(out, o(f->lse), f->lse.offset, rows * 4, hq, f->ldlse * 4, true);
  } else if (auto* b = std::get_if<gpu::BwdTileOp>(&op.body)) {
    const size_t rows = static_cast<size_t>(b->qRows.size()), tk = static_cast<size_t>(b->kRows.size());
    const int hq = b->heads.numQ, hkv = b->heads.numKV;
    add(out, o(b->q), b->q.offset, rows * rowBytes(hq, es), false);
    add(out, o(b->dout), b->dout.offset, rows * rowBytes(hq, es), false);
    add2d(out, o(b->lse), b->lse.offset, rows * 4, hq, b->ldlse * 4, false);
    add2d(out, o(b->delta), b->delta.offset, rows * 4, hq, b->ldlse * 4, false);
    add(out, o(b->k), b->k.offset, tk * rowBytes(hkv, es), false);
    add(out, o(b->v), b->v.offset, tk * rowBytes(hkv, es), false);
    add(out, o(b->dq), b->dq.offset, rows * rowBytes(hq, 4), true);
    add(out, o(b->dk), b->dk.offset, tk * rowBytes(hkv, 4), true);
    add(out, o(b->dv), b->dv.offset, tk * rowBytes(hkv, 4), true);
  } else if (auto* c = std::get_if<gpu::ClearOutOp>(&op.body)) {
    add(out, o(c->o), c->o.offset, static_cast<size_t>(c->rows) * rowBytes(c->heads, 4), true);
    add2d(out, o(c->lse), c->lse.offset, static_cast<size_t>(c->rows) * 4, c->heads, c->ldlse * 4, true);
  } else if (auto* z = std::get_if<gpu::ZeroOp>(&op.body)) {
    add(out, o(z->dst), z->dst.offset, z->bytes, true);
  } else if (auto* m = std::get_if<gpu::MergeOutOp>(&op.body)) {
    const size_t rows = static_cast<size_t>(m->rows);
    add(out, o(m->o), m->o.offset, rows * rowBytes(m->heads, 4), true);
    add2d(out, o(m->lse), m->lse.offset, rows * 4, m->heads, m->ldlse * 4, true);
    add(out, o(m->oB), m->oB.offset, rows * rowBytes(m->heads, 4), false);
    add2d(out, o(m->lseB), m->lseB.offset, rows * 4, m->heads, m->ldlseB * 4, false);
  } else if (auto* a = std::get_if<gpu::AddOp>(&op.body)) {
    add2d(out, o(a->dst), a->dst.offset, a->width * 4, a->height, a->dpitch * 4, true);
    add2d(out, o(a->src), a->src.offset, a->width * 4, a->height, a->spitch * 4, false);
  } else if (auto* d = std::get_if<gpu::DeltaOp>(&op.body)) {
    add(out, o(d->out), d->out.offset, static_cast<size_t>(d->rows) * rowBytes(d->heads, es), false);
    add(out, o(d->dout), d->dout.offset, static_cast<size_t>(d->rows) * rowBytes(d->heads, es), false);
    add(out, o(d->delta), d->delta.offset, static_cast<size_t>(d->rows) * d->heads * 4, true);
  } else if (auto* s = std::get_if<gpu::StoreOp>(&op.body)) {
    add(out, o(s->src), s->src.offset, static_cast<size_t>(s->rows * s->width) * 4, false);
    add(out, o(s->dst), s->dst.offset, static_cast<size_t>(s->rows * s->width) * es, true);
  } else if (auto* c2 = std::get_if<gpu::CopyOp>(&op.body)) {
    if (c2->dst.space == gpu::Space::kUserLse && t[r].lse == nullptr) return;
    add2d(out, o(c2->src), c2->src.offset, c2->width, c2->height, c2->spitch, false);
    add2d(out, o(c2->dst), c2->dst.offset, c2->width, c2->height, c2->dpitch, true);
  }
}

void Machine::execute(int r, const gpu::DevOp& op) {
  if (auto* f = std::get_if<gpu::FwdTileOp>(&op.body)) {
    const int64_t tq = static_cast<int64_t>(f->heads.numQ) * D;
    attn::FwdTileArgs a;
    common(f->heads, &a);
    a.q = ptr(r, f->q);
    a.ldq = tq;
    a.qTok = tokens(r, f->qRows);
    a.k = ptr(r, f->k);
    a.v = ptr(r, f->v);
    a.ldkv = static_cast<int64_t>(f->heads.numKV) * D;
    a.kTok = tokens(r, f->kRows);
    a.ldo = tq;
    a.ldlse = f->ldlse;
    a.lse = fptr(r, f->lse);
    if (!f->final) {
      a.o = fptr(r, f->o);
      attn::fwdTile(a, pool);
      return;
    }
    // Final epilogue: fp32 accumulation, then one rounding into the storage dtype.
    const int64_t rows = f->qRows.size();
    std::vector<float> acc(static_cast<size_t>(std::max<int64_t>(1, rows * tq)));
    attn::clearAccumulator(acc.data(), rows, f->heads.numQ, D, tq, a.lse, a.ldlse);
    a.o = acc.data();
    attn::fwdTile(a, pool);
    attn::storeRows(p.shape.dtype, acc.data(), tq, ptr(r, f->o), tq, rows, tq, pool);
  } else if (auto* b = std::get_if<gpu::BwdTileOp>(&op.body)) {
    const int64_t tq = static_cast<int64_t>(b->heads.numQ) * D, tkv = static_cast<int64_t>(b->heads.numKV) * D;
    attn::BwdTileArgs a;
    common(b->heads, &a);
    a.q = ptr(r, b->q);
    a.dout = ptr(r, b->dout);
    a.ldq = tq;
    a.qTok = tokens(r, b->qRows);
    a.k = ptr(r, b->k);
    a.v = ptr(r, b->v);
    a.ldkv = tkv;
    a.kTok = tokens(r, b->kRows);
    a.lse = fptr(r, b->lse);
    a.delta = fptr(r, b->delta);
    a.ldlse = b->ldlse;
    a.dq = fptr(r, b->dq);
    a.lddq = tq;
    a.dk = fptr(r, b->dk);
    a.dv = fptr(r, b->dv);
    a.lddkv = tkv;
    attn::bwdTile(a, pool);
  } else if (auto* c = std::get_if<gpu::ClearOutOp>(&op.body)) {
    attn::clearAccumulator(fptr(r, c->o), c->rows, c->heads, D, static_cast<int64_t>(c->heads) * D, fptr(r, c->lse),
                           c->ldlse);
  } else if (auto* z = std::get_if<gpu::ZeroOp>(&op.body)) {
    memset(ptr(r, z->dst), 0, z->bytes);
  } else if (auto* m = std::get_if<gpu::MergeOutOp>(&op.body)) {
    float* o = fptr(r, m->o);
    float* lse = fptr(r, m->lse);
    const float* ob = fptr(r, m->oB);
    const float* lb = fptr(r, m->lseB);
    const int H = m->heads;
    for (int h = 0; h < H; ++h) {
      for (int64_t i = 0; i < m->rows; ++i) {
        const float l2 = lb[h * m->ldlseB + i];
        if (l2 == -std::numeric_limits<float>::infinity()) continue;
        float& l1 = lse[h * m->ldlse + i];
        float* orow = o + (i * H + h) * D;
        const float* brow = ob + (i * H + h) * D;
        const float mx = std::max(l1, l2);
        const float l = mx + std::log(std::exp(l1 - mx) + std::exp(l2 - mx));
        const float w1 = std::exp(l1 - l), w2 = std::exp(l2 - l);
        for (int d = 0; d < D; ++d) orow[d] = (w1 != 0.f ? orow[d] * w1 : 0.f) + brow[d] * w2;
        l1 = l;
      }
    }
  } else if (auto* a = std::get_if<gpu::AddOp>(&op.body)) {
    float* dst = fptr(r, a->dst);
    const float* src = fptr(r, a->src);
    for (int64_t y = 0; y < a->height; ++y)
      for (int64_t i = 0; i < a->width; ++i)
        dst[y * a->dpitch + i] = a->copy ? src[y * a->spitch + i] : dst[y * a->dpitch + i] + src[y * a->spitch + i];
  } else if (auto* d = std::get_if<gpu::DeltaOp>(&op.body)) {
    attn::computeDelta(p.shape.dtype, ptr(r, d->out), ptr(r, d->dout), d->rows, d->heads, D,
                       static_cast<int64_t>(d->heads) * D, fptr(r, d->delta), d->rows, pool);
  } else if (auto* s = std::get_if<gpu::StoreOp>(&op.body)) {
    attn::storeRows(p.shape.dtype, fptr(r, s->src), s->width, ptr(r, s->dst), s->width, s->rows, s->width, pool);
  } else if (auto* c2 = std::get_if<gpu::CopyOp>(&op.body)) {
    if (c2->dst.space == gpu::Space::kUserLse && t[r].lse == nullptr) return;
    for (size_t h = 0; h < c2->height; ++h) {
      memcpy(ptr(r, c2->dst) + h * c2->dpitch, ptr(r, c2->src) + h * c2->spitch, c2->width);
    }
  }
}

}  // namespace

struct DevInterpreter::Access {
  InterpRange range;
  Clock clock;
  int thread;
  std::string what;
};

DevInterpreter::DevInterpreter(int nranks)
    : nranks_(nranks), windows_(nranks), flags_(2 * nranks * nranks, 0), clocks_(2 * nranks, Clock(2 * nranks, 0)) {}

DevInterpreter::~DevInterpreter() = default;

std::string DevInterpreter::run(const attn::Problem& p, const std::vector<gpu::DevProgram>& programs,
                                const std::vector<InterpTensors>& tensors, uint64_t seed) {
  const int P = nranks_;
  for (int r = 0; r < P; ++r) {
    if (windows_[r].size() < programs[r].windowBytes) windows_[r].resize(programs[r].windowBytes, '\xff');
  }
  Machine m(p, tensors, windows_, programs);
  const int threads = 2 * P;
  std::vector<std::vector<const gpu::DevOp*>> queue(threads);
  for (int r = 0; r < P; ++r)
    for (const gpu::DevOp& op : programs[r].ops) queue[2 * r + op.stream].push_back(&op);
  std::vector<size_t> head(threads, 0);
  std::vector<Clock>& vc = clocks_;
  std::vector<std::map<int, Clock>> events(P);  // recorded events of this call, with their clocks
  // Signals of this call: (rank, kind, from) -> (value, clock) in order.
  std::map<std::tuple<int, int, int>, std::vector<std::pair<uint64_t, Clock>>> signals;
  std::vector<Access>& accesses = history_;
  std::mt19937_64 rng(seed);
  executed_ = 0;

  auto blocked = [&](int th) -> bool {
    const int r = th / 2;
    const gpu::DevOp& op = *queue[th][head[th]];
    if (auto* w = std::get_if<gpu::WaitEventOp>(&op.body)) return events[r].count(w->event) == 0;
    if (auto* f = std::get_if<gpu::WaitFlagOp>(&op.body)) {
      return flags_[(r * 2 + f->kind) * P + f->from] < base_ + f->value;
    }
    return false;
  };

  for (;;) {
    std::vector<int> ready;
    bool live = false;
    for (int th = 0; th < threads; ++th) {
      if (head[th] >= queue[th].size()) continue;
      live = true;
      if (!blocked(th)) ready.push_back(th);
    }
    if (!live) break;
    if (ready.empty()) {
      std::string msg = "deadlock:";
      for (int th = 0; th < threads; ++th) {
        if (head[th] < queue[th].size()) msg += format(" [rank %d: %s]", th / 2, gpu::describe(*queue[th][head[th]]).c_str());
      }
      return msg;
    }
    const int th = ready[rng() % ready.size()];
    const int r = th / 2;
    const gpu::DevOp& op = *queue[th][head[th]++];
    ++vc[th][th];
    ++executed_;
    if (auto* rec = std::get_if<gpu::RecordOp>(&op.body)) {
      events[r][rec->event] = vc[th];
      continue;
    }
    if (auto* w = std::get_if<gpu::WaitEventOp>(&op.body)) {
      join(vc[th], events[r][w->event]);
      continue;
    }
    if (auto* s = std::get_if<gpu::SignalOp>(&op.body)) {
      flags_[(s->peer * 2 + s->kind) * P + r] = base_ + s->value;
      signals[std::make_tuple(s->peer, s->kind, r)].push_back({s->value, vc[th]});
      continue;
    }
    if (auto* f = std::get_if<gpu::WaitFlagOp>(&op.body)) {
      // Joins the first signal of this call that satisfied the wait.
      for (const auto& sig : signals[std::make_tuple(r, f->kind, f->from)]) {
        if (sig.first >= f->value) {
          join(vc[th], sig.second);
          break;
        }
      }
      continue;
    }
    std::vector<Range> rs;
    m.ranges(r, op, &rs);
    const std::string what = format("rank %d ", r) + gpu::describe(op);
    for (const Range& x : rs) {
      if (x.hi > m.sizeOf(x.obj) || m.base(x.obj) == nullptr) {
        return format("out of bounds: %s touches bytes [%zu, %zu) of an object of %zu bytes", what.c_str(), x.lo, x.hi,
                      m.sizeOf(x.obj));
      }
      for (const Access& a : accesses) {
        if (a.range.obj != x.obj || a.range.hi <= x.lo || x.hi <= a.range.lo) continue;
        if (!a.range.write && !x.write) continue;
        if (!before(a.clock, a.thread, vc[th])) {
          return format("race: '%s' and '%s' touch bytes [%zu, %zu) of the same memory unordered", a.what.c_str(),
                        what.c_str(), std::max(a.range.lo, x.lo), std::min(a.range.hi, x.hi));
        }
      }
    }
    for (const Range& x : rs) accesses.push_back(Access{x, vc[th], th, what});
    m.execute(r, op);
  }
  uint64_t most = 0;
  for (const auto& prog : programs) most = std::max(most, prog.numSequences);
  base_ += most;
  return "";
}

}  // namespace attnccl_test
