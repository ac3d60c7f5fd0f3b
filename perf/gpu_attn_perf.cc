// gpu_attn_perf: attention on CUDA communicators, timed with CUDA events. One rank runs
// attention over the whole sequence on one GPU; -r P runs P ranks as threads of this process
// sharing the GPU (each with its own communicator and stream, cuda_ipc between them) and, with
// -1 1 (the default for P > 1), also the one-rank run of the same sequence, printing the ratio
// P-rank time / one-rank time (the GPU target for 4 ranks, causal zigzag ring: <= 1.15;
// docs/design.md, "Targets").
// FLOPs count visible pairs only: forward 4*pairs*D*Hq, backward 2.5x that. Outputs are checked
// for non-finite values (#bad); any bad value or failed call exits 1.
//
//   gpu_attn_perf -b 16K -e 16K -H 16 -K 16 -D 128 -d bf16 -C 0 -B fwd -n 20 -w 5
//   gpu_attn_perf -r 4 -a ring -l zigzag -C 1 -b 16K -e 16K -H 16 -D 128 -d bf16 -B fwd
//
// Every line of the table is also printed as "#result key=value ..." for scripts
// (tools/gpu-check.sh).
#include <getopt.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "attnccl.h"

#if ATTNCCL_HAVE_CUDA
#include <cuda_runtime.h>

namespace {

struct Options {
  int64_t minLen = 16384, maxLen = 16384, factor = 2;
  int ranks = 1, device = 0, heads = 16, kvHeads = 0, dim = 128;
  attncclDataType_t dtype = attncclBfloat16;
  attncclAlgo_t algo = attncclAlgoRing;
  attncclLayout_t layout = attncclLayoutZigzag;
  int causal = 0;
  int64_t windowLeft = -1;
  bool fwd = true, bwd = false;
  int iters = 20, warmup = 5;
  int oneRank = -1;  // -1: on when ranks > 1
};

int64_t parseSize(const char* s) {
  char* end = nullptr;
  double v = strtod(s, &end);
  if (end && (*end == 'K' || *end == 'k')) v *= 1024;
  if (end && (*end == 'M' || *end == 'm')) v *= 1024 * 1024;
  return static_cast<int64_t>(v);
}

void usage() {
  fprintf(stderr,
          "usage: gpu_attn_perf [-r ranks] [-g device] [-a ring|passq|allgather|ulysses|hybrid|auto]\n"
          "  [-l contiguous|zigzag|striped]"
          "  [-b minlen] [-e maxlen] [-f factor] [-H heads] [-K kvheads] [-D dim] [-d bf16|fp16|fp32] [-C 0|1]\n"
          "  [-W window] [-B fwd|bwd|both] [-n iters] [-w warmup] [-1 0|1]\n");
}

bool parse(int argc, char** argv, Options* o) {
  int c;
  while ((c = getopt(argc, argv, "r:g:a:l:b:e:f:H:K:D:d:C:W:B:n:w:1:h")) != -1) {
    switch (c) {
      case 'r': o->ranks = atoi(optarg); break;
      case 'g': o->device = atoi(optarg); break;
      case 'a':
        // The library's own names (attncclAlgoName); anything else runs the ring.
        o->algo = attncclAlgoRing;
        for (int a = 0; a < attncclNumAlgos; ++a) {
          if (!strcmp(optarg, attncclAlgoName(static_cast<attncclAlgo_t>(a)))) o->algo = static_cast<attncclAlgo_t>(a);
        }
        break;
      case 'l':
        o->layout = !strcmp(optarg, "contiguous") ? attncclLayoutContiguous
                    : !strcmp(optarg, "striped") ? attncclLayoutStriped
                                                 : attncclLayoutZigzag;
        break;
      case 'b': o->minLen = parseSize(optarg); break;
      case 'e': o->maxLen = parseSize(optarg); break;
      case 'f': o->factor = std::max<int64_t>(2, atoi(optarg)); break;
      case 'H': o->heads = atoi(optarg); break;
      case 'K': o->kvHeads = atoi(optarg); break;
      case 'D': o->dim = atoi(optarg); break;
      case 'd':
        o->dtype = !strcmp(optarg, "fp16") ? attncclFloat16 : !strcmp(optarg, "fp32") ? attncclFloat32 : attncclBfloat16;
        break;
      case 'C': o->causal = atoi(optarg); break;
      case 'W': o->windowLeft = atoll(optarg); break;
      case 'B':
        o->fwd = strcmp(optarg, "bwd") != 0;
        o->bwd = strcmp(optarg, "fwd") != 0;
        break;
      case 'n': o->iters = std::max(1, atoi(optarg)); break;
      case 'w': o->warmup = std::max(0, atoi(optarg)); break;
      case '1': o->oneRank = atoi(optarg); break;
      default: usage(); return false;
    }
  }
  if (o->kvHeads <= 0) o->kvHeads = o->heads;
  if (o->oneRank < 0) o->oneRank = o->ranks > 1 ? 1 : 0;
  return o->ranks >= 1 && o->heads % o->kvHeads == 0 && o->minLen >= 1 && o->maxLen >= o->minLen;
}

// Visible (query, key) pairs of one sequence: per query an interval of keys.
double visiblePairs(int64_t S, bool causal, int64_t wl) {
  double n = 0;
  for (int64_t i = 0; i < S; ++i) {
    const int64_t lo = wl >= 0 ? std::max<int64_t>(0, i - wl) : 0;
    const int64_t hi = causal ? i : S - 1;
    n += static_cast<double>(hi - lo + 1);
  }
  return n;
}

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const uint64_t gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return gen_ != gen; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  uint64_t gen_ = 0;
};

