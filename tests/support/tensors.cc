#include "support/tensors.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "core/dtype.h"

namespace attnccl_test {

using attnccl::bf16ToFloat;
using attnccl::floatToBf16;
using attnccl::floatToFp16;
using attnccl::fp16ToFloat;

Tensor::Tensor(attncclDataType_t dtype, int64_t numel)
    : dtype_(dtype), numel_(numel), bytes_(static_cast<size_t>(numel) * attnccl::dtypeSize(dtype)) {}

double Tensor::get(int64_t i) const {
  if (dtype_ == attncclFloat32) {
    float f;
    memcpy(&f, bytes_.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, bytes_.data() + 2 * i, 2);
  return dtype_ == attncclBfloat16 ? bf16ToFloat(h) : fp16ToFloat(h);
}

void Tensor::set(int64_t i, double v) {
  float f = static_cast<float>(v);
  if (dtype_ == attncclFloat32) {
    memcpy(bytes_.data() + 4 * i, &f, 4);
    return;
  }
  uint16_t h = dtype_ == attncclBfloat16 ? floatToBf16(f) : floatToFp16(f);
  memcpy(bytes_.data() + 2 * i, &h, 2);
}

std::vector<double> Tensor::toDouble() const {
  std::vector<double> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[i] = get(i);
  return v;
}

Tensor Tensor::fromDouble(attncclDataType_t dtype, const std::vector<double>& values) {
  Tensor t(dtype, static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) t.set(static_cast<int64_t>(i), values[i]);
  return t;
}

Tensor randomTensor(attncclDataType_t dtype, int64_t numel, uint64_t seed) {
  Tensor t(dtype, numel);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int64_t i = 0; i < numel; ++i) {
    double x;
    do {
      t.set(i, u(rng));
      x = t.get(i);
    } while (std::fabs(x) < 1.0 / 64);
  }
  return t;
}

std::vector<float> randomFloats(int64_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

void poison(Tensor& t) {
  // Quiet NaNs with a payload: 0x7fc0dead (fp32), 0x7fde (bf16), 0x7ede (fp16).
  for (int64_t i = 0; i < t.numel(); ++i) {
    unsigned char* p = static_cast<unsigned char*>(t.data()) + i * static_cast<int64_t>(attnccl::dtypeSize(t.dtype()));
    if (t.dtype() == attncclFloat32) {
      uint32_t u = 0x7fc0deadu;
      memcpy(p, &u, 4);
    } else {
      uint16_t h = t.dtype() == attncclBfloat16 ? 0x7fdeu : 0x7edeu;
      memcpy(p, &h, 2);
    }
  }
}

void poison(std::vector<float>& v) {
  uint32_t u = 0x7fc0deadu;
  float f;
  memcpy(&f, &u, 4);
  for (auto& x : v) x = f;
}

double relNormError(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || (std::isinf(got[i]) && got[i] != want[i])) return std::numeric_limits<double>::infinity();
    if (std::isinf(want[i])) {
      if (got[i] != want[i]) return std::numeric_limits<double>::infinity();
      continue;  // equal infinities
    }
    double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

double maxAbsError(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) return std::numeric_limits<double>::infinity();
    if (got[i] == want[i]) continue;  // equal infinities included
    m = std::max(m, std::fabs(got[i] - want[i]));
  }
  return m;
}

double tolerance(attncclDataType_t dtype) {
  switch (dtype) {
    case attncclFloat16: return 5e-3;
    case attncclBfloat16: return 2e-2;
    default: return 1e-5;
  }
}

uint64_t testSeed() {
  if (const char* s = getenv("ATTNCCL_TEST_SEED")) return strtoull(s, nullptr, 0);
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

std::string seedText(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (replay with ATTNCCL_TEST_SEED=" + std::to_string(seed) + ")";
}

uint64_t subSeed(uint64_t seed, uint64_t i) {
  // splitmix64 of (seed, i): independent streams per tensor.
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<double> toDouble(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace attnccl_test
