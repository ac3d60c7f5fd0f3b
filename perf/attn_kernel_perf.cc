// attn_kernel_perf: speed of the CPU attention tiles on one rank (attention over the whole
// sequence, forward and backward), against ceilings measured in the same run: the fp32 GEMM rate
// of the library the tiles' fp32 products use (cpu/gemm.h), oneDNN's fp32 and bf16 GEMM rates at
// the tiles' shape (128x512x128, S = Q K^T) and at 2048^3 (with the ISA and kernels oneDNN
// picked, in the header), and an unfused attention (S = Q K^T, softmax, O = P V through the
// tiles' fp32 GEMM library). %gemm is against the tiles' own fp32 GEMM rate, %dnnl against oneDNN's 2048^3 rate in the
// dtype the tiles multiply in (bf16 where they run bf16 products, else fp32).
// FLOPs count visible pairs only: forward 4*Sq*Sk*D*Hq, backward 2.5x that.
// Small sizes are checked against a plain fp64 attention (#wrong); any wrong value exits 1.
//
//   attn_kernel_perf -b 512 -e 8K -f 2 -H 8 -K 8 -D 128 -d fp32 -C 1 -B both -n 5 -w 1 -t 2
#include <getopt.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/cpu/blas.h"
#include "attn/cpu/gemm.h"
#include "attn/cpu/onednn.h"
#include "attn/cpu/rowops.h"
#include "attn/desc.h"
#include "attn/local.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace {

using attnccl::ThreadPool;
namespace attn = attnccl::attn;
namespace cpu = attnccl::attn::cpu;
using Clock = std::chrono::steady_clock;

struct Options {
  int64_t minLen = 1024, maxLen = 4096, factor = 2;
  int heads = 8, kvHeads = 0, dim = 128;
  attncclDataType_t dtype = attncclFloat32;
  bool causal = false;
  bool fwd = true, bwd = true;
  int iters = 5, warmup = 1, threads = 0;
  int64_t checkMax = 1024;  // check against fp64 for lengths up to this
  bool cpuTime = false;     // -T 1: time by process CPU time / threads (see timeIt)
};

// Seconds per call. Wall clock by default; with -T 1 the process's CPU time divided by the
// thread count, which ignores time the threads spent descheduled: a steadier measure on a
// machine shared with other work (the pool's idle threads sleep, so they add nothing).
bool gCpuTime = false;
int gThreads = 1;

int64_t parseSize(const char* s) {
  char* end = nullptr;
  double v = strtod(s, &end);
  if (end && (*end == 'K' || *end == 'k')) v *= 1024;
  if (end && (*end == 'M' || *end == 'm')) v *= 1024 * 1024;
  return static_cast<int64_t>(v);
}

void usage(const char* prog) {
  printf("usage: %s [-b minLen] [-e maxLen] [-f factor] [-H heads] [-K kvHeads] [-D headDim]\n"
         "          [-d fp32|bf16|fp16] [-C 0|1] [-B fwd|bwd|both] [-n iters] [-w warmup] [-t threads]\n"
         "          [-c checkMaxLen (0 = no check)] [-T 0|1 (time by CPU time / threads)]\n",
         prog);
}

bool parse(int argc, char** argv, Options* o) {
  int c;
  while ((c = getopt(argc, argv, "b:e:f:H:K:D:d:C:B:n:w:t:c:T:h")) != -1) {
    switch (c) {
      case 'b': o->minLen = parseSize(optarg); break;
      case 'e': o->maxLen = parseSize(optarg); break;
      case 'f': o->factor = parseSize(optarg); break;
      case 'H': o->heads = atoi(optarg); break;
      case 'K': o->kvHeads = atoi(optarg); break;
      case 'D': o->dim = atoi(optarg); break;
      case 'd':
        if (!strcmp(optarg, "fp32")) o->dtype = attncclFloat32;
        else if (!strcmp(optarg, "bf16")) o->dtype = attncclBfloat16;
        else if (!strcmp(optarg, "fp16")) o->dtype = attncclFloat16;
        else return false;
        break;
      case 'C': o->causal = atoi(optarg) != 0; break;
      case 'B':
        o->fwd = strcmp(optarg, "bwd") != 0;
        o->bwd = strcmp(optarg, "fwd") != 0;
        break;
      case 'n': o->iters = atoi(optarg); break;
      case 'w': o->warmup = atoi(optarg); break;
      case 't': o->threads = atoi(optarg); break;
      case 'c': o->checkMax = parseSize(optarg); break;
      case 'T': o->cpuTime = atoi(optarg) != 0; break;
      default: return false;
    }
  }
  if (o->kvHeads == 0) o->kvHeads = o->heads;
  if (o->threads <= 0) o->threads = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  return o->minLen >= 1 && o->maxLen >= o->minLen && o->factor >= 2 && o->heads >= 1 && o->kvHeads >= 1 &&
         o->heads % o->kvHeads == 0 && o->dim >= 1 && o->dim <= 256 && o->iters >= 1 && o->warmup >= 0;
}

double processCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

template <typename F>
double timeIt(int warmup, int iters, F f) {
  for (int i = 0; i < warmup; ++i) f();
  if (gCpuTime) {
    const double c0 = processCpuSeconds();
    for (int i = 0; i < iters; ++i) f();
    return (processCpuSeconds() - c0) / gThreads / iters;
  }
  auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) f();
  return std::chrono::duration<double>(Clock::now() - t0).count() / iters;
}

// fp32 GEMM rate of the library the tiles' fp32 products use: every pool thread multiplies its own 1024^3 problem at once; the
// best of `iters` runs (a ceiling).
double gemmRate(ThreadPool& pool, int iters) {
  const int64_t n = 1024;
  std::vector<std::vector<float>> a(pool.size()), c(pool.size());
  for (int t = 0; t < pool.size(); ++t) {
    a[t].assign(n * n, 0.5f);
    c[t].assign(n * n, 0.f);
  }
  double best = 0;
  for (int i = 0; i < iters; ++i) {
    double sec = timeIt(i == 0 ? 1 : 0, 1, [&] {
      pool.run(pool.size(), [&](int64_t item, int) {
        cpu::gemmAcc(cpu::Elem::F32, false, true, n, n, n, 1.f, a[item].data(), n, a[item].data(), n, c[item].data(), n);
      });
    });
    best = std::max(best, 2.0 * n * n * n * pool.size() / sec / 1e9);
  }
  return best;
}

// oneDNN's rate for C += A B^T (tb) or A B, M x N x K, fp32 or bf16: every pool thread its own
// problem at once, best of `iters`; 0 when oneDNN cannot run it here.
double dnnlRate(ThreadPool& pool, int iters, bool bf16, int64_t M, int64_t N, int64_t K, bool tb, int reps) {
  if (!cpu::dnnlBuilt()) return 0;
  const size_t esz = bf16 ? 2 : 4;
  std::vector<std::vector<char>> a(pool.size()), b(pool.size());
  std::vector<std::vector<float>> c(pool.size());
  for (int t = 0; t < pool.size(); ++t) {
    a[t].assign(M * K * esz, 0);
    b[t].assign(K * N * esz, 0);
    c[t].assign(M * N, 0.f);
  }
  bool ok = true;
  double best = 0;
  for (int i = 0; i < iters && ok; ++i) {
    double sec = timeIt(i == 0 ? 1 : 0, 1, [&] {
      pool.run(pool.size(), [&](int64_t item, int) {
        for (int r = 0; r < reps; ++r)
          ok &= cpu::dnnlGemmAcc(bf16, false, tb, M, N, K, 1.f, a[item].data(), K, b[item].data(), tb ? K : N,
                                 c[item].data(), N);
      });
    });
    best = std::max(best, 2.0 * M * N * K * reps * pool.size() / sec / 1e9);
  }
  return ok ? best : 0;
}

