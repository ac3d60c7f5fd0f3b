// The single-rank attention cases of test_local_attn.cc, shared with test_tile_paths.cc (which
// runs them on every kernel path): a covering set of lengths, head counts, head dims 1..256,
// dtypes and mask kinds, the calls with poisoned outputs, and the checks against the fp64
// reference.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "attn/desc.h"
#include "attn/local.h"
#include "support/attn_case.h"

namespace attnccl_test {

using attnccl::ThreadPool;

struct LocalResult {
  Tensor out;
  std::vector<float> lse;
};

inline LocalResult runForward(AttnCase& c, ThreadPool& pool) {
  attnccl::attn::AttnShape s;
  EXPECT_EQ(attnccl::attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  LocalResult r;
  r.out = Tensor(s.dtype, c.q().numel());
  poison(r.out);
  r.lse.resize(static_cast<size_t>(s.numHeadsQ * s.seqLen));
  poison(r.lse);
  attnccl::attn::FwdTensors t{c.q().data(), c.k().data(), c.v().data(), r.out.data(), r.lse.data()};
  EXPECT_EQ(attnccl::attn::localForward(s, t, pool), attncclSuccess);
  return r;
}

inline void checkForward(AttnCase& c, const LocalResult& r) {
  const RefForward& ref = c.reference();
  EXPECT_LE(relNormError(r.out.toDouble(), ref.out), tolerance(c.spec().dtype)) << c.name();
  EXPECT_LE(maxAbsError(toDouble(r.lse), ref.lse), kLseTolerance) << c.name();
}

inline void checkBackward(AttnCase& c, const LocalResult& fwd, ThreadPool& pool) {
  attnccl::attn::AttnShape s;
  ASSERT_EQ(attnccl::attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  Tensor dq(s.dtype, c.q().numel()), dk(s.dtype, c.k().numel()), dv(s.dtype, c.v().numel());
  poison(dq);
  poison(dk);
  poison(dv);
  attnccl::attn::BwdTensors t{c.q().data(), c.k().data(), c.v().data(), fwd.out.data(), fwd.lse.data(),
                     c.dout().data(), dq.data(), dk.data(), dv.data()};
  ASSERT_EQ(attnccl::attn::localBackward(s, t, pool), attncclSuccess);
  const RefGrads& g = c.referenceGrads();
  // Backward consumes O rounded to the storage dtype, so allow twice the dtype's tolerance
  // for the 16-bit formats (fp32 keeps its own).
  double tol = tolerance(s.dtype) * (s.dtype == attncclFloat32 ? 1 : 2);
  EXPECT_LE(relNormError(dq.toDouble(), g.dq), tol) << "dq " << c.name();
  EXPECT_LE(relNormError(dk.toDouble(), g.dk), tol) << "dk " << c.name();
  EXPECT_LE(relNormError(dv.toDouble(), g.dv), tol) << "dv " << c.name();
}

inline CaseSpec spec(int64_t S, int hq, int hkv, int d, attncclDataType_t t) {
  CaseSpec c;
  c.seqLen = S;
  c.hq = hq;
  c.hkv = hkv;
  c.dim = d;
  c.dtype = t;
  return c;
}

inline CaseSpec masked(CaseSpec c, bool causal, int64_t wl, int64_t wr, std::vector<int64_t> docs = {}) {
  c.causal = causal;
  c.windowLeft = wl;
  c.windowRight = wr;
  c.docLens = std::move(docs);
  return c;
}

// A covering set: every length, head pair, head dim, dtype and mask kind appears, not the cross
// product. The long cases keep the head dims the tiles are tuned for.
inline std::vector<CaseSpec> forwardCases() {
  return {
      masked(spec(1, 4, 4, 8, attncclFloat32), true, -1, -1),
      masked(spec(1, 3, 1, 256, attncclBfloat16), false, 0, 0),
      masked(spec(33, 2, 1, 1, attncclFloat32), true, -1, -1, {13, 20}),
      masked(spec(7, 3, 1, 40, attncclBfloat16), false, -1, -1),
      masked(spec(7, 8, 2, 8, attncclFloat16), true, 2, -1),
      masked(spec(61, 4, 2, 64, attncclFloat16), true, -1, -1),
      masked(spec(61, 4, 4, 256, attncclBfloat16), true, 7, -1, {20, 1, 40}),
      masked(spec(61, 8, 2, 40, attncclFloat32), false, -1, -1, {30, 31}),
      masked(spec(128, 8, 2, 128, attncclFloat32), false, 16, 0),
      masked(spec(128, 3, 1, 8, attncclFloat32), false, 5, 3),
      masked(spec(100, 8, 2, 40, attncclFloat16), false, -1, 4, {50, 25, 25}),
      masked(spec(128, 4, 4, 64, attncclFloat32), true, -1, 9),
      masked(spec(1000, 4, 2, 64, attncclFloat32), true, -1, -1),
      masked(spec(1000, 3, 1, 128, attncclBfloat16), false, -1, -1),
      masked(spec(700, 4, 2, 64, attncclFloat32), true, 200, -1, {300, 1, 399}),
      masked(spec(1000, 8, 2, 8, attncclFloat16), false, 100, 100, {600, 400}),
  };
}

inline std::vector<CaseSpec> backwardCases() {
  return {
      masked(spec(1, 4, 4, 8, attncclFloat32), true, -1, -1),
      masked(spec(7, 3, 1, 40, attncclBfloat16), false, -1, -1),
      masked(spec(7, 8, 2, 256, attncclFloat32), true, 2, 1),
      masked(spec(40, 2, 2, 1, attncclFloat32), false, -1, -1, {25, 15}),
      masked(spec(61, 4, 2, 64, attncclFloat16), true, -1, -1),
      masked(spec(61, 4, 4, 8, attncclFloat32), false, -1, -1, {20, 1, 40}),
      masked(spec(128, 8, 2, 128, attncclFloat32), true, 30, -1, {64, 64}),
      masked(spec(128, 3, 1, 40, attncclBfloat16), false, 5, 3),
      masked(spec(300, 4, 2, 64, attncclFloat32), false, -1, 20, {100, 200}),
      masked(spec(1000, 4, 2, 64, attncclFloat32), true, -1, -1),
  };
}

}  // namespace attnccl_test
