#include "support/dist_case.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

using attnccl::test::format;

namespace attnccl_test {
namespace {

// Rows of a [S][H][D] whole-sequence tensor at the given positions, as a tensor of the dtype.
Tensor gatherRows(const Tensor& whole, const std::vector<int64_t>& pos, int64_t rowElems) {
  Tensor t(whole.dtype(), static_cast<int64_t>(pos.size()) * rowElems);
  for (size_t i = 0; i < pos.size(); ++i)
    for (int64_t e = 0; e < rowElems; ++e) t.set(static_cast<int64_t>(i) * rowElems + e, whole.get(pos[i] * rowElems + e));
  return t;
}

std::vector<double> rowsOf(const std::vector<double>& whole, const std::vector<int64_t>& pos, int64_t rowElems) {
  std::vector<double> out;
  out.reserve(pos.size() * rowElems);
  for (int64_t p : pos)
    for (int64_t e = 0; e < rowElems; ++e) out.push_back(whole[p * rowElems + e]);
  return out;
}

// LSE [H][S] restricted to positions -> [H][T].
std::vector<double> lseOf(const std::vector<double>& whole, const std::vector<int64_t>& pos, int H, int64_t S) {
  std::vector<double> out;
  for (int h = 0; h < H; ++h)
    for (int64_t p : pos) out.push_back(whole[h * S + p]);
  return out;
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Relative-norm error of a rank's slice. A slice whose true values are tiny (e.g. the dQ of rows
// that see one key each) would make any rounding look huge, so the denominator is at least what
// a slice of this size holds on average: ||whole|| * sqrt(slice / whole).
std::string compare(const char* what, const std::vector<double>& got, const std::vector<double>& want, double tol,
                    const std::vector<double>& whole) {
  double diff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double d = got[i] - want[i];
    if (std::isnan(got[i]) || std::isinf(got[i])) d = INFINITY;
    diff += d * d;
  }
  diff = std::sqrt(diff);
  double typical = whole.empty() ? 0 : norm(whole) * std::sqrt(static_cast<double>(want.size()) / whole.size());
  double denom = std::max(norm(want), typical);
  double err = denom > 0 ? diff / denom : diff;
  if (!(err <= tol)) return format("%s relative error %.3g > %.3g; ", what, err, tol);
  return "";
}

std::string compareLse(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                       attncclDataType_t dt) {
  // fp32 inputs: absolute 1e-4; 16-bit inputs round Q and K, so the logits carry their error.
  double tol = dt == attncclFloat32 ? kLseTolerance : 5e-2;
  double err = maxAbsError(got, want);
  if (!(err <= tol)) return format("%s max abs error %.3g > %.3g; ", what, err, tol);
  return "";
}

std::mutex gSingleMutex;
std::map<std::string, SingleRankResult> gSingle;  // by case name (shape, mask, seed)

}  // namespace

const SingleRankResult& singleRank(AttnCase& c) {
  std::lock_guard<std::mutex> lock(gSingleMutex);
  auto it = gSingle.find(c.name());
  if (it != gSingle.end()) return it->second;
  SingleRankResult r;
  attnccl::test::runRanks(1, attnccl::test::Mode::kThreads, [&](int rank, int n, const attncclUniqueId& id) {
    attncclComm_t comm = nullptr;
    RK_SUB(attnccl::test::initComm(&comm, rank, n, id));
    const auto& d = c.desc();
    const int64_t S = d.seqLen, qe = S * d.numHeadsQ * d.headDim, ke = S * d.numHeadsKV * d.headDim;
    Tensor out(d.dtype, qe), dq(d.dtype, qe), dk(d.dtype, ke), dv(d.dtype, ke);
    std::vector<float> lse(static_cast<size_t>(S) * d.numHeadsQ);
    RK_OK(attncclAttnForward(c.q().data(), c.k().data(), c.v().data(), out.data(), lse.data(), &d, attncclAlgoAuto,
                             comm, nullptr));
    RK_OK(attncclAttnBackward(c.q().data(), c.k().data(), c.v().data(), out.data(), lse.data(), c.dout().data(),
                              dq.data(), dk.data(), dv.data(), &d, attncclAlgoAuto, comm, nullptr));
    r.out = out.toDouble();
    r.lse = toDouble(lse);
    r.dq = dq.toDouble();
    r.dk = dk.toDouble();
    r.dv = dv.toDouble();
    attncclCommDestroy(comm);
    return std::string();
  });
  return gSingle[c.name()] = r;
}

std::string checkRank(AttnCase& c, attncclComm_t comm, attncclAlgo_t algo, bool backward,
                      const SingleRankResult* single) {
  const attncclAttnDesc_t& d = c.desc();
  const RefForward& ref = c.reference();
  const RefGrads* grads = backward ? &c.referenceGrads() : nullptr;
  const int Hq = d.numHeadsQ, Hkv = d.numHeadsKV, D = d.headDim;
  const int64_t S = d.seqLen, qRow = static_cast<int64_t>(Hq) * D, kRow = static_cast<int64_t>(Hkv) * D;
  const double tol = tolerance(d.dtype);
  int n = 0, rank = 0;
  RK_OK(attncclCommCount(comm, &n));
  RK_OK(attncclCommUserRank(comm, &rank));
  int64_t T = 0;
  RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
  std::vector<int64_t> pos(static_cast<size_t>(T));
  RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
  Tensor q = gatherRows(c.q(), pos, qRow), k = gatherRows(c.k(), pos, kRow), v = gatherRows(c.v(), pos, kRow);
  Tensor dout = gatherRows(c.dout(), pos, qRow);
  Tensor out(d.dtype, T * qRow), dq(d.dtype, T * qRow), dk(d.dtype, T * kRow), dv(d.dtype, T * kRow);
  std::vector<float> lse(static_cast<size_t>(T) * Hq);
  poison(out);
  poison(lse);
  RK_OK(attncclAttnForward(q.data(), k.data(), v.data(), out.data(), lse.data(), &d, algo, comm, nullptr));
  std::string bad;
  bad += compare("O vs fp64", out.toDouble(), rowsOf(ref.out, pos, qRow), tol, ref.out);
  bad += compareLse("LSE vs fp64", toDouble(lse), lseOf(ref.lse, pos, Hq, S), d.dtype);
  if (single) {
    bad += compare("O vs one rank", out.toDouble(), rowsOf(single->out, pos, qRow), tol, single->out);
    bad += compareLse("LSE vs one rank", toDouble(lse), lseOf(single->lse, pos, Hq, S), d.dtype);
  }
  if (backward) {
    poison(dq);
    poison(dk);
    poison(dv);
    RK_OK(attncclAttnBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                              dv.data(), &d, algo, comm, nullptr));
    bad += compare("dQ vs fp64", dq.toDouble(), rowsOf(grads->dq, pos, qRow), tol, grads->dq);
    bad += compare("dK vs fp64", dk.toDouble(), rowsOf(grads->dk, pos, kRow), tol, grads->dk);
    bad += compare("dV vs fp64", dv.toDouble(), rowsOf(grads->dv, pos, kRow), tol, grads->dv);
    if (single) {
      bad += compare("dQ vs one rank", dq.toDouble(), rowsOf(single->dq, pos, qRow), tol, single->dq);
      bad += compare("dK vs one rank", dk.toDouble(), rowsOf(single->dk, pos, kRow), tol, single->dk);
      bad += compare("dV vs one rank", dv.toDouble(), rowsOf(single->dv, pos, kRow), tol, single->dv);
    }
  }
  return bad;
}

