// Framework tensors (API 0.2): batch, strided views, attention sinks, through attncclAttnForwardEx
// and attncclAttnBackwardEx, for every algorithm on 1, 2, 3, 4, 5 and 8 ranks (threads and
// processes), every layout, mask and dtype, uneven lengths.
//
// Each rank's q, k and v are slices of one packed [B][T][Hq+2*Hkv][D] buffer (the QKV projection
// as frameworks hold it); out has padded columns and a padded row per sequence, LSE padded rows
// and a padded head gap, dout is head-major ([B][Hq][T][D]: a head stride that is not D), and dq,
// dk, dv are slices of one packed buffer with a padded row per sequence. Every element a view
// covers is poisoned (NaN) before a call, every padding element holds a sentinel that must
// survive. Results are checked against the fp64 oracle with sinks (support/sink_reference.h),
// written independently of the library; dsinks must be the same bits on every rank.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "support/attn_case.h"
#include "support/dist_case.h"
#include "support/ranks.h"
#include "support/sink_reference.h"
#include "support/tensors.h"

using namespace attnccl_test;
using attnccl::test::format;
using attnccl::test::Mode;

namespace {

constexpr double kSentinel = 77.0;  // exact in fp32, bf16 and fp16; no attention output reaches it

struct FtCase {
  CaseSpec spec;
  int64_t batch = 1;
  bool sinks = false;
  bool trainSinks = false;
  bool packed = true;  // packed QKV and dQKV, padded out / LSE, head-major dout; else all contiguous
};

// The inputs of every sequence of a case and their fp64 results (computed once, before ranks start).
struct Prepared {
  std::vector<std::unique_ptr<AttnCase>> seqs;
  attncclAttnDesc_t desc;
  std::vector<float> sinks;
  std::vector<SinkRef> ref;
  std::vector<double> dsinksTotal, dsinksAbs;
  std::string name;
};

std::unique_ptr<Prepared> prepare(const FtCase& c, uint64_t seed) {
  auto p = std::make_unique<Prepared>();
  for (int64_t b = 0; b < c.batch; ++b) p->seqs.push_back(std::make_unique<AttnCase>(c.spec, subSeed(seed, 100 + b)));
  p->desc = p->seqs[0]->desc();
  p->desc.batch = c.batch;
  const int Hq = c.spec.hq;
  if (c.sinks) p->sinks = randomFloats(Hq, subSeed(seed, 7), -1.f, 2.f);
  std::vector<double> sinks(p->sinks.begin(), p->sinks.end());
  p->dsinksTotal.assign(Hq, 0.0);
  p->dsinksAbs.assign(Hq, 0.0);
  for (auto& s : p->seqs) {
    p->ref.push_back(refAttentionWithSinks(s->desc(), s->q().toDouble(), s->k().toDouble(), s->v().toDouble(),
                                           s->dout().toDouble(), sinks));
    for (int h = 0; h < Hq; ++h) {
      p->dsinksTotal[h] += p->ref.back().dsinks[h];
      p->dsinksAbs[h] += p->ref.back().dsinksAbs[h];
    }
  }
  p->name = format("%s B=%lld%s%s%s", p->seqs[0]->name().c_str(), static_cast<long long>(c.batch),
                   c.sinks ? " sinks" : "", c.trainSinks ? "(trained)" : "", c.packed ? " packed" : " contiguous");
  return p;
}

// A buffer in the storage dtype holding strided views; everything starts as the sentinel.
struct Buffer {
  Tensor t;
  Buffer(attncclDataType_t dt, int64_t numel) : t(dt, std::max<int64_t>(numel, 1)) {
    for (int64_t i = 0; i < t.numel(); ++i) t.set(i, kSentinel);
  }
  char* at(int64_t elem) { return static_cast<char*>(t.data()) + elem * elemSize(); }
  size_t elemSize() const { return t.dtype() == attncclFloat32 ? 4 : 2; }
};

// A [B][T][H][D] view into a Buffer: offset and strides in elements.
struct View {
  int64_t offset = 0, sb = 0, st = 0, sh = 0;
  int H = 0;
  int64_t index(int64_t b, int64_t t, int64_t h, int64_t e) const { return offset + b * sb + t * st + h * sh + e; }
};

// Elements of a buffer that no view covers must still hold the sentinel.
std::string checkPadding(const char* what, const Tensor& t, const std::vector<char>& covered) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (covered[i]) continue;
    if (t.get(i) != kSentinel) return format("%s: padding element %lld is %g, not the sentinel; ", what,
                                             static_cast<long long>(i), t.get(i));
  }
  return "";
}