// Fills n 16-bit (or fp32) values in [-1, 1) from a seed, on the host, then to the device.
void* randomDevice(attncclDataType_t dt, size_t n, uint64_t seed) {
  const size_t es = dt == attncclFloat32 ? 4 : 2;
  std::vector<unsigned char> host(n * es);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const float f = static_cast<float>((x >> 40) & 0xffffff) / 8388608.f - 1.f;
    uint32_t u;
    memcpy(&u, &f, 4);
    if (es == 4) {
      memcpy(&host[4 * i], &f, 4);
    } else if (dt == attncclBfloat16) {
      const uint16_t h = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
      memcpy(&host[2 * i], &h, 2);
    } else {  // fp16 of a value in [-1, 1): exponent rebias, mantissa truncated
      const uint32_t sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xffu;
      const uint16_t h = e < 113 ? static_cast<uint16_t>(sign)
                                 : static_cast<uint16_t>(sign | ((e - 112) << 10) | ((u >> 13) & 0x3ffu));
      memcpy(&host[2 * i], &h, 2);
    }
  }
  void* d = nullptr;
  if (cudaMalloc(&d, host.size()) != cudaSuccess) return nullptr;
  cudaMemcpy(d, host.data(), host.size(), cudaMemcpyHostToDevice);
  return d;
}

struct Timing {
  double fwdUs = 0, bwdUs = 0;
  int bad = 0;
  bool failed = false;
  std::string error;
};

