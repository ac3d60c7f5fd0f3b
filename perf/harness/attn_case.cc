#include "harness/attn_case.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "attn/auto_choice.h"
#include "attn/tile_clock.h"
#include "harness/launch.h"
#include "harness/sync.h"
#include "harness/values.h"

namespace perf {
namespace {

std::atomic<bool> gErrorSeen{false};

enum TensorId : uint64_t { kTensorQ = 1, kTensorK = 2, kTensorV = 3, kTensorDout = 4 };

// splitmix64 finaliser: a well-mixed 64-bit hash of (tensor, element).
double seeded(uint64_t tensor, uint64_t index) {
  uint64_t x = tensor * 0x9E3779B97F4A7C15ull + index * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<double>(x >> 11) * (2.0 / 9007199254740992.0) - 1.0;  // [-1, 1)
}

// Rows of `heads` x `dim` for the given global positions (nullptr: positions 0..n-1).
void fillRows(void* buf, attncclDataType_t t, uint64_t tensor, const int64_t* pos, int64_t n, int heads, int dim) {
  const int64_t row = static_cast<int64_t>(heads) * dim;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = pos ? pos[i] : i;
    for (int64_t e = 0; e < row; ++e) {
      storeValue(buf, static_cast<size_t>(i * row + e), t, seeded(tensor, static_cast<uint64_t>(p * row + e)));
    }
  }
}

double tolerance(attncclDataType_t t) {
  switch (t) {
    case attncclFloat16: return 5e-3;
    case attncclBfloat16: return 2e-2;
    default: return 1e-5;
  }
}

// Wrong elements of `got` (rows of this rank, row i = global position pos[i]) against `ref`
// (rows of every position), by relative norm (see attn_case.h).
int64_t compareRows(const void* got, const void* ref, attncclDataType_t t, const std::vector<int64_t>& pos,
                    int64_t rowElems) {
  double err2 = 0, ref2 = 0;
  int64_t nan = 0;
  const size_t n = pos.size();
  for (size_t i = 0; i < n; ++i) {
    for (int64_t e = 0; e < rowElems; ++e) {
      double g = loadValue(got, i * rowElems + e, t), r = loadValue(ref, pos[i] * rowElems + e, t);
      if (!std::isfinite(g)) ++nan;
      err2 += (g - r) * (g - r);
      ref2 += r * r;
    }
  }
  const double tol = tolerance(t);
  if (nan == 0 && err2 <= tol * tol * ref2) return 0;
  const double limit = tol * std::sqrt(ref2 / std::max<double>(1.0, static_cast<double>(n * rowElems)));
  int64_t wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    for (int64_t e = 0; e < rowElems; ++e) {
      double g = loadValue(got, i * rowElems + e, t), r = loadValue(ref, pos[i] * rowElems + e, t);
      if (!std::isfinite(g) || std::fabs(g - r) > limit) ++wrong;
    }
  }
  return std::max<int64_t>(wrong, 1);
}

// LSE [H][T] against the reference's [H][S], absolute 1e-4 (equal infinities agree).
int64_t compareLse(const float* got, const float* ref, const std::vector<int64_t>& pos, int heads, int64_t S) {
  int64_t wrong = 0;
  const int64_t T = static_cast<int64_t>(pos.size());
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < T; ++i) {
      float g = got[h * T + i], r = ref[h * S + pos[i]];
      if (g == r) continue;
      if (!(std::fabs(g - r) <= 1e-4f)) ++wrong;
    }
  }
  return wrong;
}