double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Relative error of a rank's slice against the reference, scaled by the whole tensor's typical size
// (a rank may hold rows whose values are small).
std::string compareRows(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                        double wholeNorm, int64_t wholeCount, double tol) {
  double diff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::isfinite(got[i]) ? got[i] - want[i] : INFINITY;
    diff += d * d;
  }
  diff = std::sqrt(diff);
  const double typical = wholeCount ? wholeNorm * std::sqrt(static_cast<double>(want.size()) / wholeCount) : 0;
  const double denom = std::max(norm2(want), typical);
  const double err = denom > 0 ? diff / denom : diff;
  if (!(err <= tol)) return format("%s relative error %.3g > %.3g; ", what, err, tol);
  return "";
}

std::string runCase(const FtCase& fc, const Prepared& p, attncclAlgo_t algo, int nranks, Mode mode,
                    const char* transport) {
  return attnccl::test::runRanks(nranks, mode, [&](int rank, int n, const attncclUniqueId& id) -> std::string {
    attncclComm_t comm = nullptr;
    std::string e = attnccl::test::initComm(&comm, rank, n, id, transport);
    if (!e.empty()) return e;
    const attncclAttnDesc_t& d = p.desc;
    const CaseSpec& cs = fc.spec;
    const int Hq = cs.hq, Hkv = cs.hkv, D = cs.dim;
    const int64_t B = fc.batch, S = cs.seqLen;
    const attncclDataType_t dt = cs.dtype;
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    std::vector<int64_t> pos(static_cast<size_t>(T));
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
    const double tol = tolerance(dt);
    const double lseTol = dt == attncclFloat32 ? kLseTolerance : 5e-2;

    // Layouts of this rank's views.
    const int64_t W = static_cast<int64_t>(Hq + 2 * Hkv) * D;  // packed QKV row
    View vq, vk, vv, vo, vdo, vdq, vdk, vdv;
    int64_t qkvN, outN, doutN, dqkvN;
    if (fc.packed) {
      vq = {0, T * W, W, D, Hq};
      vk = {static_cast<int64_t>(Hq) * D, T * W, W, D, Hkv};
      vv = {static_cast<int64_t>(Hq + Hkv) * D, T * W, W, D, Hkv};
      qkvN = B * T * W;
      const int64_t ost = static_cast<int64_t>(Hq) * D + 2 * D;  // two padded heads' worth per row
      vo = {D, (T + 1) * ost, ost, D, Hq};                        // one padded row per sequence
      outN = B * (T + 1) * ost;
      vdo = {0, static_cast<int64_t>(Hq) * T * D, D, T * D, Hq};  // head-major
      doutN = B * Hq * T * D;
      vdq = {0, (T + 1) * W, W, D, Hq};
      vdk = {static_cast<int64_t>(Hq) * D, (T + 1) * W, W, D, Hkv};
      vdv = {static_cast<int64_t>(Hq + Hkv) * D, (T + 1) * W, W, D, Hkv};
      dqkvN = B * (T + 1) * W;
    } else {
      const int64_t qr = static_cast<int64_t>(Hq) * D, kr = static_cast<int64_t>(Hkv) * D;
      vq = {0, T * qr, qr, D, Hq};
      vk = {B * T * qr, T * kr, kr, D, Hkv};
      vv = {B * T * (qr + kr), T * kr, kr, D, Hkv};
      qkvN = B * T * (qr + 2 * kr);
      vo = {0, T * qr, qr, D, Hq};
      outN = B * T * qr;
      vdo = vo;
      doutN = outN;
      vdq = vq;
      vdk = vk;
      vdv = vv;
      dqkvN = qkvN;
    }
    auto strides = [&](const View& v) -> attncclStrides_t {
      if (!fc.packed) return {0, 0, 0};  // contiguous: all zero
      return {v.sb, v.st, v.sh};
    };
    auto fill = [&](Buffer& buf, const View& v, const Tensor& (AttnCase::*get)() const) {
      for (int64_t b = 0; b < B; ++b) {
        const Tensor& src = ((*p.seqs[b]).*get)();
        for (int64_t t = 0; t < T; ++t)
          for (int h = 0; h < v.H; ++h)
            for (int e = 0; e < D; ++e) buf.t.set(v.index(b, t, h, e), src.get((pos[t] * v.H + h) * D + e));
      }
    };
    auto mark = [&](std::vector<char>& cov, const View& v) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          for (int h = 0; h < v.H; ++h)
            for (int e = 0; e < D; ++e) cov[v.index(b, t, h, e)] = 1;
    };
    auto poisonView = [&](Buffer& buf, const View& v) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          for (int h = 0; h < v.H; ++h)
            for (int e = 0; e < D; ++e) buf.t.set(v.index(b, t, h, e), NAN);
    };
    // Compares view v of buf with reference member `field` ([S][H][D] per sequence).
    auto check = [&](const char* what, const Buffer& buf, const View& v, std::vector<double> SinkRef::*field) {
      std::vector<double> got, want, whole;
      for (int64_t b = 0; b < B; ++b) {
        const std::vector<double>& r = p.ref[b].*field;
        whole.insert(whole.end(), r.begin(), r.end());
        for (int64_t t = 0; t < T; ++t)
          for (int h = 0; h < v.H; ++h)
            for (int e = 0; e < D; ++e) {
              got.push_back(buf.t.get(v.index(b, t, h, e)));
              want.push_back(r[(pos[t] * v.H + h) * D + e]);
            }
      }
      return compareRows(what, got, want, norm2(whole), static_cast<int64_t>(whole.size()), tol);
    };

    Buffer qkv(dt, qkvN), out(dt, outN), dout(dt, doutN), dqkv(dt, dqkvN);
    fill(qkv, vq, &AttnCase::q);
    fill(qkv, vk, &AttnCase::k);
    fill(qkv, vv, &AttnCase::v);
    fill(dout, vdo, &AttnCase::dout);
    poisonView(out, vo);
    // LSE [B][Hq][T]: padded head rows (T + 3) and a gap of 5 between sequences.
    const int64_t lh = fc.packed ? T + 3 : T, lb = fc.packed ? Hq * lh + 5 : Hq * T;
    std::vector<float> lse(static_cast<size_t>(std::max<int64_t>(B * lb, 1)), static_cast<float>(kSentinel));
    for (int64_t b = 0; b < B; ++b)
      for (int h = 0; h < Hq; ++h)
        for (int64_t t = 0; t < T; ++t) lse[b * lb + h * lh + t] = NAN;

    attncclAttnTensors_t ts = ATTNCCL_ATTN_TENSORS_INITIALIZER;
    ts.q = T ? qkv.at(vq.offset) : nullptr;
    ts.k = T ? qkv.at(vk.offset) : nullptr;
    ts.v = T ? qkv.at(vv.offset) : nullptr;
    ts.out = T ? out.at(vo.offset) : nullptr;
    ts.lse = T ? lse.data() : nullptr;
    ts.qStrides = strides(vq);
    ts.kStrides = strides(vk);
    ts.vStrides = strides(vv);
    ts.outStrides = strides(vo);
    if (fc.packed) ts.lseStrides = {lb, 1, lh};
    ts.sinks = fc.sinks ? p.sinks.data() : nullptr;
    RK_OK(attncclAttnForwardEx(&ts, &d, algo, comm, nullptr));
    std::string bad = check("O", out, vo, &SinkRef::out);
    {
      std::vector<double> got, want;
      for (int64_t b = 0; b < B; ++b)
        for (int h = 0; h < Hq; ++h)
          for (int64_t t = 0; t < T; ++t) {
            got.push_back(lse[b * lb + h * lh + t]);
            want.push_back(p.ref[b].lse[h * S + pos[t]]);
          }
      const double err = maxAbsError(got, want);
      if (!(err <= lseTol)) bad += format("LSE max abs error %.3g > %.3g; ", err, lseTol);
      for (int64_t i = 0; i < static_cast<int64_t>(lse.size()) && T > 0; ++i) {
        const int64_t b = i / lb, r = i % lb, h = r / lh, t = r % lh;
        const bool inView = b < B && h < Hq && t < T && r < Hq * lh;
        if (!inView && lse[i] != static_cast<float>(kSentinel)) {
          bad += format("LSE padding element %lld overwritten; ", static_cast<long long>(i));
          break;
        }
      }
    }
    std::vector<char> covO(static_cast<size_t>(out.t.numel()), 0);
    mark(covO, vo);
    bad += checkPadding("out", out.t, covO);

    // Backward: dq, dk, dv slices of one padded buffer; dsinks when trained.
    for (const View* v : {&vdq, &vdk, &vdv}) poisonView(dqkv, *v);
    std::vector<float> dsinks(static_cast<size_t>(Hq), NAN);
    ts.dout = T ? dout.at(vdo.offset) : nullptr;
    ts.dq = T ? dqkv.at(vdq.offset) : nullptr;
    ts.dk = T ? dqkv.at(vdk.offset) : nullptr;
    ts.dv = T ? dqkv.at(vdv.offset) : nullptr;
    ts.doutStrides = strides(vdo);
    ts.dqStrides = strides(vdq);
    ts.dkStrides = strides(vdk);
    ts.dvStrides = strides(vdv);
    ts.dsinks = fc.trainSinks ? dsinks.data() : nullptr;
    RK_OK(attncclAttnBackwardEx(&ts, &d, algo, comm, nullptr));
    bad += check("dQ", dqkv, vdq, &SinkRef::dq);
    bad += check("dK", dqkv, vdk, &SinkRef::dk);
    bad += check("dV", dqkv, vdv, &SinkRef::dv);
    std::vector<char> covD(static_cast<size_t>(dqkv.t.numel()), 0);
    for (const View* v : {&vdq, &vdk, &vdv}) mark(covD, *v);
    bad += checkPadding("dqkv", dqkv.t, covD);
    if (fc.trainSinks) {
      // Each head's error against the sum of its terms' magnitudes (they cancel; see SinkRef).
      for (int h = 0; h < Hq; ++h) {
        const double err = std::fabs(dsinks[h] - p.dsinksTotal[h]);
        if (!(err <= tol * std::max(p.dsinksAbs[h], 1e-30)))
          bad += format("dsinks[%d] = %.7g, reference %.7g (terms' magnitude %.4g); ", h, dsinks[h], p.dsinksTotal[h],
                        p.dsinksAbs[h]);
      }
      // The same bits on every rank.
      std::vector<float> all(static_cast<size_t>(Hq) * n);
      RK_OK(attncclAllGather(dsinks.data(), all.data(), Hq, attncclFloat32, comm, nullptr));
      for (int r = 0; r < n; ++r)
        if (memcmp(all.data() + r * Hq, dsinks.data(), Hq * sizeof(float)) != 0) {
          bad += format("dsinks of rank %d differ from rank %d's; ", r, rank);
          break;
        }
    }
    RK_OK(attncclCommDestroy(comm));
    return bad.empty() ? "" : format("rank %d %s: %s", rank, attncclAlgoName(algo), bad.c_str());
  });
}

