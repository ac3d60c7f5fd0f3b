// The forward tile's streaming path for few query rows (src/attn/cpu/fwd_stream.cc, taken by
// fwdTile for <= 16 query rows): the small products against fp64, then whole tiles against an fp64
// attention written here (decode-shaped: a few queries at the end of many keys, which the
// whole-sequence oracle of support/reference.h does not express) for every row count up to the
// limit, head dims 1..256, key counts around the block, fp32/bf16/fp16, causal / window /
// documents / no mask, GQA, padded strided views, a continued accumulator, and each row-operation
// ISA the machine has. Outputs are poisoned before every call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "attn/cpu/fwd_stream.h"
#include "attn/cpu/rowops.h"
#include "attn/cpu/small_gemm.h"
#include "attn/tile.h"
#include "core/dtype.h"
#include "core/params.h"
#include "support/tensors.h"

namespace attnccl_test {
namespace {

namespace cpu = attnccl::attn::cpu;
using attnccl::ThreadPool;
using attnccl::attn::FwdTileArgs;
using attnccl::attn::MaskSpec;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct IsaGuard {
  ~IsaGuard() {
    for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2, cpu::Isa::Generic})
      if (isa <= cpu::isaCap() && cpu::forceIsa(isa)) break;
  }
};

std::vector<cpu::Isa> isasHere() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa isa : {cpu::Isa::Generic, cpu::Isa::Avx2, cpu::Isa::Avx512})
    if (isa <= cpu::isaCap() && cpu::rowOpsFor(isa) != nullptr) out.push_back(isa);
  return out;
}

TEST(SmallGemm, ScoresAndPvMatchFp64) {
  IsaGuard guard;
  const uint64_t seed = testSeed();
  for (cpu::Isa isa : isasHere()) {
    ASSERT_TRUE(cpu::forceIsa(isa));
    const cpu::SmallGemmOps& mm = cpu::smallGemm();
    EXPECT_STREQ(mm.name, isa >= cpu::Isa::Avx2 ? "avx2" : "generic");
    int c = 0;
    for (int64_t nq : {1, 2, 3, 4, 5, 8, 9, 16})
      for (int64_t nk : {1, 2, 3, 64})
        for (int64_t D : {1, 7, 8, 9, 16, 24, 100, 128}) {
          const uint64_t s = subSeed(seed, c++);
          const int64_t ldk = D + 3, lds = nk + 2, ldp = nk + 1;
          std::vector<float> q = randomFloats(nq * D, s, -1, 1), k = randomFloats(nk * ldk, s + 1, -1, 1);
          std::vector<float> sc(nq * lds, kNaN);
          mm.scores(q.data(), nq, k.data(), ldk, nk, D, 0.75f, sc.data(), lds);
          for (int64_t i = 0; i < nq; ++i)
            for (int64_t j = 0; j < nk; ++j) {
              double want = 0, mag = 0;
              for (int64_t d = 0; d < D; ++d) {
                want += static_cast<double>(q[i * D + d]) * k[j * ldk + d];
                mag += std::fabs(static_cast<double>(q[i * D + d]) * k[j * ldk + d]);
              }
              ASSERT_NEAR(sc[i * lds + j], 0.75 * want, 1e-6 * (mag + 1) * D)
                  << mm.name << " " << nq << "x" << nk << "x" << D;
            }
          // Columns past nk are not written.
          for (int64_t i = 0; i < nq; ++i)
            for (int64_t j = nk; j < lds; ++j) ASSERT_TRUE(std::isnan(sc[i * lds + j]));
          std::vector<float> p = randomFloats(nq * ldp, s + 2, 0, 1), v = randomFloats(nk * ldk, s + 3, -1, 1);
          std::vector<float> o = randomFloats(nq * D, s + 4, -1, 1), o0 = o;
          mm.pv(p.data(), ldp, nq, v.data(), ldk, nk, D, o.data());
          for (int64_t i = 0; i < nq; ++i)
            for (int64_t d = 0; d < D; ++d) {
              double want = o0[i * D + d];
              for (int64_t j = 0; j < nk; ++j) want += static_cast<double>(p[i * ldp + j]) * v[j * ldk + d];
              ASSERT_NEAR(o[i * D + d], want, 1e-5 * (nk + 1)) << mm.name << " " << nq << "x" << nk << "x" << D;
            }
          // The 16-bit forms: keys and values stored as bf16 / fp16, widened exactly.
          for (attncclDataType_t t : {attncclBfloat16, attncclFloat16}) {
            std::vector<float> kr = k, vr = v;
            std::vector<uint16_t> kh(kr.size()), vh(vr.size());
            for (size_t x = 0; x < kr.size(); ++x) {
              kh[x] = t == attncclBfloat16 ? attnccl::floatToBf16(kr[x]) : attnccl::floatToFp16(kr[x]);
              kr[x] = t == attncclBfloat16 ? attnccl::bf16ToFloat(kh[x]) : attnccl::fp16ToFloat(kh[x]);
              vh[x] = t == attncclBfloat16 ? attnccl::floatToBf16(vr[x]) : attnccl::floatToFp16(vr[x]);
              vr[x] = t == attncclBfloat16 ? attnccl::bf16ToFloat(vh[x]) : attnccl::fp16ToFloat(vh[x]);
            }
            std::vector<float> sh(nq * lds, kNaN);
            mm.scores16(t, q.data(), nq, kh.data(), ldk, nk, D, 0.75f, sh.data(), lds);
            std::vector<float> oh = o0;
            mm.pv16(t, p.data(), ldp, nq, vh.data(), ldk, nk, D, oh.data());
            for (int64_t i = 0; i < nq; ++i) {
              for (int64_t j = 0; j < nk; ++j) {
                double want = 0, mag = 0;
                for (int64_t d = 0; d < D; ++d) {
                  want += static_cast<double>(q[i * D + d]) * kr[j * ldk + d];
                  mag += std::fabs(static_cast<double>(q[i * D + d]) * kr[j * ldk + d]);
                }
                ASSERT_NEAR(sh[i * lds + j], 0.75 * want, 1e-6 * (mag + 1) * D) << mm.name << " 16-bit " << nq;
              }
              for (int64_t j = nk; j < lds; ++j) ASSERT_TRUE(std::isnan(sh[i * lds + j]));
              for (int64_t d = 0; d < D; ++d) {
                double want = o0[i * D + d];
                for (int64_t j = 0; j < nk; ++j) want += static_cast<double>(p[i * ldp + j]) * vr[j * ldk + d];
                ASSERT_NEAR(oh[i * D + d], want, 1e-5 * (nk + 1))
                    << mm.name << " 16-bit " << nq << "x" << nk << "x" << D;
              }
            }
          }
        }
  }
}