// The tensors of one rank (or of the whole sequence for the reference): [B][T][H][D] each, or
// with `packed` q, k and v as column slices of one [B][T][Hq+2*Hkv][D] buffer.
struct Tensors {
  Buffer q, k, v, dout, o, lse, dq, dk, dv;
  Buffer qkv;  // packed mode only
  bool packed = false;
  int64_t rows = 0;  // B x T
  size_t qRowBytes = 0, kvRowBytes = 0;
  Tensors(int64_t T, const AttnParams& ap, attncclDataType_t t, bool library, bool packedQkv) {
    const size_t es = dtypeBytes(t), qRow = static_cast<size_t>(ap.heads) * ap.headDim * es,
                 kvRow = static_cast<size_t>(ap.kv()) * ap.headDim * es, n = static_cast<size_t>(T * ap.batch);
    packed = packedQkv;
    rows = T * ap.batch;
    qRowBytes = qRow;
    kvRowBytes = kvRow;
    for (Buffer* b : {&q, &dout, &o, &dq}) *b = Buffer(n * qRow, library);
    for (Buffer* b : {&k, &v, &dk, &dv}) *b = Buffer(n * kvRow, library);
    lse = Buffer(n * ap.heads * sizeof(float), library);
    if (packed) qkv = Buffer(n * (qRow + 2 * kvRow), library);
  }
  // Rows of sequence b at positions b*S + pos[i] (pos nullptr: 0..T-1).
  void fill(const AttnParams& ap, attncclDataType_t t, const int64_t* pos, int64_t T, int64_t S) {
    std::vector<int64_t> all(static_cast<size_t>(T * ap.batch));
    for (int64_t b = 0; b < ap.batch; ++b)
      for (int64_t i = 0; i < T; ++i) all[b * T + i] = b * S + (pos ? pos[i] : i);
    const int64_t n = T * ap.batch;
    fillRows(q.data(), t, kTensorQ, all.data(), n, ap.heads, ap.headDim);
    fillRows(k.data(), t, kTensorK, all.data(), n, ap.kv(), ap.headDim);
    fillRows(v.data(), t, kTensorV, all.data(), n, ap.kv(), ap.headDim);
    fillRows(dout.data(), t, kTensorDout, all.data(), n, ap.heads, ap.headDim);
    if (!packed) return;
    // Setup only: the dense copies fill the packed rows (the timed calls read the packed views).
    char* dst = static_cast<char*>(qkv.data());
    for (int64_t r = 0; r < n; ++r, dst += qRowBytes + 2 * kvRowBytes) {
      memcpy(dst, static_cast<char*>(q.data()) + r * qRowBytes, qRowBytes);
      memcpy(dst + qRowBytes, static_cast<char*>(k.data()) + r * kvRowBytes, kvRowBytes);
      memcpy(dst + qRowBytes + kvRowBytes, static_cast<char*>(v.data()) + r * kvRowBytes, kvRowBytes);
    }
  }
  // The Ex call's tensors of the packed views.
  attncclAttnTensors_t packedViews(const AttnParams& ap) const {
    attncclAttnTensors_t t = ATTNCCL_ATTN_TENSORS_INITIALIZER;
    const int64_t D = ap.headDim, W = static_cast<int64_t>(ap.heads + 2 * ap.kv()) * D;
    const int64_t T = ap.batch > 0 ? rows / ap.batch : 0;
    char* base = static_cast<char*>(qkv.data());
    t.q = rows ? base : nullptr;
    t.k = rows ? base + qRowBytes : nullptr;
    t.v = rows ? base + qRowBytes + kvRowBytes : nullptr;
    t.qStrides = t.kStrides = t.vStrides = {T * W, W, D};
    return t;
  }
};

attncclResult_t forward(const AttnParams& ap, const attncclAttnDesc_t& d, attncclAlgo_t algo, attncclComm_t c,
                        const Tensors& x, Buffer& o, Buffer& lse) {
  if (x.packed) {
    attncclAttnTensors_t t = x.packedViews(ap);
    t.out = o.data();
    t.lse = static_cast<float*>(lse.data());
    return attncclAttnForwardEx(&t, &d, algo, c, nullptr);
  }
  return attncclAttnForward(x.q.data(), x.k.data(), x.v.data(), o.data(), static_cast<float*>(lse.data()), &d, algo, c,
                            nullptr);
}

