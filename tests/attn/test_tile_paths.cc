// Every kernel path of the CPU tiles this machine can run, against the fp64 reference: the GEMM
// layer (cpu/gemm.h: OpenBLAS or oneDNN for fp32; bf16 multiplied as bf16 through oneDNN where it
// has a bf16 matmul, else emulated so the bf16 tile structure still runs) directly, and the local
// attention over the covering case set of test_local_attn.cc (head dims 1..256, uneven blocks,
// every mask kind) on each path and on each row-operation ISA.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "attn/cpu/blas.h"
#include "attn/cpu/gemm.h"
#include "attn/cpu/onednn.h"
#include "attn/cpu/packed_gemm.h"
#include "attn/cpu/rowops.h"
#include "attn/local_cases.h"
#include "core/dtype.h"

namespace attnccl_test {
namespace {

namespace cpu = attnccl::attn::cpu;

// Restores the default path and ISA however a test ends.
struct PathGuard {
  ~PathGuard() {
    cpu::forceGemmPath(cpu::gemmPathsAvailable().front());
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

// One product C += alpha op(A) op(B) through the layer against fp64, with padded leading
// dimensions, a non-zero C and (bf16) inputs already representable in bf16.
void checkGemm(cpu::Elem e, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t ar = ta ? K : M, ac = (ta ? M : K), br = tb ? N : K, bc = (tb ? K : N);
  const int64_t lda = ac + 3, ldb = bc + 5, ldc = N + 2;
  std::vector<float> A(ar * lda), B(br * ldb), C(M * ldc);
  for (float& x : A) x = attnccl::bf16ToFloat(attnccl::floatToBf16(u(rng)));
  for (float& x : B) x = attnccl::bf16ToFloat(attnccl::floatToBf16(u(rng)));
  for (float& x : C) x = u(rng);
  std::vector<double> want(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += static_cast<double>(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      want[i * N + j] = C[i * ldc + j] + alpha * s;
    }
  std::vector<uint16_t> Ah(A.size()), Bh(B.size());
  for (size_t i = 0; i < A.size(); ++i) Ah[i] = attnccl::floatToBf16(A[i]);
  for (size_t i = 0; i < B.size(); ++i) Bh[i] = attnccl::floatToBf16(B[i]);
  const void* pa = e == cpu::Elem::Bf16 ? static_cast<const void*>(Ah.data()) : A.data();
  const void* pb = e == cpu::Elem::Bf16 ? static_cast<const void*>(Bh.data()) : B.data();
  cpu::gemmAcc(e, ta, tb, M, N, K, alpha, pa, lda, pb, ldb, C.data(), ldc);
  double err = 0, norm = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const double d = C[i * ldc + j] - want[i * N + j];
      err += d * d;
      norm += want[i * N + j] * want[i * N + j];
    }
  // fp32 accumulation of exact products: well inside 1e-5 relative.
  EXPECT_LE(std::sqrt(err / norm), 1e-5) << (e == cpu::Elem::Bf16 ? "bf16 " : "fp32 ") << M << "x" << N << "x" << K
                                         << " ta=" << ta << " tb=" << tb << " "
                                         << cpu::gemmPathName(cpu::gemmPath());
}

void gemmShapes(cpu::Elem e, uint64_t seed) {
  int i = 0;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      checkGemm(e, ta, tb, 128, 512, 128, 0.125f, seed + i++);  // S = Q K^T at D 128
      checkGemm(e, ta, tb, 7, 13, 5, 1.f, seed + i++);
      checkGemm(e, ta, tb, 33, 1, 200, -0.5f, seed + i++);
    }
}

TEST(GemmLayer, EveryPathMatchesFp64) {
  PathGuard guard;
  const uint64_t seed = testSeed();
  for (const cpu::GemmPath& p : cpu::gemmPathsAvailable()) {
    ASSERT_TRUE(cpu::forceGemmPath(p));
    gemmShapes(cpu::Elem::F32, seed);
    gemmShapes(cpu::Elem::Bf16, seed + 100);
    // The same shape again: cached primitives take the new buffers.
    gemmShapes(cpu::Elem::F32, seed + 200);
  }
}

// Pool threads run their products at once, each with its own cached primitives and stream.
TEST(GemmLayer, ConcurrentThreads) {
  PathGuard guard;
  const uint64_t seed = testSeed();
  for (const cpu::GemmPath& p : cpu::gemmPathsAvailable()) {
    ASSERT_TRUE(cpu::forceGemmPath(p));
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&, t] {
        for (int rep = 0; rep < 3; ++rep) gemmShapes(t % 2 ? cpu::Elem::Bf16 : cpu::Elem::F32, seed + 10 * t + rep);
      });
    for (std::thread& t : threads) t.join();
  }
}

// The defaults follow the machine (src/attn/cpu/README.md, "What is on by default"): the best
// row-op ISA within the cap; fp32 on oneDNN where its kernels are AVX-512 or OpenBLAS has no
// vector kernel; bf16 products only where oneDNN's bf16 matmul beats fp32 (AMX, AMD). Unless the
// environment chose (the avx2_capped entry sets ATTNCCL_CPU_ISA and ONEDNN_MAX_CPU_ISA).
TEST(GemmLayer, DefaultsFollowTheMachine) {
  __builtin_cpu_init();
  const bool cpuAvx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const char* isaEnv = getenv("ATTNCCL_CPU_ISA");
  if (isaEnv == nullptr || *isaEnv == '\0') {
    EXPECT_EQ(cpu::isaCap(), cpu::Isa::Avx512);
    EXPECT_EQ(cpu::rowOpsFor(cpu::Isa::Avx512) != nullptr, cpuAvx512);
  } else if (std::string(isaEnv) == "avx2") {
    EXPECT_EQ(cpu::rowOpsFor(cpu::Isa::Avx512), nullptr);
  }
  const cpu::GemmPath def = cpu::gemmPathsAvailable().front();  // a copy: the vector is a temporary
  const char* gemmEnv = getenv("ATTNCCL_CPU_GEMM");
  if (gemmEnv == nullptr || *gemmEnv == '\0') {
    const bool dnnl = cpu::dnnlBuilt() && (cpu::dnnlHasAvx512() || !cpu::blasHasVectorKernel());
    EXPECT_EQ(def.f32 == cpu::GemmLib::OneDnn, dnnl) << cpu::gemmPathName(def) << "; " << cpu::dnnlDescription();
    // oneDNN's AVX-512 kernels where it runs any (the cap reaches it before its first primitive).
    if (cpuAvx512 && cpu::isaCap() == cpu::Isa::Avx512 && cpu::dnnlBuilt() && getenv("ONEDNN_MAX_CPU_ISA") == nullptr)
      EXPECT_TRUE(cpu::dnnlHasAvx512()) << cpu::dnnlDescription();
  }
  // The forward's own packed kernels where fp32 runs on OpenBLAS (AVX2 machines).
  const char* fwdEnv = getenv("ATTNCCL_CPU_FWD_GEMM");
  if (fwdEnv == nullptr || *fwdEnv == '\0') EXPECT_EQ(def.fwdPacked, def.f32 == cpu::GemmLib::OpenBlas);
  const char* bwdEnv = getenv("ATTNCCL_CPU_BWD_GEMM");
  if (bwdEnv == nullptr || *bwdEnv == '\0') EXPECT_EQ(def.bwdPacked, def.f32 == cpu::GemmLib::OpenBlas);
  const char* bf16Env = getenv("ATTNCCL_CPU_BF16");
  if (bf16Env == nullptr || *bf16Env == '\0') {
    EXPECT_EQ(def.bf16Native, cpu::dnnlHasBf16() && (cpu::dnnlHasAmx() || cpu::cpuIsAmd()))
        << cpu::gemmPathName(def) << "; " << cpu::dnnlDescription();
  }
}

// The bf16 matmul of oneDNN itself (AVX-512 machines); skips where oneDNN has none.
TEST(GemmLayer, OneDnnBf16Native) {
  if (!cpu::bf16GemmNative()) GTEST_SKIP() << "oneDNN has no bf16 matmul on this CPU: " << cpu::dnnlDescription();
  PathGuard guard;
  ASSERT_TRUE(cpu::forceGemmPath({cpu::GemmLib::OneDnn, true}));
  gemmShapes(cpu::Elem::Bf16, testSeed());
}

// The packed kernels (cpu/packed_gemm.h) directly against fp64: row counts around the 6-row
// block, head dims around the 16-wide panel, key ranges that start on a later panel and end
// inside a padded one, pv's 256-key chunks, and leading dimensions wider than the rows.
TEST(PackedKernels, MatchFp64) {
  const cpu::PackedGemmOps* pk = cpu::packedGemm();
  if (pk == nullptr) GTEST_SKIP() << "no packed kernels for the row operations' ISA " << cpu::rowOps().name;
  std::mt19937_64 rng(testSeed());
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  struct Shape { int64_t nr, n, D, panel0, key0, nk; };
  for (const Shape& sh : {Shape{6, 32, 16, 0, 0, 32}, Shape{13, 700, 128, 3, 48, 600}, Shape{1, 17, 1, 1, 0, 17},
                          Shape{5, 40, 37, 0, 5, 35}, Shape{7, 520, 256, 30, 0, 520}, Shape{11, 300, 80, 2, 256, 44}}) {
    SCOPED_TRACE(testing::Message() << "nr " << sh.nr << " n " << sh.n << " D " << sh.D);
    const int64_t D = sh.D, n = sh.n, nPad = cpu::panelPad(n), ld = D + 3;
    std::vector<float> k(n * D), v(n * D), q(sh.nr * ld), pm(sh.nr * (sh.nk + 2));
    for (float& x : k) x = u(rng);
    for (float& x : v) x = u(rng);
    for (float& x : q) x = u(rng);
    for (float& x : pm) x = u(rng);
    std::vector<float> kp(nPad * D, NAN), vp(cpu::panelPad(D) * nPad, NAN);  // poisoned: packing writes all
    pk->packKeys(k.data(), n, D, kp.data());
    pk->packValues(v.data(), n, D, vp.data());
    // Scores over the panels from panel0 to the end of the keys (the last one padded).
    const int64_t npanels = nPad / cpu::kPanel - sh.panel0, lds = npanels * cpu::kPanel + 1;
    std::vector<float> s(sh.nr * lds, NAN);
    pk->scores(q.data(), ld, sh.nr, kp.data(), D, sh.panel0, npanels, 0.5f, s.data(), lds);
    for (int64_t i = 0; i < sh.nr; ++i)
      for (int64_t c = 0; c < npanels * cpu::kPanel; ++c) {
        const int64_t key = sh.panel0 * cpu::kPanel + c;
        double want = 0;
        if (key < n)
          for (int64_t d = 0; d < D; ++d) want += static_cast<double>(q[i * ld + d]) * k[key * D + d];
        ASSERT_NEAR(s[i * lds + c], 0.5 * want, 1e-5 * (1 + std::sqrt(static_cast<double>(D)))) << i << "," << key;
      }
    // O += alpha P V for keys [key0, key0 + nk), into a non-zero O with a wider stride.
    const int64_t ldp = sh.nk + 2, ldo = D + 5;
    std::vector<float> o(sh.nr * ldo);
    for (float& x : o) x = u(rng);
    const std::vector<float> o0 = o;
    pk->pv(pm.data(), ldp, sh.nr, vp.data(), nPad, sh.key0, sh.nk, D, -0.75f, o.data(), ldo);
    for (int64_t i = 0; i < sh.nr; ++i) {
      for (int64_t d = 0; d < D; ++d) {
        double sum = 0;
        for (int64_t j = 0; j < sh.nk; ++j)
          if (sh.key0 + j < n) sum += static_cast<double>(pm[i * ldp + j]) * v[(sh.key0 + j) * D + d];
        const double want = o0[i * ldo + d] - 0.75 * sum;
        ASSERT_NEAR(o[i * ldo + d], want, 1e-5 * (1 + std::sqrt(static_cast<double>(sh.nk)))) << i << "," << d;
      }
      for (int64_t d = D; d < ldo; ++d) ASSERT_EQ(o[i * ldo + d], o0[i * ldo + d]) << "wrote past D";
    }
  }
}

void runCases(const std::vector<CaseSpec>& cases, bool backward, bool bf16Only, uint64_t seed) {
  ThreadPool pool(2);
  int i = 0;
  for (const CaseSpec& cs : cases) {
    ++i;
    if (bf16Only && cs.dtype != attncclBfloat16) continue;
    AttnCase c(cs, subSeed(seed, i));
    LocalResult r = runForward(c, pool);
    checkForward(c, r);
    if (backward) checkBackward(c, r, pool);
  }
}

TEST(TileKernelPaths, EveryGemmPathMatchesReference) {
  PathGuard guard;
  const uint64_t seed = testSeed();
  for (const cpu::GemmPath& p : cpu::gemmPathsAvailable()) {
    SCOPED_TRACE(cpu::gemmPathName(p));
    ASSERT_TRUE(cpu::forceGemmPath(p));
    // The default path runs every case in test_local_attn; the others every case they change.
    const cpu::GemmPath def = cpu::gemmPathsAvailable().front();  // a copy: the vector is a temporary
    if (p == def) continue;
    // Same fp32 library and packed kernels: only the bf16 cases differ.
    const bool onlyBf16 = p.f32 == def.f32 && p.fwdPacked == def.fwdPacked && p.bwdPacked == def.bwdPacked;
    runCases(forwardCases(), false, onlyBf16, seed);
    runCases(backwardCases(), true, onlyBf16, seed + 1);
  }
}

// The bf16 path converts P and dS with the row operations: run it on each ISA here.
TEST(TileKernelPaths, Bf16PathOnEveryRowOpsIsa) {
  PathGuard guard;
  const uint64_t seed = testSeed();
  ASSERT_TRUE(cpu::forceGemmPath({cpu::gemmPathsAvailable().front().f32, true}));
  for (cpu::Isa isa : isasHere()) {
    ASSERT_TRUE(cpu::forceIsa(isa));
    SCOPED_TRACE(cpu::rowOps().name);
    runCases(forwardCases(), false, true, seed);
    runCases(backwardCases(), true, true, seed + 1);
  }
}

}  // namespace
}  // namespace attnccl_test