struct StreamCase {
  int64_t nq, nk;
  int D;
  int hq, hkv;
  attncclDataType_t dtype;
  int mask;  // 0 none, 1 causal, 2 causal + window, 3 causal + documents, 4 window both sides
};

// Storage dtype rows from floats (rounded), and the rounded values back for the reference.
std::vector<char> store(attncclDataType_t t, std::vector<float>& x) {
  const size_t esz = attnccl::dtypeSize(t);
  std::vector<char> out(x.size() * esz);
  for (size_t i = 0; i < x.size(); ++i) {
    if (t == attncclFloat32) {
      memcpy(out.data() + 4 * i, &x[i], 4);
    } else {
      uint16_t h = t == attncclBfloat16 ? attnccl::floatToBf16(x[i]) : attnccl::floatToFp16(x[i]);
      x[i] = t == attncclBfloat16 ? attnccl::bf16ToFloat(h) : attnccl::fp16ToFloat(h);
      memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

bool visible(const MaskSpec& m, int64_t qp, int64_t qd, int64_t kp, int64_t kd) {
  if (qd != kd) return false;
  if (m.causal && kp > qp) return false;
  if (m.windowLeft >= 0 && qp - kp > m.windowLeft) return false;
  if (m.windowRight >= 0 && kp - qp > m.windowRight) return false;
  return true;
}

// Runs one case through fwdTile (which streams it) and checks O and LSE against fp64. With
// `split`, the keys go in two calls into one accumulator (the second continues the first's state).
void runCase(const StreamCase& c, bool split, uint64_t seed, bool expectStream = true) {
  ASSERT_EQ(cpu::fwdStreams([&] {
              FwdTileArgs a;
              a.qTok.n = c.nq;
              return a;
            }()),
            expectStream);
  const int64_t D = c.D, g = c.hq / c.hkv;
  // Padded views: query rows hold hq heads plus 1 spare head, K/V rows 2 spare columns.
  const int64_t ldq = (c.hq + 1) * D, ldkv = c.hkv * D + 2, ldo = c.hq * D + 5, ldlse = c.nq + 3;
  std::vector<float> qf = randomFloats(c.nq * ldq, seed, -2, 2), kf = randomFloats(c.nk * ldkv, seed + 1, -2, 2),
                     vf = randomFloats(c.nk * ldkv, seed + 2, -1, 1);
  std::vector<char> q = store(c.dtype, qf), k = store(c.dtype, kf), v = store(c.dtype, vf);
  // Keys at positions 0..nk-1 (two documents when masked so); the queries at the end, the last
  // one at nk + 1, repeated positions allowed (a folded GQA block repeats them).
  std::vector<int64_t> kpos(c.nk), kdoc(c.nk, 0), qpos(c.nq), qdoc(c.nq, 0);
  for (int64_t j = 0; j < c.nk; ++j) {
    kpos[j] = j;
    if (c.mask == 3 && j >= c.nk / 3) kdoc[j] = 1;
  }
  for (int64_t i = 0; i < c.nq; ++i) {
    qpos[i] = c.nk + 1 - (c.nq - 1 - i) * 2 / 3 - 1;
    if (c.mask == 3) qdoc[i] = 1;
  }
  MaskSpec m;
  m.causal = c.mask >= 1 && c.mask <= 3;
  if (c.mask == 2) m.windowLeft = 37;
  if (c.mask == 4) m.windowLeft = m.windowRight = 20;
  if (c.mask == 4)
    for (int64_t i = 0; i < c.nq; ++i) qpos[i] = c.nk / 2 + i;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));

  std::vector<float> o(c.nq * ldo, kNaN), lse(c.hq * ldlse, kNaN);
  attnccl::attn::clearAccumulator(o.data(), c.nq, c.hq, c.D, ldo, lse.data(), ldlse);
  const int64_t cut = split ? c.nk / 2 : c.nk;
  ThreadPool pool(2);
  for (int part = 0; part < (split ? 2 : 1); ++part) {
    const int64_t j0 = part == 0 ? 0 : cut, j1 = part == 0 ? cut : c.nk;
    if (j1 <= j0) continue;
    FwdTileArgs a;
    a.dtype = c.dtype;
    a.headDim = c.D;
    a.scale = scale;
    a.mask = m;
    a.heads.numQ = c.hq;
    a.heads.numKV = c.hkv;
    a.heads.group = static_cast<int>(g);
    a.q = q.data();
    a.ldq = ldq;
    a.qTok = {c.nq, qpos.data(), qdoc.data()};
    const size_t esz = attnccl::dtypeSize(c.dtype);
    a.k = k.data() + static_cast<size_t>(j0 * ldkv) * esz;
    a.v = v.data() + static_cast<size_t>(j0 * ldkv) * esz;
    a.ldkv = ldkv;
    a.kTok = {j1 - j0, kpos.data() + j0, kdoc.data() + j0};
    a.o = o.data();
    a.ldo = ldo;
    a.lse = lse.data();
    a.ldlse = ldlse;
    attnccl::attn::fwdTile(a, pool);
  }

  const double tol = c.dtype == attncclFloat32 ? 2e-5 : 2e-4;  // the inputs are rounded above; fp32 compute
  for (int64_t i = 0; i < c.nq; ++i)
    for (int h = 0; h < c.hq; ++h) {
      const int kh = static_cast<int>(h / g);
      double mx = -INFINITY;
      std::vector<double> sc(c.nk, -INFINITY);
      for (int64_t j = 0; j < c.nk; ++j) {
        if (!visible(m, qpos[i], qdoc[i], kpos[j], kdoc[j])) continue;
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += static_cast<double>(qf[i * ldq + h * D + d]) * kf[j * ldkv + kh * D + d];
        sc[j] = s * scale;
        mx = std::max(mx, sc[j]);
      }
      const float* orow = o.data() + i * ldo + h * D;
      const float gotLse = lse[h * ldlse + i];
      if (mx == -INFINITY) {  // nothing visible: the accumulator stays empty
        ASSERT_EQ(gotLse, -INFINITY) << i << " " << h;
        continue;
      }
      double l = 0;
      std::vector<double> want(D, 0.0);
      for (int64_t j = 0; j < c.nk; ++j) {
        if (sc[j] == -INFINITY) continue;
        const double p = std::exp(sc[j] - mx);
        l += p;
        for (int64_t d = 0; d < D; ++d) want[d] += p * vf[j * ldkv + kh * D + d];
      }
      ASSERT_NEAR(gotLse, mx + std::log(l), tol * 10) << "row " << i << " head " << h;
      for (int64_t d = 0; d < D; ++d)
        ASSERT_NEAR(orow[d], want[d] / l, tol) << "row " << i << " head " << h << " d " << d;
    }
  // The padding of the output rows and LSE rows is untouched.
  for (int64_t i = 0; i < c.nq; ++i)
    for (int64_t x = c.hq * D; x < ldo; ++x) ASSERT_TRUE(std::isnan(o[i * ldo + x]));
  for (int h = 0; h < c.hq; ++h)
    for (int64_t x = c.nq; x < ldlse; ++x) ASSERT_TRUE(std::isnan(lse[h * ldlse + x]));
}

TEST(FwdStream, FewQueryRowsMatchFp64) {
  IsaGuard guard;
  const uint64_t seed = testSeed();
  int n = 0;
  for (cpu::Isa isa : isasHere()) {
    ASSERT_TRUE(cpu::forceIsa(isa));
    for (int64_t nq : {1, 2, 3, 5, 8, 13, 16})
      for (int64_t nk : {1, 63, 64, 65, 300})
        for (int D : {1, 9, 64, 128})
          for (attncclDataType_t t : {attncclFloat32, attncclBfloat16, attncclFloat16}) {
            const StreamCase c{nq, nk, D, 4, 2, t, static_cast<int>((nq + nk + D) % 5)};
            SCOPED_TRACE(::testing::Message() << cpu::rowOps().name << " nq " << nq << " nk " << nk << " D " << D << " "
                                              << attnccl::dtypeName(t) << " mask " << c.mask << " " << seedText(seed));
            runCase(c, false, subSeed(seed, n++));
            if (HasFatalFailure()) return;
          }
  }
}

TEST(FwdStream, EveryMaskHeadLayoutAndContinuation) {
  IsaGuard guard;
  const uint64_t seed = testSeed();
  int n = 0;
  for (cpu::Isa isa : isasHere()) {
    ASSERT_TRUE(cpu::forceIsa(isa));
    for (int mask = 0; mask < 5; ++mask)
      for (auto heads : {std::pair<int, int>{1, 1}, {8, 1}, {6, 3}, {4, 4}})
        for (int D : {16, 100, 256})
          for (bool split : {false, true}) {
            const StreamCase c{7, 333, D, heads.first, heads.second, mask % 2 ? attncclBfloat16 : attncclFloat32, mask};
            SCOPED_TRACE(::testing::Message()
                         << cpu::rowOps().name << " mask " << mask << " heads " << heads.first << "/" << heads.second
                         << " D " << D << " split " << split << " " << seedText(seed));
            runCase(c, split, subSeed(seed, n++));
            if (HasFatalFailure()) return;
          }
  }
}

// ATTNCCL_CPU_STREAM=0 sends the same calls through the GEMM path, which must match fp64 as well.
TEST(FwdStream, SwitchOffGoesThroughGemm) {
  FwdTileArgs a;
  a.qTok.n = cpu::kStreamMaxRows;
  EXPECT_TRUE(cpu::fwdStreams(a));
  a.qTok.n = cpu::kStreamMaxRows + 1;
  EXPECT_FALSE(cpu::fwdStreams(a));
  setenv("ATTNCCL_CPU_STREAM", "0", 1);
  attnccl::reloadParams();
  const uint64_t seed = testSeed();
  for (int mask = 0; mask < 5; ++mask) {
    SCOPED_TRACE(::testing::Message() << "gemm path, mask " << mask << " " << seedText(seed));
    runCase({5, 200, 64, 4, 2, attncclFloat32, mask}, mask % 2 == 1, subSeed(seed, mask), false);
  }
  unsetenv("ATTNCCL_CPU_STREAM");
  attnccl::reloadParams();
  a.qTok.n = 1;
  EXPECT_TRUE(cpu::fwdStreams(a));
}

}  // namespace
}  // namespace attnccl_test