const attncclAlgo_t kAlgos[] = {attncclAlgoRing, attncclAlgoPassQ, attncclAlgoAllGather, attncclAlgoUlysses,
                                attncclAlgoHybrid, attncclAlgoAuto};

// Case i of the sweep: masks, dtypes and layouts rotate (support/dist_case.h), and so do the batch,
// the sinks, GQA and odd lengths.
FtCase sweepCase(int i, int nranks) {
  FtCase c;
  const int hq = (i % 2) ? 4 : 2, hkv = (i % 4 == 1) ? 2 : ((i % 2) ? 1 : 2);
  const int64_t S = 7 * nranks + (i % 5) + 3;  // uneven pieces
  c.spec = rotatingSpec(S, hq, hkv, (i % 3 == 0) ? 16 : 8, i);
  c.batch = 1 + (i % 3);
  c.sinks = (i % 4) != 3;
  c.trainSinks = c.sinks && (i % 2 == 0);
  c.packed = (i % 6) != 5;
  return c;
}

// casesPerAlgo consecutive cases of the rotation per algorithm (45 cover every mask x dtype x
// layout); different algorithms start at different points of it.
void sweep(int nranks, Mode mode, int casesPerAlgo, const char* transport = nullptr) {
  const uint64_t seed = testSeed();
  int i = 0;
  for (attncclAlgo_t algo : kAlgos) {
    for (int j = 0; j < casesPerAlgo; ++j, ++i) {
      FtCase c = sweepCase(i, nranks);
      auto p = prepare(c, subSeed(seed, i));
      std::string err = runCase(c, *p, algo, nranks, mode, transport);
      EXPECT_EQ(err, "") << p->name << " " << attncclAlgoName(algo) << " P=" << nranks << " "
                         << attnccl::test::modeName(mode) << " " << seedText(seed);
    }
  }
}

}  // namespace