// Unfused attention, fp32, through the tiles' fp32 GEMM library (cpu/gemm.h): per head S = scale Q K^T over all keys, masked
// softmax, O = P V. Heads spread over the pool. Returns seconds, or -1 when S would not fit.
double unfusedTime(const Options& o, int64_t S, const std::vector<float>& q, const std::vector<float>& k,
                   const std::vector<float>& v, ThreadPool& pool) {
  if (static_cast<double>(S) * S * 4 * pool.size() > 4e9) return -1;
  const int64_t D = o.dim, ldq = o.heads * D, ldk = o.kvHeads * D, group = o.heads / o.kvHeads;
  std::vector<std::vector<float>> s(pool.size(), std::vector<float>(S * S));
  std::vector<float> out(S * ldq);
  const float scale = 1.f / std::sqrt(static_cast<float>(D)) * 1.4426950408889634f;
  const cpu::RowOps& ops = cpu::rowOps();
  return timeIt(o.warmup, o.iters, [&] {
    pool.run(o.heads, [&](int64_t h, int t) {
      float* sp = s[t].data();
      const int64_t kh = h / group;
      // The layer accumulates (C +=): clearing C is this baseline's beta = 0 pass.
      std::fill(sp, sp + S * S, 0.f);
      cpu::gemmAcc(cpu::Elem::F32, false, true, S, S, D, scale, q.data() + h * D, ldq, k.data() + kh * D, ldk, sp,
                   S);
      for (int64_t i = 0; i < S; ++i) {
        float* row = sp + i * S;
        const int64_t n = o.causal ? i + 1 : S;
        float sum = ops.exp2Sub(row, row, n, ops.rowMax(row, n));
        ops.scale(row, n, 1.f / sum);
        std::fill(row + n, row + S, 0.f);
      }
      for (int64_t i = 0; i < S; ++i) std::fill(out.data() + i * ldq + h * D, out.data() + i * ldq + h * D + D, 0.f);
      cpu::gemmAcc(cpu::Elem::F32, false, false, S, D, S, 1.f, sp, S, v.data() + kh * D, ldk, out.data() + h * D,
                   ldq);
    });
  });
}

// Plain fp64 attention (one query row at a time) for the #wrong check.
struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

Ref reference(const Options& o, int64_t S, const std::vector<double>& q, const std::vector<double>& k,
              const std::vector<double>& v, const std::vector<double>& dout) {
  const int64_t D = o.dim, H = o.heads, G = o.heads / o.kvHeads, ldq = H * D, ldk = o.kvHeads * D;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  Ref r;
  r.out.assign(S * ldq, 0);
  r.lse.assign(H * S, 0);
  r.dq.assign(S * ldq, 0);
  r.dk.assign(S * ldk, 0);
  r.dv.assign(S * ldk, 0);
  std::vector<double> p(S), dp(S);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t kh = h / G;
    for (int64_t i = 0; i < S; ++i) {
      const int64_t n = o.causal ? i + 1 : S;
      double mx = -1e300, sum = 0, pdp = 0;
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += q[i * ldq + h * D + d] * k[j * ldk + kh * D + d];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - mx));
      r.lse[h * S + i] = mx + std::log(sum);
      for (int64_t j = 0; j < n; ++j) {
        p[j] /= sum;
        double g = 0;
        for (int64_t d = 0; d < D; ++d) {
          r.out[i * ldq + h * D + d] += p[j] * v[j * ldk + kh * D + d];
          g += dout[i * ldq + h * D + d] * v[j * ldk + kh * D + d];
        }
        dp[j] = g;
        pdp += p[j] * g;
      }
      for (int64_t j = 0; j < n; ++j) {
        const double ds = p[j] * (dp[j] - pdp) * scale;
        for (int64_t d = 0; d < D; ++d) {
          r.dq[i * ldq + h * D + d] += ds * k[j * ldk + kh * D + d];
          r.dk[j * ldk + kh * D + d] += ds * q[i * ldq + h * D + d];
          r.dv[j * ldk + kh * D + d] += p[j] * dout[i * ldq + h * D + d];
        }
      }
    }
  }
  return r;
}

// Elements off by more than 8x the dtype's tolerance relative to (|want| + rms(want)), NaNs included.
int64_t countWrong(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  double rms = 0;
  for (double w : want) rms += w * w;
  rms = std::sqrt(rms / std::max<size_t>(want.size(), 1));
  int64_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 8 * tol * (std::fabs(want[i]) + rms))) ++wrong;
  return wrong;
}

