#include "support/sink_reference.h"

#include <cmath>
#include <limits>

#include "support/reference.h"

namespace attnccl_test {

SinkRef refAttentionWithSinks(const attncclAttnDesc_t& d, const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v, const std::vector<double>& dout,
                              const std::vector<double>& sinks) {
  const int64_t S = d.seqLen, Hq = d.numHeadsQ, Hkv = d.numHeadsKV, D = d.headDim, G = Hq / Hkv;
  const double scale = refScale(d), inf = std::numeric_limits<double>::infinity();
  const bool bwd = !dout.empty(), haveSinks = !sinks.empty();
  SinkRef r;
  r.out.assign(static_cast<size_t>(S * Hq * D), 0.0);
  r.lse.assign(static_cast<size_t>(Hq * S), -inf);
  if (bwd) {
    r.dq.assign(r.out.size(), 0.0);
    r.dk.assign(static_cast<size_t>(S * Hkv * D), 0.0);
    r.dv.assign(r.dk.size(), 0.0);
  }
  r.dsinks.assign(static_cast<size_t>(Hq), 0.0);
  r.dsinksAbs.assign(static_cast<size_t>(Hq), 0.0);
  std::vector<double> s(static_cast<size_t>(S)), p(static_cast<size_t>(S));
  for (int64_t h = 0; h < Hq; ++h) {
    const int64_t kh = h / G;
    for (int64_t i = 0; i < S; ++i) {
      const double* qi = &q[static_cast<size_t>((i * Hq + h) * D)];
      double m = haveSinks ? sinks[h] : -inf;
      for (int64_t j = 0; j < S; ++j) {
        s[j] = -inf;
        if (!refVisible(d, i, j)) continue;
        double dot = 0;
        for (int64_t e = 0; e < D; ++e) dot += qi[e] * k[static_cast<size_t>((j * Hkv + kh) * D + e)];
        s[j] = scale * dot;
        m = std::max(m, s[j]);
      }
      if (m == -inf) continue;  // nothing visible, no sink: O = 0, LSE = -inf
      double z = haveSinks ? std::exp(sinks[h] - m) : 0.0;
      for (int64_t j = 0; j < S; ++j) z += s[j] == -inf ? 0.0 : std::exp(s[j] - m);
      const double lse = m + std::log(z);
      r.lse[static_cast<size_t>(h * S + i)] = lse;
      double* oi = &r.out[static_cast<size_t>((i * Hq + h) * D)];
      for (int64_t j = 0; j < S; ++j) {
        p[j] = s[j] == -inf ? 0.0 : std::exp(s[j] - lse);
        for (int64_t e = 0; e < D && p[j] != 0.0; ++e) oi[e] += p[j] * v[static_cast<size_t>((j * Hkv + kh) * D + e)];
      }
      if (!bwd) continue;
      const double* doi = &dout[static_cast<size_t>((i * Hq + h) * D)];
      double delta = 0;
      for (int64_t e = 0; e < D; ++e) delta += doi[e] * oi[e];
      if (haveSinks) {
        r.dsinks[h] -= std::exp(sinks[h] - lse) * delta;
        r.dsinksAbs[h] += std::fabs(std::exp(sinks[h] - lse) * delta);
      }
      for (int64_t j = 0; j < S; ++j) {
        if (p[j] == 0.0) continue;
        double dpj = 0;
        for (int64_t e = 0; e < D; ++e) dpj += doi[e] * v[static_cast<size_t>((j * Hkv + kh) * D + e)];
        const double ds = p[j] * (dpj - delta) * scale;
        for (int64_t e = 0; e < D; ++e) {
          r.dq[static_cast<size_t>((i * Hq + h) * D + e)] += ds * k[static_cast<size_t>((j * Hkv + kh) * D + e)];
          r.dk[static_cast<size_t>((j * Hkv + kh) * D + e)] += ds * qi[e];
          r.dv[static_cast<size_t>((j * Hkv + kh) * D + e)] += p[j] * doi[e];
        }
      }
    }
  }
  return r;
}

}  // namespace attnccl_test
