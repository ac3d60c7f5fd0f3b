// Helpers of the GPU test suites (tests/cuda): whether a GPU is usable (asked in a forked child,
// so that a test process that later forks ranks has not initialised CUDA itself), device copies
// of host tensors, and a runner of one attention case distributed over ranks that share GPU 0,
// checked like tests/support/dist_case.h (fp64 reference; outputs poisoned before each call).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "attnccl.h"
#include "support/attn_case.h"
#include "support/ranks.h"
#include "support/tensors.h"

namespace attnccl_test {

inline bool gpuAvailable() {
  static int cached = -1;
  if (cached < 0) {
    const pid_t pid = fork();
    if (pid == 0) {
      int n = 0;
      _exit(cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? 0 : 1);
    }
    int status = 0;
    cached = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 1 : 0;
  }
  return cached == 1;
}

#define ATTN_REQUIRE_GPU()                                                  \
  do {                                                                      \
    if (!::attnccl_test::gpuAvailable()) GTEST_SKIP() << "no CUDA device";  \
  } while (0)

// Device memory holding a copy of host bytes (or poisoned with NaN bytes).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_ > 0 && cudaMalloc(&ptr_, bytes_) == cudaSuccess) (void)cudaMemset(ptr_, 0xff, bytes_);
  }
  DeviceBuffer(const void* host, size_t bytes) : DeviceBuffer(bytes) {
    if (ptr_ != nullptr && host != nullptr) (void)cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
  }
  void* get() const { return ptr_; }
  float* f() const { return static_cast<float*>(ptr_); }
  bool download(void* host) const {
    return bytes_ == 0 || cudaMemcpy(host, ptr_, bytes_, cudaMemcpyDeviceToHost) == cudaSuccess;
  }
  void poison() {
    if (ptr_ != nullptr) (void)cudaMemset(ptr_, 0xff, bytes_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline size_t bytesOf(const Tensor& t) {
  return static_cast<size_t>(t.numel()) * (t.dtype() == attncclFloat32 ? 4 : 2);
}

inline Tensor rowsOfTensor(const Tensor& whole, const std::vector<int64_t>& pos, int64_t width) {
  Tensor t(whole.dtype(), static_cast<int64_t>(pos.size()) * width);
  for (size_t i = 0; i < pos.size(); ++i)
    for (int64_t e = 0; e < width; ++e) t.set(static_cast<int64_t>(i) * width + e, whole.get(pos[i] * width + e));
  return t;
}

inline std::vector<double> rowsOfRef(const std::vector<double>& whole, const std::vector<int64_t>& pos,
                                     int64_t width) {
  std::vector<double> out;
  for (int64_t p : pos)
    for (int64_t e = 0; e < width; ++e) out.push_back(whole[p * width + e]);
  return out;
}

inline std::vector<double> lseRowsOf(const std::vector<double>& whole, const std::vector<int64_t>& pos, int H,
                                     int64_t S) {
  std::vector<double> out;
  for (int h = 0; h < H; ++h)
    for (int64_t p : pos) out.push_back(whole[h * S + p]);
  return out;
}

// Relative error of a rank's slice with dist_case's denominator (at least a typical slice's norm).
inline std::string compareSlice(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                                double tol, const std::vector<double>& whole) {
  auto norm = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s);
  };
  double diff = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::isfinite(got[i]) ? got[i] - want[i] : INFINITY;
    diff += d * d;
  }
  diff = std::sqrt(diff);
  const double typical = whole.empty() ? 0 : norm(whole) * std::sqrt(static_cast<double>(want.size()) / whole.size());
  const double denom = std::max(norm(want), typical);
  const double err = denom > 0 ? diff / denom : diff;
  if (!(err <= tol)) return attnccl::test::format("%s relative error %.3g > %.3g; ", what, err, tol);
  return "";
}

inline std::string compareLseSlice(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                                   attncclDataType_t dt) {
  const double tol = dt == attncclFloat32 ? kLseTolerance : 5e-2;
  const double err = maxAbsError(got, want);
  if (!(err <= tol)) return attnccl::test::format("%s max abs error %.3g > %.3g; ", what, err, tol);
  return "";
}

struct GpuDistOptions {
  attncclAlgo_t algo = attncclAlgoRing;
  int nranks = 2;
  attnccl::test::Mode mode = attnccl::test::Mode::kThreads;
  bool backward = true;
  bool lse = true;  // pass an LSE buffer to the forward
  int hybridGroupSize = 0;
};