// LSE values off by more than an absolute 1e-4 (docs/design.md, "Correctness method"), NaNs too.
int64_t countWrongAbs(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  int64_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol)) ++wrong;
  return wrong;
}

struct Buffer {
  attncclDataType_t dtype;
  std::vector<unsigned char> bytes;
  Buffer(attncclDataType_t t, int64_t n) : dtype(t), bytes(n * attnccl::dtypeSize(t)) {}
  void* data() { return bytes.data(); }
  double get(int64_t i) const {
    uint16_t h;
    float f;
    if (dtype == attncclFloat32) {
      memcpy(&f, &bytes[4 * i], 4);
      return f;
    }
    memcpy(&h, &bytes[2 * i], 2);
    return dtype == attncclBfloat16 ? attnccl::bf16ToFloat(h) : attnccl::fp16ToFloat(h);
  }
  void set(int64_t i, float f) {
    if (dtype == attncclFloat32) {
      memcpy(&bytes[4 * i], &f, 4);
      return;
    }
    uint16_t h = dtype == attncclBfloat16 ? attnccl::floatToBf16(f) : attnccl::floatToFp16(f);
    memcpy(&bytes[2 * i], &h, 2);
  }
  std::vector<double> toDouble() const {
    std::vector<double> v(bytes.size() / attnccl::dtypeSize(dtype));
    for (size_t i = 0; i < v.size(); ++i) v[i] = get(static_cast<int64_t>(i));
    return v;
  }
  std::vector<float> toFloat() const {
    std::vector<float> v(bytes.size() / attnccl::dtypeSize(dtype));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(get(static_cast<int64_t>(i)));
    return v;
  }
};

Buffer randomBuffer(attncclDataType_t t, int64_t n, uint64_t seed) {
  Buffer b(t, n);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < n; ++i) b.set(i, u(rng));
  return b;
}

