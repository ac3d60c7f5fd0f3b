#include "attn/call_tensors.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include "core/dtype.h"
#include "core/result.h"

namespace attnccl {
namespace attn {

namespace {

// A tensor of the call as validation sees it: its name, view, dims and whether it is written.
struct Named {
  const char* name;        // "q", "out", ...
  const char* stridesName;  // "qStrides", ...
  const void* ptr;
  attncclStrides_t strides;
  int heads;       // 0 for LSE
  bool output;
  TensorView* view;
};

int64_t positiveMod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

// Byte interval [lo, hi) a view can touch; empty when it holds no element.
struct Span {
  uintptr_t lo = 0, hi = 0;
  bool empty() const { return hi <= lo; }
};

struct Extents {
  int64_t batch, tokens, heads, inner;  // inner: contiguous elements per (b, t, h)
};

Span spanOf(const TensorView& v, const Extents& e, size_t es) {
  Span s;
  if (v.ptr == nullptr || e.batch == 0 || e.tokens == 0 || e.heads == 0) return s;
  const int64_t last = (e.batch - 1) * v.batch + (e.tokens - 1) * v.token + (e.heads - 1) * v.head + e.inner;
  s.lo = reinterpret_cast<uintptr_t>(v.ptr);
  s.hi = s.lo + static_cast<uintptr_t>(last) * es;
  return s;
}

// Do two strided views share an element? Exact when their byte spans are disjoint or when both
// are row views with the same token stride whose rows fit inside it and whose batch strides are
// whole numbers of rows (the packed-QKV case: q, k, v, or dq, dk, dv, interleaved in one buffer,
// each in its own columns of the rows). Otherwise it answers "maybe" (true): such exotic views
// of outputs are rejected rather than risked.
bool mayShare(const TensorView& a, const Extents& ea, const TensorView& b, const Extents& eb, size_t es) {
  Span sa = spanOf(a, ea, es), sb = spanOf(b, eb, es);
  if (sa.empty() || sb.empty() || sa.hi <= sb.lo || sb.hi <= sa.lo) return false;
  if (ea.heads == 0 || eb.heads == 0 || a.token != b.token || a.token <= 0) return true;
  const int64_t st = a.token;
  const int64_t wa = (ea.heads - 1) * a.head + ea.inner, wb = (eb.heads - 1) * b.head + eb.inner;
  if (wa > st || wb > st) return true;
  if ((ea.batch > 1 && a.batch % st != 0) || (eb.batch > 1 && b.batch % st != 0)) return true;
  const int64_t bytes = static_cast<int64_t>(reinterpret_cast<uintptr_t>(b.ptr) - reinterpret_cast<uintptr_t>(a.ptr));
  if (bytes % static_cast<int64_t>(es) != 0) return true;
  const int64_t off = positiveMod(bytes / static_cast<int64_t>(es), st);
  // Row footprints within one row period: a at [0, wa), b at [off, off + wb) modulo st.
  return off < wa || off + wb > st;
}

// Resolves a view's strides: all 0 = contiguous; else every stride >= 0 and none 0 over an
// extent of more than one element.
attncclResult_t resolveStrides(const char* fn, const Named& n, const Extents& e, TensorView* v) {
  const attncclStrides_t& s = n.strides;
  const bool isLse = n.heads == 0;
  v->ptr = static_cast<const char*>(n.ptr);
  if (s.batch == 0 && s.token == 0 && s.head == 0) {
    if (isLse) {
      v->token = 1;
      v->head = e.tokens;
      v->batch = e.heads * e.tokens;
    } else {
      v->head = e.inner;
      v->token = e.heads * e.inner;
      v->batch = e.tokens * v->token;
    }
    return attncclSuccess;
  }
  const struct {
    const char* field;
    int64_t value, extent;
  } dims[3] = {{"batch", s.batch, e.batch}, {"token", s.token, e.tokens}, {"head", s.head, e.heads}};
  for (const auto& d : dims) {
    ATTN_ARG(d.value >= 0, "%s: tensors->%s.%s is %lld; strides must be >= 0", fn, n.stridesName, d.field,
             static_cast<long long>(d.value));
    ATTN_ARG(d.value != 0 || d.extent <= 1,
             "%s: tensors->%s.%s is 0 but that dimension holds %lld elements (all three 0 = contiguous; "
             "broadcast views are not supported)",
             fn, n.stridesName, d.field, static_cast<long long>(d.extent));
  }
  if (isLse) {
    ATTN_ARG(s.token == 0 || s.token == 1, "%s: tensors->lseStrides.token is %lld; LSE rows are contiguous (0 or 1)", fn,
             static_cast<long long>(s.token));
  }
  v->batch = s.batch;
  v->token = isLse ? 1 : s.token;
  v->head = s.head;
  if (!n.output) return attncclSuccess;
  // An output must not write one element twice: ordered by stride, each dimension's stride is at
  // least the extent of the ones inside it.
  std::array<std::pair<int64_t, int64_t>, 3> order = {
      std::make_pair(v->batch, e.batch), std::make_pair(v->token, e.tokens), std::make_pair(v->head, e.heads)};
  std::sort(order.begin(), order.end());
  int64_t inside = isLse ? 1 : e.inner;
  for (const auto& o : order) {
    if (o.second <= 1) continue;
    ATTN_ARG(o.first >= inside,
             "%s: tensors->%s {batch %lld, token %lld, head %lld} makes the output %s overlap itself "
             "(a stride of %lld inside a span of %lld elements)",
             fn, n.stridesName, static_cast<long long>(s.batch), static_cast<long long>(s.token),
             static_cast<long long>(s.head), n.name, static_cast<long long>(o.first), static_cast<long long>(inside));
    inside = o.first * (o.second - 1) + inside;
  }
  return attncclSuccess;
}

}  // namespace

attncclResult_t resolveCallTensors(const char* fn, const attncclAttnTensors_t* t, const AttnShape& s, int64_t batch,
                                   int64_t tokens, bool backward, CallTensors* out) {
  ATTN_ARG(t != nullptr, "%s: tensors is NULL", fn);
  ATTN_ARG(t->magic == ATTNCCL_ATTN_TENSORS_MAGIC,
           "%s: tensors->magic 0x%x is not ATTNCCL_ATTN_TENSORS_MAGIC (use ATTNCCL_ATTN_TENSORS_INITIALIZER)", fn,
           t->magic);
  const size_t need = offsetof(attncclAttnTensors_t, lseStrides) + sizeof(t->lseStrides);
  ATTN_ARG(t->size >= need, "%s: tensors->size %zu is smaller than %zu (use ATTNCCL_ATTN_TENSORS_INITIALIZER)", fn,
           t->size, need);
  CallTensors c;
  c.backward = backward;
  c.batch = batch;
  c.tokens = tokens;
  c.elemSize = dtypeSize(s.dtype);
  c.sinks = t->sinks;
  c.dsinks = backward ? t->dsinks : nullptr;
  const int Hq = s.numHeadsQ, Hkv = s.numHeadsKV;
  std::vector<Named> all = {{"q", "qStrides", t->q, t->qStrides, Hq, false, &c.q},
                            {"k", "kStrides", t->k, t->kStrides, Hkv, false, &c.k},
                            {"v", "vStrides", t->v, t->vStrides, Hkv, false, &c.v},
                            {"out", "outStrides", t->out, t->outStrides, Hq, !backward, &c.out},
                            {"lse", "lseStrides", t->lse, t->lseStrides, 0, !backward, &c.lse}};
  if (backward) {
    all.push_back({"dout", "doutStrides", t->dout, t->doutStrides, Hq, false, &c.dout});
    all.push_back({"dq", "dqStrides", t->dq, t->dqStrides, Hq, true, &c.dq});
    all.push_back({"dk", "dkStrides", t->dk, t->dkStrides, Hkv, true, &c.dk});
    all.push_back({"dv", "dvStrides", t->dv, t->dvStrides, Hkv, true, &c.dv});
  }
  auto extentsOf = [&](const Named& n) {
    return n.heads == 0 ? Extents{batch, tokens, Hq, 1} : Extents{batch, tokens, n.heads, s.headDim};
  };
  const bool holds = batch * tokens > 0;
  for (const Named& n : all) {
    const bool optional = !backward && n.heads == 0;  // forward LSE
    ATTN_ARG(n.ptr != nullptr || optional || !holds, "%s: tensors->%s is NULL but this rank holds %lld x %lld tokens",
             fn, n.name, static_cast<long long>(batch), static_cast<long long>(tokens));
    ATTN_CHECK(resolveStrides(fn, n, extentsOf(n), n.view));
  }
  ATTN_ARG(c.dsinks == nullptr || c.sinks != nullptr, "%s: tensors->dsinks is %p but tensors->sinks is NULL", fn,
           static_cast<void*>(c.dsinks));
  // Outputs must not share an element with any other tensor of the call (out aliasing q, dq
  // inside k's columns, ...). Sinks/dsinks are [Hq] fp32 vectors: compared by their bytes.
  for (size_t i = 0; i < all.size(); ++i) {
    if (!all[i].output) continue;
    const size_t esI = all[i].heads == 0 ? sizeof(float) : c.elemSize;
    for (size_t j = 0; j < all.size(); ++j) {
      if (j == i) continue;
      const size_t esJ = all[j].heads == 0 ? sizeof(float) : c.elemSize;
      bool share;
      if (esI == esJ && (all[i].heads == 0) == (all[j].heads == 0)) {
        share = mayShare(*all[i].view, extentsOf(all[i]), *all[j].view, extentsOf(all[j]), esI);
      } else {
        Span a = spanOf(*all[i].view, extentsOf(all[i]), esI), b = spanOf(*all[j].view, extentsOf(all[j]), esJ);
        share = !a.empty() && !b.empty() && a.lo < b.hi && b.lo < a.hi;
      }
      ATTN_ARG(!share, "%s: output tensors->%s (%p) overlaps tensors->%s (%p)", fn, all[i].name, all[i].ptr,
               all[j].name, all[j].ptr);
    }
    if (c.sinks != nullptr) {
      Span a = spanOf(*all[i].view, extentsOf(all[i]), esI);
      uintptr_t lo = reinterpret_cast<uintptr_t>(c.sinks), hi = lo + static_cast<uintptr_t>(Hq) * sizeof(float);
      ATTN_ARG(a.empty() || a.hi <= lo || hi <= a.lo, "%s: output tensors->%s (%p) overlaps tensors->sinks (%p)", fn,
               all[i].name, all[i].ptr, static_cast<const void*>(c.sinks));
    }
  }
  if (c.dsinks != nullptr) {
    uintptr_t lo = reinterpret_cast<uintptr_t>(c.dsinks), hi = lo + static_cast<uintptr_t>(Hq) * sizeof(float);
    uintptr_t slo = reinterpret_cast<uintptr_t>(c.sinks), shi = slo + static_cast<uintptr_t>(Hq) * sizeof(float);
    ATTN_ARG(hi <= slo || shi <= lo, "%s: tensors->dsinks (%p) overlaps tensors->sinks (%p)", fn,
             static_cast<void*>(c.dsinks), static_cast<const void*>(c.sinks));
    for (const Named& n : all) {
      Span a = spanOf(*n.view, extentsOf(n), n.heads == 0 ? sizeof(float) : c.elemSize);
      ATTN_ARG(a.empty() || a.hi <= lo || hi <= a.lo, "%s: tensors->dsinks (%p) overlaps tensors->%s (%p)", fn,
               static_cast<void*>(c.dsinks), n.name, n.ptr);
    }
  }
  *out = c;
  return attncclSuccess;
}

CallTensors contiguousCallTensors(const AttnShape& s, int64_t batch, int64_t tokens, bool backward, const void* q,
                                  const void* k, const void* v, const void* out, const float* lse, const void* dout,
                                  void* dq, void* dk, void* dv) {
  CallTensors c;
  c.backward = backward;
  c.batch = batch;
  c.tokens = tokens;
  c.elemSize = dtypeSize(s.dtype);
  const int64_t D = s.headDim;
  auto rows = [&](const void* p, int H) {
    TensorView w;
    w.ptr = static_cast<const char*>(p);
    w.head = D;
    w.token = H * D;
    w.batch = tokens * H * D;
    return w;
  };
  c.q = rows(q, s.numHeadsQ);
  c.k = rows(k, s.numHeadsKV);
  c.v = rows(v, s.numHeadsKV);
  c.out = rows(out, s.numHeadsQ);
  c.dout = rows(dout, s.numHeadsQ);
  c.dq = rows(dq, s.numHeadsQ);
  c.dk = rows(dk, s.numHeadsKV);
  c.dv = rows(dv, s.numHeadsKV);
  c.lse.ptr = reinterpret_cast<const char*>(lse);
  c.lse.token = 1;
  c.lse.head = tokens;
  c.lse.batch = tokens * s.numHeadsQ;
  return c;
}

FwdTensors CallTensors::forward(int64_t b) const {
  FwdTensors t{q.at(b, elemSize), k.at(b, elemSize), v.at(b, elemSize), const_cast<char*>(out.at(b, elemSize)),
               reinterpret_cast<float*>(const_cast<char*>(lse.at(b, sizeof(float))))};
  t.qs = q.rows();
  t.ks = k.rows();
  t.vs = v.rows();
  t.os = out.rows();
  t.ldlse = lse.head;
  t.sinks = sinks;
  return t;
}

BwdTensors CallTensors::backwardOf(int64_t b) const {
  BwdTensors t{q.at(b, elemSize),
               k.at(b, elemSize),
               v.at(b, elemSize),
               out.at(b, elemSize),
               reinterpret_cast<const float*>(lse.at(b, sizeof(float))),
               dout.at(b, elemSize),
               const_cast<char*>(dq.at(b, elemSize)),
               const_cast<char*>(dk.at(b, elemSize)),
               const_cast<char*>(dv.at(b, elemSize))};
  t.qs = q.rows();
  t.ks = k.rows();
  t.vs = v.rows();
  t.os = out.rows();
  t.dos = dout.rows();
  t.dqs = dq.rows();
  t.dks = dk.rows();
  t.dvs = dv.rows();
  t.ldlse = lse.head;
  return t;
}

bool CallTensors::allDense(const AttnShape& s) const {
  const int Hq = s.numHeadsQ, Hkv = s.numHeadsKV, D = s.headDim;
  auto dense = [&](const TensorView& w, int H) {
    return w.ptr == nullptr || (isDense(w.rows(), H, D) && (batch <= 1 || w.batch == tokens * H * D));
  };
  bool ok = dense(q, Hq) && dense(k, Hkv) && dense(v, Hkv) && dense(out, Hq);
  if (backward) ok = ok && dense(dout, Hq) && dense(dq, Hq) && dense(dk, Hkv) && dense(dv, Hkv);
  const bool lseDense = lse.ptr == nullptr || (lse.head == tokens && (batch <= 1 || lse.batch == tokens * s.numHeadsQ));
  return ok && lseDense;
}

}  // namespace attn
}  // namespace attnccl