// Every rank on GPU 0 with its own stream; inputs, outputs and the comparison as dist_case.
inline std::string runDistributedGpu(AttnCase& c, const GpuDistOptions& o) {
  const attncclAttnDesc_t& d = c.desc();
  const RefForward& ref = c.reference();
  const RefGrads* grads = o.backward ? &c.referenceGrads() : nullptr;
  const int Hq = d.numHeadsQ, D = d.headDim;
  const int64_t S = d.seqLen, qRow = static_cast<int64_t>(Hq) * D, kRow = static_cast<int64_t>(d.numHeadsKV) * D;
  const double tol = tolerance(d.dtype);
  std::string err = attnccl::test::runRanks(o.nranks, o.mode, [&](int rank, int n, const attncclUniqueId& id) {
    RK_CHECK(cudaSetDevice(0) == cudaSuccess, "cudaSetDevice(0)");
    attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
    cfg.device = 0;
    cfg.timeoutMs = 60000;
    cfg.hybridGroupSize = o.hybridGroupSize;
    attncclComm_t comm = nullptr;
    RK_OK(attncclCommInitRank(&comm, n, id, rank, &cfg));
    cudaStream_t stream;
    RK_CHECK(cudaStreamCreate(&stream) == cudaSuccess, "cudaStreamCreate");
    int64_t T = 0;
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, nullptr));
    std::vector<int64_t> pos(static_cast<size_t>(T));
    RK_OK(attncclAttnLocalTokens(&d, n, rank, &T, pos.data()));
    Tensor q = rowsOfTensor(c.q(), pos, qRow), k = rowsOfTensor(c.k(), pos, kRow), v = rowsOfTensor(c.v(), pos, kRow);
    Tensor dout = rowsOfTensor(c.dout(), pos, qRow);
    Tensor out(d.dtype, T * qRow), dq(d.dtype, T * qRow), dk(d.dtype, T * kRow), dv(d.dtype, T * kRow);
    std::vector<float> lse(static_cast<size_t>(T) * Hq);
    DeviceBuffer gq(q.data(), bytesOf(q)), gk(k.data(), bytesOf(k)), gv(v.data(), bytesOf(v));
    DeviceBuffer gdo(dout.data(), bytesOf(dout)), gout(bytesOf(out)), glse(lse.size() * 4);
    DeviceBuffer gdq(bytesOf(dq)), gdk(bytesOf(dk)), gdv(bytesOf(dv));
    RK_OK(attncclAttnForward(gq.get(), gk.get(), gv.get(), gout.get(), o.lse ? glse.f() : nullptr, &d, o.algo, comm,
                             stream));
    RK_CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "forward: %s", cudaGetErrorString(cudaGetLastError()));
    RK_CHECK(gout.download(out.data()) && glse.download(lse.data()), "download");
    std::string bad;
    bad += compareSlice("O vs fp64", out.toDouble(), rowsOfRef(ref.out, pos, qRow), tol, ref.out);
    if (o.lse) bad += compareLseSlice("LSE vs fp64", toDouble(lse), lseRowsOf(ref.lse, pos, Hq, S), d.dtype);
    if (o.backward && o.lse) {
      RK_OK(attncclAttnBackward(gq.get(), gk.get(), gv.get(), gout.get(), glse.f(), gdo.get(), gdq.get(), gdk.get(),
                                gdv.get(), &d, o.algo, comm, stream));
      RK_CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "backward: %s", cudaGetErrorString(cudaGetLastError()));
      RK_CHECK(gdq.download(dq.data()) && gdk.download(dk.data()) && gdv.download(dv.data()), "download");
      bad += compareSlice("dQ vs fp64", dq.toDouble(), rowsOfRef(grads->dq, pos, qRow), tol, grads->dq);
      bad += compareSlice("dK vs fp64", dk.toDouble(), rowsOfRef(grads->dk, pos, kRow), tol, grads->dk);
      bad += compareSlice("dV vs fp64", dv.toDouble(), rowsOfRef(grads->dv, pos, kRow), tol, grads->dv);
    }
    RK_OK(attncclCommDestroy(comm));
    (void)cudaStreamDestroy(stream);
    return bad;
  });
  if (err.empty()) return "";
  return attnccl::test::format("%s with %d ranks on GPU 0 (%s): ", attncclAlgoName(o.algo), o.nranks,
                               attnccl::test::modeName(o.mode)) +
         c.name() + "\n" + err;
}

}  // namespace attnccl_test