attncclResult_t backward(const AttnParams& ap, const attncclAttnDesc_t& d, attncclAlgo_t algo, attncclComm_t c,
                         const Tensors& x, Buffer& dq, Buffer& dk, Buffer& dv) {
  if (x.packed) {
    attncclAttnTensors_t t = x.packedViews(ap);
    t.out = x.o.data();
    t.lse = static_cast<float*>(x.lse.data());
    t.dout = x.dout.data();
    t.dq = dq.data();
    t.dk = dk.data();
    t.dv = dv.data();
    return attncclAttnBackwardEx(&t, &d, algo, c, nullptr);
  }
  return attncclAttnBackward(x.q.data(), x.k.data(), x.v.data(), x.o.data(), static_cast<const float*>(x.lse.data()),
                             x.dout.data(), dq.data(), dk.data(), dv.data(), &d, algo, c, nullptr);
}

// The one-rank result of a sweep value, shared by the rank threads of this process.
struct Reference {
  int64_t seqLen = 0;
  std::unique_ptr<Tensors> tensors;
  double seconds[2] = {0, 0};  // per call, one rank with P x T threads; 0 = not timed
  bool ok = false;
};

std::mutex gRefMutex;
std::shared_ptr<Reference> gRef;

void reportError(const RankInfo& ri, const char* what, attncclResult_t r, attncclComm_t comm) {
  gErrorSeen = true;
  fprintf(stderr, "rank %d: %s: %s (%s); the row reports ERR\n", ri.rank, what, attncclGetErrorString(r),
          attncclGetLastError(comm));
}

// Runs (and optionally times) the whole sequence on a one-rank communicator.
std::shared_ptr<Reference> buildReference(const AttnParams& ap, const RankInfo& ri, int64_t S, bool timed) {
  auto ref = std::make_shared<Reference>();
  ref->seqLen = S;
  const Options& opt = *ri.opt;
  attncclAttnDesc_t d = attnDesc(ap, opt.dtype, S);
  ref->tensors.reset(new Tensors(S, ap, opt.dtype, false, false));
  Tensors& t = *ref->tensors;
  t.fill(ap, opt.dtype, nullptr, S, S);
  attncclUniqueId id;
  attncclComm_t comm = nullptr;
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.cpuThreads = opt.cpuThreads > 0 ? opt.cpuThreads * ri.threads : 0;  // 0: all cores, as the P ranks share
  attncclResult_t r = attncclGetUniqueId(&id);
  if (r == attncclSuccess) r = attncclCommInitRank(&comm, 1, id, 0, &cfg);
  if (r != attncclSuccess) fatal("one-rank reference communicator: %s (%s)", attncclGetErrorString(r), attncclGetLastError(nullptr));
  const bool wantBwd = ap.backward;
  r = forward(ap, d, attncclAlgoAuto, comm, t, t.o, t.lse);
  if (r == attncclSuccess && wantBwd) r = backward(ap, d, attncclAlgoAuto, comm, t, t.dq, t.dk, t.dv);
  for (int dir = 0; timed && r == attncclSuccess && dir < 2; ++dir) {
    if ((dir == kAttnFwd && !ap.forward) || (dir == kAttnBwd && !ap.backward)) continue;
    // Separate outputs, so the timed runs cannot disturb the checked result.
    Tensors scratch(S, ap, opt.dtype, false, false);
    auto call = [&] {
      return dir == kAttnFwd ? forward(ap, d, attncclAlgoAuto, comm, t, scratch.o, scratch.lse)
                             : backward(ap, d, attncclAlgoAuto, comm, t, scratch.dq, scratch.dk, scratch.dv);
    };
    for (int w = 0; w < opt.warmup && r == attncclSuccess; ++w) r = call();
    const double t0 = wallSeconds();
    for (int it = 0; it < opt.iters && r == attncclSuccess; ++it) r = call();
    ref->seconds[dir] = (wallSeconds() - t0) / opt.iters;
  }
  if (r != attncclSuccess) {
    fprintf(stderr, "one-rank reference: %s (%s)\n", attncclGetErrorString(r), attncclGetLastError(comm));
    gErrorSeen = true;
  }
  ref->ok = r == attncclSuccess;
  attncclCommDestroy(comm);
  return ref;
}

