#include "support/reference.h"

#include <cmath>
#include <limits>

namespace attnccl_test {

namespace {

int64_t docOf(const attncclAttnDesc_t& d, int64_t pos) {
  if (d.numSeqs == 0 || d.cuSeqlens == nullptr) return 0;
  int64_t doc = 0;
  while (doc + 1 < d.numSeqs && d.cuSeqlens[doc + 1] <= pos) ++doc;
  return doc;
}

struct Dims {
  int64_t S, Hq, Hkv, D, group;
  Dims(const attncclAttnDesc_t& d)
      : S(d.seqLen), Hq(d.numHeadsQ), Hkv(d.numHeadsKV), D(d.headDim), group(d.numHeadsQ / d.numHeadsKV) {}
  size_t qi(int64_t t, int64_t h) const { return static_cast<size_t>((t * Hq + h) * D); }
  size_t ki(int64_t t, int64_t h) const { return static_cast<size_t>((t * Hkv + h) * D); }
};

double dot(const double* a, const double* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Scores of query i (head h) against every key, -inf where invisible.
void scores(const attncclAttnDesc_t& d, const Dims& m, const std::vector<double>& q, const std::vector<double>& k,
            int64_t i, int64_t h, std::vector<double>& s) {
  const double scale = refScale(d);
  s.assign(static_cast<size_t>(m.S), -std::numeric_limits<double>::infinity());
  for (int64_t j = 0; j < m.S; ++j)
    if (refVisible(d, i, j)) s[j] = scale * dot(&q[m.qi(i, h)], &k[m.ki(j, h / m.group)], m.D);
}

}  // namespace

bool refVisible(const attncclAttnDesc_t& d, int64_t i, int64_t j) {
  if (docOf(d, i) != docOf(d, j)) return false;
  if (d.causal && j > i) return false;
  if (d.windowLeft >= 0 && i - j > d.windowLeft) return false;
  if (d.windowRight >= 0 && j - i > d.windowRight) return false;
  return true;
}

double refScale(const attncclAttnDesc_t& d) {
  return d.softmaxScale != 0.f ? static_cast<double>(d.softmaxScale) : 1.0 / std::sqrt(static_cast<double>(d.headDim));
}

RefForward refForward(const attncclAttnDesc_t& d, const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v) {
  Dims m(d);
  RefForward r;
  r.out.assign(static_cast<size_t>(m.S * m.Hq * m.D), 0.0);
  r.lse.assign(static_cast<size_t>(m.Hq * m.S), -std::numeric_limits<double>::infinity());
  std::vector<double> s;
  for (int64_t h = 0; h < m.Hq; ++h) {
    for (int64_t i = 0; i < m.S; ++i) {
      scores(d, m, q, k, i, h, s);
      double mx = -std::numeric_limits<double>::infinity();
      for (double x : s) mx = std::max(mx, x);
      if (mx == -std::numeric_limits<double>::infinity()) continue;  // no visible key
      double sum = 0;
      for (double& x : s) {
        x = std::exp(x - mx);
        sum += x;
      }
      double* o = &r.out[m.qi(i, h)];
      for (int64_t j = 0; j < m.S; ++j) {
        if (s[j] == 0) continue;
        const double* vj = &v[m.ki(j, h / m.group)];
        for (int64_t c = 0; c < m.D; ++c) o[c] += s[j] / sum * vj[c];
      }
      r.lse[h * m.S + i] = mx + std::log(sum);
    }
  }
  return r;
}

RefGrads refBackward(const attncclAttnDesc_t& d, const std::vector<double>& q, const std::vector<double>& k,
                     const std::vector<double>& v, const std::vector<double>& dout) {
  Dims m(d);
  const double scale = refScale(d);
  RefGrads g;
  g.dq.assign(q.size(), 0.0);
  g.dk.assign(k.size(), 0.0);
  g.dv.assign(v.size(), 0.0);
  std::vector<double> p, dp;
  for (int64_t h = 0; h < m.Hq; ++h) {
    const int64_t kh = h / m.group;
    for (int64_t i = 0; i < m.S; ++i) {
      // Softmax row of query i.
      scores(d, m, q, k, i, h, p);
      double mx = -std::numeric_limits<double>::infinity();
      for (double x : p) mx = std::max(mx, x);
      if (mx == -std::numeric_limits<double>::infinity()) continue;
      double sum = 0;
      for (double& x : p) {
        x = std::exp(x - mx);
        sum += x;
      }
      for (double& x : p) x /= sum;
      // out_i = sum_j p_j v_j; dL/dp_j = dout_i . v_j; dL/ds_j = p_j (dp_j - sum_l p_l dp_l).
      const double* doi = &dout[m.qi(i, h)];
      dp.assign(static_cast<size_t>(m.S), 0.0);
      double pdp = 0;
      for (int64_t j = 0; j < m.S; ++j) {
        if (p[j] == 0) continue;
        dp[j] = dot(doi, &v[m.ki(j, kh)], m.D);
        pdp += p[j] * dp[j];
      }
      for (int64_t j = 0; j < m.S; ++j) {
        if (p[j] == 0) continue;
        const double ds = p[j] * (dp[j] - pdp) * scale;
        for (int64_t c = 0; c < m.D; ++c) {
          g.dq[m.qi(i, h) + c] += ds * k[m.ki(j, kh) + c];
          g.dk[m.ki(j, kh) + c] += ds * q[m.qi(i, h) + c];
          g.dv[m.ki(j, kh) + c] += p[j] * doi[c];
        }
      }
    }
  }
  return g;
}

void refMergeStates(std::vector<double>& out, std::vector<double>& lse, const std::vector<double>& outB,
                    const std::vector<double>& lseB, int64_t tokens, int numHeads, int headDim) {
  const double ninf = -std::numeric_limits<double>::infinity();
  for (int h = 0; h < numHeads; ++h) {
    for (int64_t t = 0; t < tokens; ++t) {
      double la = lse[h * tokens + t], lb = lseB[h * tokens + t];
      double l = la == ninf && lb == ninf ? ninf : std::max(la, lb) + std::log(std::exp(la - std::max(la, lb)) + std::exp(lb - std::max(la, lb)));
      double wa = la == ninf ? 0 : std::exp(la - l), wb = lb == ninf ? 0 : std::exp(lb - l);
      for (int c = 0; c < headDim; ++c) {
        size_t i = static_cast<size_t>((t * numHeads + h) * headDim + c);
        out[i] = la == ninf && lb == ninf ? out[i] : wa * out[i] + wb * outB[i];
      }
      lse[h * tokens + t] = l;
    }
  }
}

}  // namespace attnccl_test