std::string runDistributed(AttnCase& c, const DistOptions& o) {
  // The fp64 results and the one-rank result are computed once, before the ranks start.
  c.reference();
  if (o.backward) c.referenceGrads();
  const SingleRankResult* single = o.compareSingleRank ? &singleRank(c) : nullptr;
  std::string err = attnccl::test::runRanks(o.nranks, o.mode, [&](int rank, int n, const attncclUniqueId& id) {
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.transport = o.transport;
    cfg.cpuThreads = o.cpuThreads;
    cfg.timeoutMs = 60000;
    cfg.hybridGroupSize = o.hybridGroupSize;
    attncclComm_t comm = nullptr;
    RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
    std::string bad = checkRank(c, comm, o.algo, o.backward, single);
    RK_OK(attncclCommDestroy(comm));
    return bad;
  });
  if (err.empty()) return "";
  return format("%s with %d ranks (%s, %s): ", attncclAlgoName(o.algo), o.nranks, attnccl::test::modeName(o.mode),
                o.transport ? o.transport : "auto") +
         c.name() + "\n" + err;
}

const RotationMask kRotationMasks[5] = {{"causal", true, -1, -1, false},
                                        {"full", false, -1, -1, false},
                                        {"window", true, 9, -1, false},
                                        {"docs", true, -1, -1, true},
                                        {"docs-window", false, 5, 4, true}};
const attncclLayout_t kRotationLayouts[3] = {attncclLayoutContiguous, attncclLayoutZigzag, attncclLayoutStriped};
const attncclDataType_t kRotationDtypes[3] = {attncclFloat32, attncclBfloat16, attncclFloat16};

CaseSpec rotatingSpec(int64_t S, int hq, int hkv, int headDim, int i) {
  const RotationMask& m = kRotationMasks[i % 5];
  CaseSpec spec;
  spec.seqLen = S;
  spec.hq = hq;
  spec.hkv = hkv;
  spec.dim = headDim;
  spec.dtype = kRotationDtypes[i % 3];
  spec.causal = m.causal;
  spec.windowLeft = m.wl;
  spec.windowRight = m.wr;
  spec.layout = kRotationLayouts[(i / 5) % 3];
  if (m.docs && S >= 4) spec.docLens = {S / 3, S / 2 - S / 3, S - S / 2};
  return spec;
}

}  // namespace attnccl_test