class AttnCase : public Case {
 public:
  AttnCase(const AttnParams& ap, const RankInfo& ri, int64_t S) : ap_(ap), ri_(ri), S_(S) {
    const Options& opt = *ri.opt;
    t_ = opt.dtype;
    desc_ = attnDesc(ap, t_, S);
    if (ap.forward) dirs_.push_back(kAttnFwd);
    if (ap.backward) dirs_.push_back(kAttnBwd);
    int64_t T = 0;
    checkResult(attncclAttnLocalTokens(&desc_, ri.nranks, ri.rank, &T, nullptr), nullptr, "attncclAttnLocalTokens");
    pos_.resize(static_cast<size_t>(T));
    checkResult(attncclAttnLocalTokens(&desc_, ri.nranks, ri.rank, &T, pos_.data()), nullptr, "attncclAttnLocalTokens");
    x_.reset(new Tensors(T, ap, t_, opt.libraryBuffers, ap.packed));
    x_->fill(ap, t_, pos_.data(), T, S);
    // Rows of the batch: sequence b's token i is row b*S + pos[i] of the reference.
    for (int64_t b = 0; b < ap.batch; ++b)
      for (int64_t p : pos_) rowPos_.push_back(b * S + p);
    // Poison the outputs: an element the collective does not write stays NaN.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const size_t rows = rowPos_.size();
    const size_t qElems = rows * ap.heads * ap.headDim, kvElems = rows * ap.kv() * ap.headDim;
    for (Buffer* b : {&x_->o, &x_->dq}) fillValue(b->data(), qElems, t_, nan);
    for (Buffer* b : {&x_->dk, &x_->dv}) fillValue(b->data(), kvElems, t_, nan);
    fillValue(x_->lse.data(), rows * ap.heads, attncclFloat32, nan);
    const bool timedRef = ap.efficiency && ri.processes == 1;
    if (opt.check || timedRef) {
      std::lock_guard<std::mutex> lock(gRefMutex);  // the other rank threads sleep here meanwhile
      if (!gRef || gRef->seqLen != S) {
        gRef.reset();  // free the previous value's tensors first
        gRef = buildReference(ap, ri, S, timedRef);
      }
      ref_ = gRef;
    }
    for (AttnDir d : {kAttnFwd, kAttnBwd}) algo_[d] = resolveAlgo(d);
    // Backward alone needs this rank's forward output first.
    if (!ap.forward && ap.backward) call(kAttnFwd);
  }

  int phases() const override { return static_cast<int>(dirs_.size()); }

  attncclResult_t run(int phase) override {
    const AttnDir d = dirs_[phase];
    attncclCommStats_t before, after;
    before.size = after.size = sizeof(attncclCommStats_t);
    attncclCommGetStats(ri_.comm, &before);
    const double tile0 = attnccl::attn::tileSecondsThisThread();
    call(d);
    tile_[d].push_back(attnccl::attn::tileSecondsThisThread() - tile0);
    attncclCommGetStats(ri_.comm, &after);
    bytes_[d].push_back(static_cast<double>(after.bytesSent - before.bytesSent));
    return attncclSuccess;  // failures are reported per row (see attn_case.h)
  }

  int64_t check() override {
    if (failed_ || !ref_ || !ref_->ok) return 0;
    const Tensors& r = *ref_->tensors;
    const int64_t qRow = static_cast<int64_t>(ap_.heads) * ap_.headDim, kvRow = static_cast<int64_t>(ap_.kv()) * ap_.headDim;
    int64_t wrong = 0;
    if (ap_.forward) {
      wrong += compareRows(x_->o.data(), r.o.data(), t_, rowPos_, qRow);
      const int64_t T = static_cast<int64_t>(pos_.size());
      for (int64_t b = 0; b < ap_.batch; ++b)  // LSE [B][H][T] against the reference's [B][H][S]
        wrong += compareLse(static_cast<const float*>(x_->lse.data()) + b * ap_.heads * T,
                            static_cast<const float*>(r.lse.data()) + b * ap_.heads * S_, pos_, ap_.heads, S_);
    }
    if (ap_.backward) {
      wrong += compareRows(x_->dq.data(), r.dq.data(), t_, rowPos_, qRow);
      wrong += compareRows(x_->dk.data(), r.dk.data(), t_, rowPos_, kvRow);
      wrong += compareRows(x_->dv.data(), r.dv.data(), t_, rowPos_, kvRow);
    }
    return wrong;
  }