// Runs the sweep point on `ranks` ranks (threads) and returns the slowest rank's times.
Timing runPoint(const Options& o, int ranks, const attncclAttnDesc_t& d) {
  Timing result;
  std::mutex mu;
  attncclUniqueId id;
  if (attncclGetUniqueId(&id) != attncclSuccess) {
    result.failed = true;
    result.error = attncclGetLastError(nullptr);
    return result;
  }
  Barrier barrier(ranks);
  auto body = [&](int rank) {
    auto failWith = [&](const std::string& what) {
      std::lock_guard<std::mutex> lock(mu);
      result.failed = true;
      if (result.error.empty()) result.error = what + ": " + attncclGetLastError(nullptr);
    };
    cudaSetDevice(o.device);
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.device = o.device;
    attncclComm_t comm = nullptr;
    if (attncclCommInitRank(&comm, ranks, id, rank, &cfg) != attncclSuccess) return failWith("init");
    int64_t T = 0;
    attncclAttnLocalTokens(&d, ranks, rank, &T, nullptr);
    const size_t qn = static_cast<size_t>(T) * d.numHeadsQ * d.headDim;
    const size_t kn = static_cast<size_t>(T) * d.numHeadsKV * d.headDim;
    const size_t es = d.dtype == attncclFloat32 ? 4 : 2;
    void* q = randomDevice(d.dtype, qn, 1 + rank);
    void* k = randomDevice(d.dtype, kn, 100 + rank);
    void* v = randomDevice(d.dtype, kn, 200 + rank);
    void* dout = randomDevice(d.dtype, qn, 300 + rank);
    void *out = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
    float* lse = nullptr;
    cudaMalloc(&out, qn * es + 16);
    cudaMalloc(&dq, qn * es + 16);
    cudaMalloc(&dk, kn * es + 16);
    cudaMalloc(&dv, kn * es + 16);
    cudaMalloc(&lse, static_cast<size_t>(T) * d.numHeadsQ * 4 + 16);
    cudaStream_t s;
    cudaStreamCreate(&s);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double times[2] = {0, 0};
    for (int dir = 0; dir < 2; ++dir) {
      if ((dir == 0 && !o.fwd) || (dir == 1 && !o.bwd)) continue;
      if (dir == 1 && !o.fwd) {  // backward needs O and LSE
        if (attncclAttnForward(q, k, v, out, lse, &d, o.algo, comm, s) != attncclSuccess) return failWith("forward");
      }
      auto call = [&]() {
        return dir == 0 ? attncclAttnForward(q, k, v, out, lse, &d, o.algo, comm, s)
                        : attncclAttnBackward(q, k, v, out, lse, dout, dq, dk, dv, &d, o.algo, comm, s);
      };
      for (int i = 0; i < o.warmup; ++i)
        if (call() != attncclSuccess) return failWith(dir == 0 ? "forward" : "backward");
      cudaStreamSynchronize(s);
      barrier.wait();
      cudaEventRecord(e0, s);
      for (int i = 0; i < o.iters; ++i)
        if (call() != attncclSuccess) return failWith(dir == 0 ? "forward" : "backward");
      cudaEventRecord(e1, s);
      if (cudaEventSynchronize(e1) != cudaSuccess) return failWith(cudaGetErrorString(cudaGetLastError()));
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      times[dir] = 1000.0 * ms / o.iters;
      barrier.wait();
    }
    // Non-finite outputs count as bad.
    int bad = 0;
    std::vector<uint16_t> h(std::min<size_t>(qn, 1 << 20));
    if (es == 2 && !h.empty() && cudaMemcpy(h.data(), out, h.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess) {
      for (uint16_t x : h) {
        const bool inf = d.dtype == attncclBfloat16 ? (x & 0x7f80u) == 0x7f80u : (x & 0x7c00u) == 0x7c00u;
        bad += inf;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      result.fwdUs = std::max(result.fwdUs, times[0]);
      result.bwdUs = std::max(result.bwdUs, times[1]);
      result.bad += bad;
    }
    for (void* p : {q, k, v, dout, out, dq, dk, dv}) cudaFree(p);
    cudaFree(lse);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(s);
    attncclCommDestroy(comm);
  };
  std::vector<std::thread> th;
  for (int r = 0; r < ranks; ++r) th.emplace_back(body, r);
  for (auto& t : th) t.join();
  return result;
}

const char* dtypeText(attncclDataType_t t) { return t == attncclFloat32 ? "fp32" : t == attncclFloat16 ? "fp16" : "bf16"; }
const char* layoutText(attncclLayout_t l) {
  return l == attncclLayoutContiguous ? "contig" : l == attncclLayoutStriped ? "striped" : "zigzag";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, o.device) != cudaSuccess) {
    fprintf(stderr, "gpu_attn_perf: no CUDA device %d (%s)\n", o.device, cudaGetErrorString(cudaGetLastError()));
    return 2;
  }
  printf("# gpu_attn_perf on %s (sm_%d%d, %d SMs), %d rank(s), algo %s, layout %s\n", prop.name, prop.major,
         prop.minor, prop.multiProcessorCount, o.ranks, attncclAlgoName(o.algo), layoutText(o.layout));
  printf("# %8s %5s %5s %4s %5s %6s %4s %12s %9s %12s %7s %5s\n", "seqlen", "heads", "kvh", "dim", "dtype", "mask",
         "dir", "time(us)", "TFLOP/s", "1rank(us)", "ratio", "#bad");
  int status = 0;
  for (int64_t S = o.minLen; S <= o.maxLen; S *= o.factor) {
    attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
    d.dtype = o.dtype;
    d.seqLen = S;
    d.numHeadsQ = o.heads;
    d.numHeadsKV = o.kvHeads;
    d.headDim = o.dim;
    d.layout = o.layout;
    d.causal = o.causal;
    d.windowLeft = o.windowLeft;
    const double flopsFwd = 4.0 * visiblePairs(S, o.causal != 0, o.windowLeft) * o.dim * o.heads;
    const Timing t = runPoint(o, o.ranks, d);
    Timing one;
    if (o.oneRank && o.ranks > 1) one = runPoint(o, 1, d);
    if (t.failed || one.failed) {
      printf("  %8lld ERR %s\n", static_cast<long long>(S), (t.failed ? t.error : one.error).c_str());
      status = 1;
      continue;
    }
    for (int dir = 0; dir < 2; ++dir) {
      if ((dir == 0 && !o.fwd) || (dir == 1 && !o.bwd)) continue;
      const double us = dir == 0 ? t.fwdUs : t.bwdUs;
      const double oneUs = dir == 0 ? one.fwdUs : one.bwdUs;
      const double tflops = (dir == 0 ? flopsFwd : 2.5 * flopsFwd) / (us * 1e-6) / 1e12;
      const char* mask = o.causal ? "causal" : o.windowLeft >= 0 ? "window" : "full";
      printf("  %8lld %5d %5d %4d %5s %6s %4s %12.1f %9.1f %12.1f %7.3f %5d\n", static_cast<long long>(S), o.heads,
             o.kvHeads, o.dim, dtypeText(o.dtype), mask, dir == 0 ? "fwd" : "bwd", us, tflops, oneUs,
             oneUs > 0 ? us / oneUs : 0.0, t.bad);
      printf("#result tool=gpu_attn_perf device=\"%s\" ranks=%d algo=%s layout=%s seqlen=%lld heads=%d kvheads=%d "
             "dim=%d dtype=%s mask=%s dir=%s time_us=%.1f tflops=%.1f one_rank_us=%.1f ratio=%.3f bad=%d\n",
             prop.name, o.ranks, attncclAlgoName(o.algo), layoutText(o.layout), static_cast<long long>(S), o.heads,
             o.kvHeads, o.dim, dtypeText(o.dtype), mask, dir == 0 ? "fwd" : "bwd", us, tflops, oneUs,
             oneUs > 0 ? us / oneUs : 0.0, t.bad);
    }
    if (t.bad > 0) status = 1;
  }
  return status;
}

#else

int main() {
  fprintf(stderr, "gpu_attn_perf: this attnccl was built without CUDA\n");
  return 2;
}

#endif
