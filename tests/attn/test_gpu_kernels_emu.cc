// The GPU attention kernels (src/attn/gpu: tensor-core forward and backward, generic SIMT
// kernels) run under the CPU emulator of tests/support/gpu_emu.h, against the fp64 reference:
// one rank's whole sequence (final epilogue), and sharded zigzag/striped blocks merged into fp32
// accumulators as the distributed executors use them. Runs on machines without a GPU; the same
// kernels run on the GPU in tests/cuda.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "attn/desc.h"
#include "attn/gpu/bwd_mma.h"
#include "attn/gpu/fwd_mma.h"
#include "attn/gpu/kernel_select.h"
#include "attn/gpu/simt.h"
#include "attn/layout.h"
#include "support/attn_case.h"
#include "support/gpu_emu.h"

namespace attnccl_test {
namespace {

namespace attn = attnccl::attn;
namespace gpu = attnccl::attn::gpu;
constexpr float kInf = std::numeric_limits<float>::infinity();

std::string runForward(attncclDataType_t dt, const gpu::FwdParams& p, gpu::TileKernel* used) {
  const gpu::TileLaunch l = gpu::planForward(dt, p);
  *used = l.kernel;
  std::function<void(char*)> body;
  const bool bf = dt == attncclBfloat16;
  switch (l.kernel) {
    case gpu::TileKernel::kNone: return "";
    case gpu::TileKernel::kMma64:
      body = bf ? std::function<void(char*)>([&](char* s) { gpu::fwdMmaTile<gpu::FwdMma64, gpu::Bf16>(p, s); })
                : [&](char* s) { gpu::fwdMmaTile<gpu::FwdMma64, gpu::Fp16>(p, s); };
      break;
    case gpu::TileKernel::kMma128:
      body = bf ? std::function<void(char*)>([&](char* s) { gpu::fwdMmaTile<gpu::FwdMma128, gpu::Bf16>(p, s); })
                : [&](char* s) { gpu::fwdMmaTile<gpu::FwdMma128, gpu::Fp16>(p, s); };
      break;
    case gpu::TileKernel::kSimt:
      if (dt == attncclFloat32) {
        body = [&](char* s) { gpu::fwdSimtTile<gpu::F32>(p, s); };
      } else if (bf) {
        body = [&](char* s) { gpu::fwdSimtTile<gpu::Bf16>(p, s); };
      } else {
        body = [&](char* s) { gpu::fwdSimtTile<gpu::Fp16>(p, s); };
      }
      break;
  }
  return emu::launch(l.gridX, l.gridY, l.threads, l.smemBytes, body);
}

std::string runBackward(attncclDataType_t dt, const gpu::BwdParams& p, gpu::TileKernel* used) {
  const gpu::TileLaunch l = gpu::planBackward(dt, p);
  *used = l.kernel;
  const bool bf = dt == attncclBfloat16;
  std::function<void(char*)> body;
  switch (l.kernel) {
    case gpu::TileKernel::kNone: return "";
    case gpu::TileKernel::kMma64:
      body = bf ? std::function<void(char*)>([&](char* s) { gpu::bwdMmaTile<gpu::BwdMma64, gpu::Bf16>(p, s); })
                : [&](char* s) { gpu::bwdMmaTile<gpu::BwdMma64, gpu::Fp16>(p, s); };
      return emu::launch(l.gridX, l.gridY, l.threads, l.smemBytes, body);
    case gpu::TileKernel::kMma128:
      body = bf ? std::function<void(char*)>([&](char* s) { gpu::bwdMmaTile<gpu::BwdMma128, gpu::Bf16>(p, s); })
                : [&](char* s) { gpu::bwdMmaTile<gpu::BwdMma128, gpu::Fp16>(p, s); };
      return emu::launch(l.gridX, l.gridY, l.threads, l.smemBytes, body);
    case gpu::TileKernel::kSimt: break;
  }
  std::function<void(char*)> dq, dkv;
  if (dt == attncclFloat32) {
    dq = [&](char* s) { gpu::bwdSimtDq<gpu::F32>(p, s); };
    dkv = [&](char* s) { gpu::bwdSimtDkv<gpu::F32>(p, s); };
  } else if (bf) {
    dq = [&](char* s) { gpu::bwdSimtDq<gpu::Bf16>(p, s); };
    dkv = [&](char* s) { gpu::bwdSimtDkv<gpu::Bf16>(p, s); };
  } else {
    dq = [&](char* s) { gpu::bwdSimtDq<gpu::Fp16>(p, s); };
    dkv = [&](char* s) { gpu::bwdSimtDkv<gpu::Fp16>(p, s); };
  }
  std::string err = emu::launch(l.gridX2, l.gridY2, l.threads, l.smemBytes, dq);
  if (!err.empty()) return err;
  return emu::launch(l.gridX, l.gridY, l.threads, l.smemBytes, dkv);
}

// One rank's share of a case: positions, documents and input rows in the storage dtype.
struct Shard {
  std::vector<int64_t> pos, doc;
  Tensor q, k, v, dout;
  std::vector<double> refOut, refDq, refDk, refDv;
  std::vector<float> refLse, delta;  // [Hq][T]
  gpu::DevTokens tokens() const {
    gpu::DevTokens t;
    t.pos = pos.data();
    t.doc = doc.data();
    t.n = static_cast<int64_t>(pos.size());
    return t;
  }
};

std::vector<double> rowsOf(const std::vector<double>& whole, const std::vector<int64_t>& pos, int64_t width) {
  std::vector<double> out;
  for (int64_t p : pos)
    for (int64_t e = 0; e < width; ++e) out.push_back(whole[p * width + e]);
  return out;
}

Tensor tensorRows(const Tensor& whole, const std::vector<int64_t>& pos, int64_t width) {
  Tensor t(whole.dtype(), static_cast<int64_t>(pos.size()) * width);
  for (size_t i = 0; i < pos.size(); ++i)
    for (int64_t e = 0; e < width; ++e) t.set(static_cast<int64_t>(i) * width + e, whole.get(pos[i] * width + e));
  return t;
}

std::vector<Shard> shards(AttnCase& c, int P, bool backward) {
  attn::AttnShape s;
  EXPECT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  const int Hq = s.numHeadsQ, D = s.headDim;
  const int64_t qw = int64_t(Hq) * D, kw = int64_t(s.numHeadsKV) * D, S = s.seqLen;
  const RefForward& ref = c.reference();
  std::vector<Shard> out(P);
  for (int r = 0; r < P; ++r) {
    Shard& sh = out[r];
    sh.pos = attn::localPositions(s, P, r);
    sh.doc = attn::documentIds(s, sh.pos);
    sh.q = tensorRows(c.q(), sh.pos, qw);
    sh.k = tensorRows(c.k(), sh.pos, kw);
    sh.v = tensorRows(c.v(), sh.pos, kw);
    sh.dout = tensorRows(c.dout(), sh.pos, qw);
    sh.refOut = rowsOf(ref.out, sh.pos, qw);
    const int64_t T = static_cast<int64_t>(sh.pos.size());
    sh.refLse.resize(static_cast<size_t>(Hq * T));
    sh.delta.assign(static_cast<size_t>(Hq * T), 0.f);
    for (int h = 0; h < Hq; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        sh.refLse[h * T + i] = static_cast<float>(ref.lse[h * S + sh.pos[i]]);
        double d = 0;
        for (int e = 0; e < D; ++e) d += sh.dout.get(i * qw + h * D + e) * ref.out[sh.pos[i] * qw + h * D + e];
        sh.delta[h * T + i] = static_cast<float>(d);
      }
    }
    if (backward) {
      const RefGrads& g = c.referenceGrads();
      sh.refDq = rowsOf(g.dq, sh.pos, qw);
      sh.refDk = rowsOf(g.dk, sh.pos, kw);
      sh.refDv = rowsOf(g.dv, sh.pos, kw);
    }
  }
  return out;
}

void fillCommon(const attn::AttnShape& s, gpu::DevMask* m, gpu::DevHeads* h) {
  m->causal = s.causal;
  m->windowLeft = s.windowLeft;
  m->windowRight = s.windowRight;
  h->numQ = s.numHeadsQ;
  h->numKV = s.numHeadsKV;
  h->group = s.group();
}

double lseTolerance(attncclDataType_t dt) { return dt == attncclFloat32 ? kLseTolerance : 5e-2; }

// Final epilogue over one rank's whole sequence: identity positions (no arrays), documents
// as an array only when there are several.
void checkForwardWhole(const CaseSpec& spec, gpu::TileKernel expect) {
  AttnCase c(spec, testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  const int64_t S = s.seqLen, qw = int64_t(s.numHeadsQ) * s.headDim, kw = int64_t(s.numHeadsKV) * s.headDim;
  std::vector<int64_t> pos(S);
  for (int64_t i = 0; i < S; ++i) pos[i] = i;
  std::vector<int64_t> doc = attn::documentIds(s, pos);
  gpu::FwdParams p;
  p.q = c.q().data();
  p.k = c.k().data();
  p.v = c.v().data();
  p.ldq = qw;
  p.ldkv = kw;
  p.qt.n = p.kt.n = S;
  if (s.numDocs() > 1) p.qt.doc = p.kt.doc = doc.data();
  fillCommon(s, &p.mask, &p.heads);
  p.headDim = s.headDim;
  p.scale = s.scale;
  p.scaleLog2 = s.scale * gpu::kLog2e;
  Tensor out(s.dtype, S * qw);
  poison(out);
  std::vector<float> lse(static_cast<size_t>(S * s.numHeadsQ));
  poison(lse);
  p.mode = gpu::kFwdFinal;
  p.o = out.data();
  p.ldo = qw;
  p.lse = lse.data();
  p.ldlse = S;
  gpu::TileKernel used;
  ASSERT_EQ(runForward(s.dtype, p, &used), "");
  EXPECT_EQ(used, expect) << gpu::tileKernelName(used);
  const RefForward& ref = c.reference();
  EXPECT_LE(relNormError(out.toDouble(), ref.out), tolerance(s.dtype)) << c.name();
  EXPECT_LE(maxAbsError(toDouble(lse), ref.lse), lseTolerance(s.dtype)) << c.name();
}

TEST(GpuKernelsEmu, ForwardWholeSequence) {
  CaseSpec a;
  a.seqLen = 150, a.hq = 2, a.hkv = 1, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
  checkForwardWhole(a, gpu::TileKernel::kMma64);
  CaseSpec b;
  b.seqLen = 130, b.hq = 2, b.hkv = 2, b.dim = 40, b.dtype = attncclFloat16, b.windowLeft = 16, b.windowRight = 8;
  b.docLens = {50, 80};
  checkForwardWhole(b, gpu::TileKernel::kMma64);
  CaseSpec d;
  d.seqLen = 97, d.hq = 2, d.hkv = 1, d.dim = 128, d.dtype = attncclBfloat16;
  checkForwardWhole(d, gpu::TileKernel::kMma128);
  CaseSpec e;
  e.seqLen = 140, e.hq = 1, e.hkv = 1, e.dim = 96, e.dtype = attncclFloat16, e.causal = true, e.docLens = {30, 110};
  checkForwardWhole(e, gpu::TileKernel::kMma128);
  CaseSpec f;
  f.seqLen = 70, f.hq = 2, f.hkv = 1, f.dim = 20, f.dtype = attncclFloat32, f.causal = true;
  checkForwardWhole(f, gpu::TileKernel::kSimt);
  CaseSpec g;
  g.seqLen = 45, g.hq = 2, g.hkv = 2, g.dim = 160, g.dtype = attncclBfloat16, g.windowLeft = 5, g.docLens = {20, 25};
  checkForwardWhole(g, gpu::TileKernel::kSimt);
}

// Every (query shard, key shard) pair merged into fp32 accumulators, as a ring does.
void checkForwardShards(const CaseSpec& spec, int P) {
  AttnCase c(spec, testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  std::vector<Shard> sh = shards(c, P, false);
  const int64_t qw = int64_t(s.numHeadsQ) * s.headDim, kw = int64_t(s.numHeadsKV) * s.headDim;
  for (int r = 0; r < P; ++r) {
    const int64_t T = static_cast<int64_t>(sh[r].pos.size());
    std::vector<float> o(static_cast<size_t>(T * qw), std::nanf("")), lse(static_cast<size_t>(T * s.numHeadsQ), -kInf);
    for (int t = 0; t < P; ++t) {
      const int src = (r + t) % P;
      gpu::FwdParams p;
      p.q = sh[r].q.data();
      p.k = sh[src].k.data();
      p.v = sh[src].v.data();
      p.ldq = qw;
      p.ldkv = kw;
      p.qt = sh[r].tokens();
      p.kt = sh[src].tokens();
      fillCommon(s, &p.mask, &p.heads);
      p.headDim = s.headDim;
      p.scale = s.scale;
      p.scaleLog2 = s.scale * gpu::kLog2e;
      p.mode = gpu::kFwdMerge;
      p.o = o.data();
      p.ldo = qw;
      p.lse = lse.data();
      p.ldlse = T;
      gpu::TileKernel used;
      ASSERT_EQ(runForward(s.dtype, p, &used), "");
    }
    // Rows with nothing visible keep their (NaN) accumulator: the executors clear them first.
    std::vector<double> got = toDouble(o);
    for (int h = 0; h < s.numHeadsQ; ++h)
      for (int64_t i = 0; i < T; ++i)
        if (lse[h * T + i] == -kInf)
          for (int e = 0; e < s.headDim; ++e) got[i * qw + h * s.headDim + e] = 0;
    EXPECT_LE(relNormError(got, sh[r].refOut), tolerance(s.dtype)) << c.name() << " rank " << r;
    EXPECT_LE(maxAbsError(toDouble(lse), toDouble(sh[r].refLse)), lseTolerance(s.dtype)) << c.name() << " rank " << r;
  }
}

TEST(GpuKernelsEmu, ForwardShardsMerged) {
  CaseSpec a;
  a.seqLen = 200, a.hq = 4, a.hkv = 2, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
  a.layout = attncclLayoutZigzag;
  checkForwardShards(a, 3);
  CaseSpec b;
  b.seqLen = 90, b.hq = 2, b.hkv = 1, b.dim = 128, b.dtype = attncclFloat16, b.causal = true;
  b.layout = attncclLayoutStriped, b.docLens = {40, 50};
  checkForwardShards(b, 2);
  CaseSpec f;
  f.seqLen = 50, f.hq = 1, f.hkv = 1, f.dim = 36, f.dtype = attncclFloat32, f.windowLeft = 7, f.windowRight = 3;
  f.layout = attncclLayoutZigzag;
  checkForwardShards(f, 2);
}

// Backward over every (query shard, key shard) pair, accumulating dQ, dK, dV in fp32 (one shard
// is the whole sequence).
void checkBackward(const CaseSpec& spec, int P, gpu::TileKernel expect) {
  AttnCase c(spec, testSeed());
  attn::AttnShape s;
  ASSERT_EQ(attn::resolveDesc(&c.desc(), &s), attncclSuccess);
  std::vector<Shard> sh = shards(c, P, true);
  const int64_t qw = int64_t(s.numHeadsQ) * s.headDim, kw = int64_t(s.numHeadsKV) * s.headDim;
  std::vector<std::vector<float>> dq(P), dk(P), dv(P);
  for (int r = 0; r < P; ++r) {
    const int64_t T = static_cast<int64_t>(sh[r].pos.size());
    dq[r].assign(static_cast<size_t>(T * qw), 0.f);
    dk[r].assign(static_cast<size_t>(T * kw), 0.f);
    dv[r].assign(static_cast<size_t>(T * kw), 0.f);
  }
  for (int r = 0; r < P; ++r) {
    for (int src = 0; src < P; ++src) {
      gpu::BwdParams p;
      p.q = sh[r].q.data();
      p.dout = sh[r].dout.data();
      p.ldq = qw;
      p.qt = sh[r].tokens();
      p.k = sh[src].k.data();
      p.v = sh[src].v.data();
      p.ldkv = kw;
      p.kt = sh[src].tokens();
      p.lse = sh[r].refLse.data();
      p.delta = sh[r].delta.data();
      p.ldlse = p.qt.n;
      fillCommon(s, &p.mask, &p.heads);
      p.headDim = s.headDim;
      p.scale = s.scale;
      p.scaleLog2 = s.scale * gpu::kLog2e;
      p.dq = dq[r].data();
      p.lddq = qw;
      p.dk = dk[src].data();
      p.dv = dv[src].data();
      p.lddkv = kw;
      gpu::TileKernel used;
      ASSERT_EQ(runBackward(s.dtype, p, &used), "");
      EXPECT_EQ(used, expect) << gpu::tileKernelName(used);
    }
  }
  // fp32 accumulation of 16-bit products: the dtype's tolerance applies (the inputs are exact).
  for (int r = 0; r < P; ++r) {
    EXPECT_LE(relNormError(toDouble(dq[r]), sh[r].refDq), tolerance(s.dtype)) << c.name() << " dQ rank " << r;
    EXPECT_LE(relNormError(toDouble(dk[r]), sh[r].refDk), tolerance(s.dtype)) << c.name() << " dK rank " << r;
    EXPECT_LE(relNormError(toDouble(dv[r]), sh[r].refDv), tolerance(s.dtype)) << c.name() << " dV rank " << r;
  }
}

TEST(GpuKernelsEmu, BackwardTensorCores) {
  CaseSpec a;
  a.seqLen = 150, a.hq = 2, a.hkv = 1, a.dim = 64, a.dtype = attncclBfloat16, a.causal = true;
  checkBackward(a, 1, gpu::TileKernel::kMma64);
  CaseSpec b;
  b.seqLen = 100, b.hq = 2, b.hkv = 2, b.dim = 48, b.dtype = attncclFloat16, b.windowLeft = 20, b.docLens = {64, 36};
  checkBackward(b, 1, gpu::TileKernel::kMma64);
  CaseSpec d;
  d.seqLen = 90, d.hq = 3, d.hkv = 1, d.dim = 128, d.dtype = attncclFloat16, d.causal = true;
  d.layout = attncclLayoutZigzag;
  checkBackward(d, 2, gpu::TileKernel::kMma128);
}

TEST(GpuKernelsEmu, BackwardGeneric) {
  CaseSpec a;
  a.seqLen = 60, a.hq = 2, a.hkv = 1, a.dim = 20, a.dtype = attncclFloat32, a.causal = true;
  a.layout = attncclLayoutStriped;
  checkBackward(a, 2, gpu::TileKernel::kSimt);
  CaseSpec b;
  b.seqLen = 40, b.hq = 1, b.hkv = 1, b.dim = 136, b.dtype = attncclBfloat16, b.windowRight = 4, b.docLens = {15, 25};
  checkBackward(b, 1, gpu::TileKernel::kSimt);
}

}  // namespace
}  // namespace attnccl_test