  std::vector<double> stats() override {
    std::vector<double> s;
    const size_t n = static_cast<size_t>(ri_.opt->iters);
    for (AttnDir d : dirs_) {
      double tile = 0, bytes = 0;
      // The timed iterations are the last n calls of the direction.
      for (size_t i = tile_[d].size() > n ? tile_[d].size() - n : 0; i < tile_[d].size(); ++i) {
        tile += tile_[d][i];
        bytes += bytes_[d][i];
      }
      const double calls = static_cast<double>(std::min(n, tile_[d].size()));
      const bool reportsRef = ref_ && ri_.rank == 0;
      s.push_back(tile);
      s.push_back(calls > 0 ? bytes / calls : 0);
      s.push_back(reportsRef ? ref_->seconds[d] : 0);
      s.push_back(static_cast<double>(algo_[d]));
      s.push_back(failed_ ? 1 : 0);
    }
    return s;
  }

 private:
  // The algorithm a call of direction d runs: the tool's, or what auto chooses (the library's
  // own choice function on this communicator, the one attncclAlgoAuto calls).
  attncclAlgo_t resolveAlgo(AttnDir d) {
    if (ap_.algo != attncclAlgoAuto || ri_.nranks == 1) return ap_.algo;
    attncclAlgo_t a = attncclAlgoAuto;
    if (attnccl::attn::autoAlgorithm(ri_.comm, &desc_, d == kAttnBwd, &a) != attncclSuccess) return attncclAlgoAuto;
    return a;
  }

  void call(AttnDir d) {
    if (failed_) return;
    Tensors& x = *x_;
    attncclResult_t r = d == kAttnFwd ? forward(ap_, desc_, ap_.algo, ri_.comm, x, x.o, x.lse)
                                      : backward(ap_, desc_, ap_.algo, ri_.comm, x, x.dq, x.dk, x.dv);
    if (r != attncclSuccess) {
      failed_ = true;
      reportError(ri_, d == kAttnFwd ? "attncclAttnForward" : "attncclAttnBackward", r, ri_.comm);
    }
  }

  const AttnParams ap_;
  const RankInfo ri_;
  const int64_t S_;
  attncclDataType_t t_;
  attncclAttnDesc_t desc_;
  std::vector<AttnDir> dirs_;
  std::vector<int64_t> pos_;
  std::vector<int64_t> rowPos_;  // reference row of each of this rank's B x T rows
  std::unique_ptr<Tensors> x_;
  std::shared_ptr<Reference> ref_;
  attncclAlgo_t algo_[2] = {attncclAlgoAuto, attncclAlgoAuto};
  std::vector<double> tile_[2], bytes_[2];
  bool failed_ = false;
};

}  // namespace

attncclAttnDesc_t attnDesc(const AttnParams& ap, attncclDataType_t dtype, int64_t seqLen) {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  d.dtype = dtype;
  d.seqLen = seqLen;
  d.numHeadsQ = ap.heads;
  d.numHeadsKV = ap.kv();
  d.headDim = ap.headDim;
  d.layout = ap.layout;
  d.causal = ap.causal ? 1 : 0;
  d.windowLeft = ap.window;
  d.windowRight = -1;
  d.batch = ap.batch;
  return d;
}

double attnVisiblePairs(const attncclAttnDesc_t& d) {
  double pairs = 0;
  for (int64_t i = 0; i < d.seqLen; ++i) {
    int64_t lo = d.windowLeft >= 0 ? std::max<int64_t>(0, i - d.windowLeft) : 0;
    int64_t hi = d.causal ? i : d.seqLen - 1;
    pairs += static_cast<double>(hi - lo + 1);
  }
  return pairs;
}

std::unique_ptr<Case> makeAttnCase(const AttnParams& ap, const RankInfo& ri, int64_t seqLen) {
  return std::unique_ptr<Case>(new AttnCase(ap, ri, seqLen));
}

bool attnErrorSeen() { return gErrorSeen.load(); }

}  // namespace perf
