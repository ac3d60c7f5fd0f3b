// The stream-ordered multi-rank executor: every algorithm of the table (attn/algos/registry.h)
// on CUDA communicators of several ranks on one node. The row's device program (attn/program/
// dev_program.h and dev_ulysses.h, where the synchronisation is explained; checked by the CPU
// interpreter of the tests), compiled from its schedule where it has no builder of its own, is
// built once per shape and cached; a call then only grows the cuda_ipc windows if needed, takes
// fresh flag sequence numbers and enqueues the program's operations one for one: kernels on the
// communicator's stream, copies into peers' windows on its copy stream, flags through
// attn/cuda/cuda_ipc.h, events between the two. Nothing waits on the host.
#include "attn/cuda/dev_executor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/algos/registry.h"
#include "attn/cuda/check.h"
#include "attn/cuda/kernels.h"
#include "attn/cuda/local.h"
#include "attn/program/dev_program.h"
#include "attn/tune/tuner.h"
#include "core/result.h"
#include "attn/cuda/cuda_ipc.h"

namespace attnccl {
namespace cuda {
namespace {

namespace gpu = attn::gpu;

std::string keyOf(const attn::AttnShape& s, int nranks, attncclAlgo_t algo, bool backward) {
  std::string k = attn::shapeKey(s);
  for (int64_t v : {int64_t(nranks), int64_t(algo), int64_t(backward)}) {
    k.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  return k;
}

attncclResult_t prepare(attncclComm* comm, const attn::AttnShape& s, attncclAlgo_t algo, bool backward,
                        Prepared** out) {
  DeviceComm* d = comm->dev.get();
  const std::string key = keyOf(s, comm->nranks, algo, backward);
  auto& mine = d->prepared;
  auto it = mine.find(key);
  if (it != mine.end()) {
    *out = it->second.get();
    return attncclSuccess;
  }
  std::unique_ptr<Prepared> pr(new Prepared());
  pr->problem = attn::Problem::fromLayout(s, comm->nranks);
  const attn::AlgoEntry* a = attn::findAlgorithm(algo);
  if (a == nullptr) return fail(attncclInternalError, "algorithm %d is not in the table", static_cast<int>(algo));
  if (a->deviceProgram == nullptr && a->schedule == nullptr) {
    return fail(attncclInternalError, "algorithm %s has no token schedule", a->name);
  }
  pr->program = attn::deviceProgramOf(*a, pr->problem, backward, comm->rank, attn::hybridGroupSize(comm));
  std::vector<int64_t> pos, doc;
  for (const attn::RankTokens& t : pr->problem.tokens) {
    pr->first.push_back(static_cast<int64_t>(pos.size()));
    pos.insert(pos.end(), t.pos.begin(), t.pos.end());
    doc.insert(doc.end(), t.doc.begin(), t.doc.end());
  }
  ATTN_CHECK(d->consts.add("pos:" + key, pos, d->stream, &pr->pos));
  ATTN_CHECK(d->consts.add("doc:" + key, doc, d->stream, &pr->doc));
  for (size_t k = 0; k < pr->program.tables.size(); ++k) {
    const attn::RankTokens& tb = pr->program.tables[k];
    const std::string tk = "table" + std::to_string(k) + ":" + key;
    const int64_t *tp = nullptr, *td = nullptr;
    ATTN_CHECK(d->consts.add("pos" + tk, tb.pos, d->stream, &tp));
    ATTN_CHECK(d->consts.add("doc" + tk, tb.doc, d->stream, &td));
    pr->tablePos.push_back(tp);
    pr->tableDoc.push_back(td);
  }
  *out = pr.get();
  mine[key] = std::move(pr);
  return attncclSuccess;
}

// The caller's tensors of one call, by space.
struct UserTensors {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* dout = nullptr;
  const void* out = nullptr;
  const float* lse = nullptr;
  void* outW = nullptr;
  float* lseW = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
};

class Issuer {
 public:
  Issuer(attncclComm* comm, const Prepared& pr, const UserTensors& u)
      : comm_(comm), d_(comm->dev.get()), ipc_(d_->ipc.get()), pr_(pr), p_(pr.problem), u_(u) {}
  attncclResult_t issue(const gpu::DevOp& op);

 private:
  char* at(const gpu::Ref& r) const;
  float* fat(const gpu::Ref& r) const { return reinterpret_cast<float*>(at(r)); }
  gpu::DevTokens tokens(const gpu::Rows& r) const {
    gpu::DevTokens t;
    t.n = r.size();
    if (r.table >= 0) {
      t.pos = pr_.tablePos[r.table] + r.begin;
      t.doc = pr_.tableDoc[r.table] + r.begin;
      return t;
    }
    t.pos = pr_.pos + pr_.first[r.origin] + r.begin;
    t.doc = pr_.doc + pr_.first[r.origin] + r.begin;
    return t;
  }
  template <typename P>
  void common(const attn::HeadMap& h, P* p) const {
    fillTileCommon(p_.shape, &p->mask, &p->heads);
    p->heads.numQ = h.numQ;
    p->heads.numKV = h.numKV;
    p->heads.qFirst = h.qFirst;
    p->heads.kvFirst = h.kvFirst;
    p->heads.group = h.group;
    p->headDim = p_.shape.headDim;
    p->scale = p_.shape.scale;
    p->scaleLog2 = p_.shape.scale * gpu::kLog2e;
  }

  attncclComm* comm_;
  DeviceComm* d_;
  IpcWindows* ipc_;
  const Prepared& pr_;
  const attn::Problem& p_;
  UserTensors u_;
};

char* Issuer::at(const gpu::Ref& r) const {
  char* b = nullptr;
  switch (r.space) {
    case gpu::Space::kUserQ: b = static_cast<char*>(const_cast<void*>(u_.q)); break;
    case gpu::Space::kUserK: b = static_cast<char*>(const_cast<void*>(u_.k)); break;
    case gpu::Space::kUserV: b = static_cast<char*>(const_cast<void*>(u_.v)); break;
    case gpu::Space::kUserDout: b = static_cast<char*>(const_cast<void*>(u_.dout)); break;
    case gpu::Space::kUserOut:
      b = u_.outW != nullptr ? static_cast<char*>(u_.outW) : static_cast<char*>(const_cast<void*>(u_.out));
      break;
    case gpu::Space::kUserLse:
      b = u_.lseW != nullptr ? reinterpret_cast<char*>(u_.lseW)
                             : reinterpret_cast<char*>(const_cast<float*>(u_.lse));
      break;
    case gpu::Space::kUserDq: b = static_cast<char*>(u_.dq); break;
    case gpu::Space::kUserDk: b = static_cast<char*>(u_.dk); break;
    case gpu::Space::kUserDv: b = static_cast<char*>(u_.dv); break;
    case gpu::Space::kOwn: b = ipc_->data(comm_->rank); break;
    case gpu::Space::kPeer: b = ipc_->data(r.peer); break;
  }
  return b == nullptr ? nullptr : b + r.offset;
}

attncclResult_t Issuer::issue(const gpu::DevOp& op) {
  cudaStream_t s = op.stream == gpu::kComputeStream ? d_->stream : d_->copyStream;
  const attncclDataType_t dt = p_.shape.dtype;
  const int D = p_.shape.headDim;
  if (auto* f = std::get_if<gpu::FwdTileOp>(&op.body)) {
    gpu::FwdParams p;
    common(f->heads, &p);
    p.q = at(f->q);
    p.k = at(f->k);
    p.v = at(f->v);
    p.ldq = static_cast<int64_t>(f->heads.numQ) * D;
    p.ldkv = static_cast<int64_t>(f->heads.numKV) * D;
    p.qt = tokens(f->qRows);
    p.kt = tokens(f->kRows);
    p.mode = f->final ? gpu::kFwdFinal : gpu::kFwdMerge;
    p.o = at(f->o);
    p.ldo = p.ldq;
    p.lse = fat(f->lse);
    p.ldlse = f->ldlse;
    return forwardTile(dt, p, s);
  }
  if (auto* b = std::get_if<gpu::BwdTileOp>(&op.body)) {
    gpu::BwdParams p;
    common(b->heads, &p);
    p.q = at(b->q);
    p.dout = at(b->dout);
    p.ldq = static_cast<int64_t>(b->heads.numQ) * D;
    p.qt = tokens(b->qRows);
    p.k = at(b->k);
    p.v = at(b->v);
    p.ldkv = static_cast<int64_t>(b->heads.numKV) * D;
    p.kt = tokens(b->kRows);
    p.lse = fat(b->lse);
    p.delta = fat(b->delta);
    p.ldlse = b->ldlse;
    p.dq = fat(b->dq);
    p.lddq = p.ldq;
    p.dk = fat(b->dk);
    p.dv = fat(b->dv);
    p.lddkv = p.ldkv;
    return backwardTile(dt, p, s);
  }
  if (auto* c = std::get_if<gpu::ClearOutOp>(&op.body)) {
    return clearAccumulator(fat(c->o), c->rows, c->heads, D, static_cast<int64_t>(c->heads) * D, fat(c->lse),
                            c->ldlse, s);
  }
  if (auto* z = std::get_if<gpu::ZeroOp>(&op.body)) {
    if (z->bytes > 0) ATTN_CUDA(cudaMemsetAsync(at(z->dst), 0, z->bytes, s));
    return attncclSuccess;
  }
  if (auto* m = std::get_if<gpu::MergeOutOp>(&op.body)) {
    const int64_t ld = static_cast<int64_t>(m->heads) * D;
    return mergeAccumulators(fat(m->o), fat(m->lse), ld, m->ldlse, fat(m->oB), fat(m->lseB), ld, m->ldlseB, m->rows,
                             m->heads, D, s);
  }
  if (auto* a = std::get_if<gpu::AddOp>(&op.body)) {
    return addF32(fat(a->dst), fat(a->src), a->width, a->height, a->dpitch, a->spitch, a->copy, s);
  }
  if (auto* dl = std::get_if<gpu::DeltaOp>(&op.body)) {
    return computeDelta(dt, at(dl->out), at(dl->dout), dl->rows, dl->heads, D, static_cast<int64_t>(dl->heads) * D,
                        fat(dl->delta), dl->rows, s);
  }
  if (auto* st = std::get_if<gpu::StoreOp>(&op.body)) {
    return storeRows(dt, fat(st->src), st->width, at(st->dst), st->width, st->rows, st->width, s);
  }
  if (auto* c = std::get_if<gpu::CopyOp>(&op.body)) {
    char* dst = at(c->dst);
    if (dst == nullptr || c->width == 0 || c->height == 0) return attncclSuccess;  // no LSE wanted, or empty
    if (c->height == 1) {
      ATTN_CUDA(cudaMemcpyAsync(dst, at(c->src), c->width, cudaMemcpyDefault, s));
    } else {
      ATTN_CUDA(cudaMemcpy2DAsync(dst, c->dpitch, at(c->src), c->spitch, c->width, c->height, cudaMemcpyDefault, s));
    }
    return attncclSuccess;
  }
  if (auto* g = std::get_if<gpu::SignalOp>(&op.body)) {
    return ipc_->signal(s, g->peer, static_cast<FlagKind>(g->kind), g->value);
  }
  if (auto* w = std::get_if<gpu::WaitFlagOp>(&op.body)) {
    return ipc_->wait(s, w->from, static_cast<FlagKind>(w->kind), w->value);
  }
  if (auto* r = std::get_if<gpu::RecordOp>(&op.body)) {
    ATTN_CUDA(cudaEventRecord(d_->roundEvents[r->event], s));
    return attncclSuccess;
  }
  if (auto* e = std::get_if<gpu::WaitEventOp>(&op.body)) {
    ATTN_CUDA(cudaStreamWaitEvent(s, d_->roundEvents[e->event], 0));
    return attncclSuccess;
  }
  return fail(attncclInternalError, "unknown device operation");
}

attncclResult_t run(attncclComm* comm, const attn::AttnShape& s, attncclAlgo_t algo, bool backward,
                    const UserTensors& u) {
  DeviceComm* d = comm->dev.get();
  if (algo == attncclAlgoAuto) algo = attncclAlgoRing;
  Prepared* pr = nullptr;
  ATTN_CHECK(prepare(comm, s, algo, backward, &pr));
  const gpu::DevProgram& prog = pr->program;
  ATTN_CHECK(d->ipc->ensureData(prog.windowBytes));
  ATTN_CHECK(ensureEvents(d, static_cast<size_t>(prog.numEvents)));
  ATTN_CHECK(d->ipc->beginCall(d->stream, prog.numSequences));
  Issuer issuer(comm, *pr, u);
  for (const gpu::DevOp& op : prog.ops) {
    attncclResult_t r = issuer.issue(op);
    if (r != attncclSuccess) {
      prefixLastError(gpu::describe(op).c_str());
      return r;
    }
  }
  StatsBlock& st = comm->engine.stats();
  st.bytesSent.fetch_add(prog.bytesSent, std::memory_order_relaxed);
  st.bytesRecv.fetch_add(prog.bytesRecv, std::memory_order_relaxed);
  st.messagesSent.fetch_add(prog.messagesSent, std::memory_order_relaxed);
  st.messagesRecv.fetch_add(prog.messagesRecv, std::memory_order_relaxed);
  return attncclSuccess;
}

}  // namespace

attncclResult_t distributedForward(attncclComm* comm, const attn::AttnShape& s, const attn::FwdTensors& t,
                                   attncclAlgo_t algo) {
  UserTensors u;
  u.q = t.q;
  u.k = t.k;
  u.v = t.v;
  u.outW = t.out;
  u.lseW = t.lse;
  return run(comm, s, algo, false, u);
}

attncclResult_t distributedBackward(attncclComm* comm, const attn::AttnShape& s, const attn::BwdTensors& t,
                                    attncclAlgo_t algo) {
  UserTensors u;
  u.q = t.q;
  u.k = t.k;
  u.v = t.v;
  u.out = t.out;
  u.lse = t.lse;
  u.dout = t.dout;
  u.dq = t.dq;
  u.dk = t.dk;
  u.dv = t.dv;
  return run(comm, s, algo, true, u);
}

}  // namespace cuda
}  // namespace attnccl