double tolerance(attncclDataType_t t) { return t == attncclFloat32 ? 1e-5 : t == attncclFloat16 ? 5e-3 : 2e-2; }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    usage(argv[0]);
    return 2;
  }
  gCpuTime = o.cpuTime;
  gThreads = o.threads;
  ThreadPool pool(o.threads);
  const double gemm = gemmRate(pool, 5);
  const double dnnlF32Tile = dnnlRate(pool, 5, false, 128, 512, 128, true, 50);
  const double dnnlBf16Tile = dnnlRate(pool, 5, true, 128, 512, 128, true, 50);
  const double dnnlF32Big = dnnlRate(pool, 3, false, 2048, 2048, 2048, false, 1);
  const double dnnlBf16Big = dnnlRate(pool, 3, true, 2048, 2048, 2048, false, 1);
  const bool bf16Products = o.dtype == attncclBfloat16 && cpu::gemmPath().bf16Native;
  const double dnnlRef = bf16Products ? dnnlBf16Big : dnnlF32Big;
  printf("# attn_kernel_perf: Hq=%d Hkv=%d D=%d %s causal=%d threads=%d row-ops=%s timing=%s\n", o.heads, o.kvHeads,
         o.dim, attnccl::dtypeName(o.dtype), o.causal ? 1 : 0, o.threads, cpu::rowOps().name,
         o.cpuTime ? "cpu/threads" : "wall");
  printf("# GEMM path: %s; BLAS: %s\n# %s\n", cpu::gemmPathName(cpu::gemmPath()).c_str(), cpu::blasDescription(),
         cpu::dnnlDescription());
  printf("# fp32 GEMM rate of the tiles' library (1024^3 per thread, %d threads): %.1f GFLOP/s\n", o.threads, gemm);
  printf("# oneDNN GEMM rate, %d threads (0 = none here): fp32 128x512x128 NT %.1f, 2048^3 %.1f; "
         "bf16 128x512x128 NT %.1f, 2048^3 %.1f GFLOP/s\n",
         o.threads, dnnlF32Tile, dnnlF32Big, dnnlBf16Tile, dnnlBf16Big);
  printf("# %%dnnl: against oneDNN %s 2048^3\n", bf16Products ? "bf16" : "fp32");
  printf("#%9s %4s %11s %9s %6s %6s %12s %8s %7s\n", "seqLen", "dir", "time(ms)", "GFLOP/s", "%gemm", "%dnnl",
         "unfused(ms)", "speedup", "#wrong");
  auto pct = [](double rate, double ref) { return ref > 0 ? 100 * rate / ref : 0.0; };
  int64_t totalWrong = 0;
  for (int64_t S = o.minLen; S <= o.maxLen; S *= o.factor) {
    const int64_t qn = S * o.heads * o.dim, kn = S * o.kvHeads * o.dim;
    Buffer q = randomBuffer(o.dtype, qn, 1), k = randomBuffer(o.dtype, kn, 2), v = randomBuffer(o.dtype, kn, 3),
           dout = randomBuffer(o.dtype, qn, 4);
    Buffer out(o.dtype, qn), dq(o.dtype, qn), dk(o.dtype, kn), dv(o.dtype, kn);
    std::vector<float> lse(o.heads * S);
    attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
    d.dtype = o.dtype;
    d.seqLen = S;
    d.numHeadsQ = o.heads;
    d.numHeadsKV = o.kvHeads;
    d.headDim = o.dim;
    d.causal = o.causal;
    attn::AttnShape shape;
    if (attn::resolveDesc(&d, &shape) != attncclSuccess) return 2;
    attn::FwdTensors ft{q.data(), k.data(), v.data(), out.data(), lse.data()};
    attn::BwdTensors bt{q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(), dv.data()};
    const double pairs = o.causal ? S * (S + 1) / 2.0 : static_cast<double>(S) * S;
    const double fwdFlops = 4.0 * pairs * o.dim * o.heads;
    double tf = timeIt(o.warmup, o.iters, [&] { attn::localForward(shape, ft, pool); });
    double unfused = -1;
    if (o.fwd) {
      unfused = unfusedTime(o, S, q.toFloat(), k.toFloat(), v.toFloat(), pool);
    }
    double tb = o.bwd ? timeIt(o.warmup, o.iters, [&] { attn::localBackward(shape, bt, pool); }) : 0;
    int64_t wrongF = -1, wrongB = -1;
    if (S <= o.checkMax) {
      Ref r = reference(o, S, q.toDouble(), k.toDouble(), v.toDouble(), dout.toDouble());
      const double tol = tolerance(o.dtype);
      std::vector<double> l(lse.begin(), lse.end());
      wrongF = countWrong(out.toDouble(), r.out, tol) + countWrongAbs(l, r.lse, 1e-4);
      if (o.bwd)
        wrongB = countWrong(dq.toDouble(), r.dq, 2 * tol) + countWrong(dk.toDouble(), r.dk, 2 * tol) +
                 countWrong(dv.toDouble(), r.dv, 2 * tol);
      totalWrong += wrongF + std::max<int64_t>(wrongB, 0);
    }
    auto wrongText = [](int64_t w) { return w < 0 ? std::string("N/A") : std::to_string(w); };
    if (o.fwd) {
      const double rate = fwdFlops / tf / 1e9;
      printf(" %9lld %4s %11.3f %9.1f %6.1f %6.1f", static_cast<long long>(S), "fwd", tf * 1e3, rate, 100 * rate / gemm,
             pct(rate, dnnlRef));
      if (unfused > 0)
        printf(" %12.3f %8.2f", unfused * 1e3, unfused / tf);
      else
        printf(" %12s %8s", "N/A", "N/A");
      printf(" %7s\n", wrongText(wrongF).c_str());
    }
    if (o.bwd) {
      const double rate = 2.5 * fwdFlops / tb / 1e9;
      printf(" %9lld %4s %11.3f %9.1f %6.1f %6.1f %12s %8s %7s\n", static_cast<long long>(S), "bwd", tb * 1e3, rate,
             100 * rate / gemm, pct(rate, dnnlRef), "", "", wrongText(wrongB).c_str());
    }
    fflush(stdout);
  }
  printf("# Out of bounds values : %lld %s\n", static_cast<long long>(totalWrong), totalWrong ? "FAILED" : "OK");
  return totalWrong ? 1 : 0;
}