TEST(FrameworkTensors, OneRank) { sweep(1, Mode::kThreads, 6); }
TEST(FrameworkTensors, TwoRanksThreads) { sweep(2, Mode::kThreads, 15); }
TEST(FrameworkTensors, TwoRanksProcessesUcx) { sweep(2, Mode::kProcesses, 3, "ucx"); }
TEST(FrameworkTensors, ThreeRanksThreads) { sweep(3, Mode::kThreads, 8); }
TEST(FrameworkTensors, FourRanksProcesses) { sweep(4, Mode::kProcesses, 5); }
TEST(FrameworkTensors, FiveRanksThreads) { sweep(5, Mode::kThreads, 5); }
TEST(FrameworkTensors, EightRanksMixed) { sweep(8, Mode::kMixed, 3); }

// With neither sinks nor strides the Ex calls give what the 0.1 calls give, bit for bit.
TEST(FrameworkTensors, ExMatchesTheOldCallsBitForBit) {
  const uint64_t seed = testSeed();
  CaseSpec spec = rotatingSpec(29, 4, 2, 16, 1);
  AttnCase c(spec, seed);
  std::string err = attnccl::test::runRanks(3, Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
    attncclComm_t comm = nullptr;
    std::string e = attnccl::test::initComm(&comm, rank, n, id);
    if (!e.empty()) return e;
    const attncclAttnDesc_t& d = c.desc();
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    std::vector<int64_t> pos(static_cast<size_t>(T));
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
    const int64_t qr = spec.hq * spec.dim, kr = spec.hkv * spec.dim;
    Tensor q(spec.dtype, T * qr), k(spec.dtype, T * kr), v(spec.dtype, T * kr), dout(spec.dtype, T * qr);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < qr; ++j) q.set(t * qr + j, c.q().get(pos[t] * qr + j));
      for (int64_t j = 0; j < qr; ++j) dout.set(t * qr + j, c.dout().get(pos[t] * qr + j));
      for (int64_t j = 0; j < kr; ++j) k.set(t * kr + j, c.k().get(pos[t] * kr + j));
      for (int64_t j = 0; j < kr; ++j) v.set(t * kr + j, c.v().get(pos[t] * kr + j));
    }
    Tensor o1(spec.dtype, T * qr), o2(spec.dtype, T * qr), dq1(spec.dtype, T * qr), dq2(spec.dtype, T * qr);
    std::vector<float> l1(T * spec.hq), l2(T * spec.hq);
    RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), o1.data(), l1.data(), &d, attncclAlgoRing, comm, nullptr));
    attncclAttnTensors_t ts = ATTNCCL_ATTN_TENSORS_INITIALIZER;
    ts.q = q.data();
    ts.k = k.data();
    ts.v = v.data();
    ts.out = o2.data();
    ts.lse = l2.data();
    RK_OK(attncclAttnForwardEx(&ts, &d, attncclAlgoRing, comm, nullptr));
    RK_CHECK(T == 0 || memcmp(o1.data(), o2.data(), T * qr * (spec.dtype == attncclFloat32 ? 4 : 2)) == 0,
             "O differs");
    RK_CHECK(memcmp(l1.data(), l2.data(), l1.size() * 4) == 0, "LSE differs");
    Tensor dk(spec.dtype, T * kr), dv(spec.dtype, T * kr);
    RK_OK(attncclAttnBackward(q.data(), k.data(), v.data(), o1.data(), l1.data(), dout.data(), dq1.data(), dk.data(),
                              dv.data(), &d, attncclAlgoRing, comm, nullptr));
    ts.dout = dout.data();
    ts.dq = dq2.data();
    ts.dk = dk.data();
    ts.dv = dv.data();
    RK_OK(attncclAttnBackwardEx(&ts, &d, attncclAlgoRing, comm, nullptr));
    RK_CHECK(T == 0 || memcmp(dq1.data(), dq2.data(), T * qr * (spec.dtype == attncclFloat32 ? 4 : 2)) == 0,
             "dQ differs");
    RK_OK(attncclCommDestroy(comm));
    return std::string();
  });
  EXPECT_EQ(err, "") << seedText(seed);
}
