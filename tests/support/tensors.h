// Host tensors for tests: seeded random contents in fp32/bf16/fp16 (never zeros), viewed as
// doubles, poisoned with NaN patterns before a call so unwritten elements show, and compared by
// relative norm with the per-dtype tolerances of docs/design.md ("Correctness method").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attnccl.h"

namespace attnccl_test {

class Tensor {
 public:
  Tensor() = default;
  Tensor(attncclDataType_t dtype, int64_t numel);

  attncclDataType_t dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  // NULL for an empty tensor, as a caller with no tokens would pass.
  void* data() { return numel_ ? bytes_.data() : nullptr; }
  const void* data() const { return numel_ ? bytes_.data() : nullptr; }

  double get(int64_t i) const;
  void set(int64_t i, double v);  // rounds to the dtype (nearest even)
  std::vector<double> toDouble() const;
  static Tensor fromDouble(attncclDataType_t dtype, const std::vector<double>& values);

 private:
  attncclDataType_t dtype_ = attncclFloat32;
  int64_t numel_ = 0;
  std::vector<unsigned char> bytes_;
};

// Uniform in [-1, 1] with |x| >= 1/64 after rounding to the dtype: never zero.
Tensor randomTensor(attncclDataType_t dtype, int64_t numel, uint64_t seed);
std::vector<float> randomFloats(int64_t n, uint64_t seed, float lo, float hi);

// Fills with quiet NaNs carrying a recognisable payload.
void poison(Tensor& t);
void poison(std::vector<float>& v);

// ||got - want|| / ||want|| (||want|| = 0: ||got||); +inf when got holds a NaN or an inf that
// want does not.
double relNormError(const std::vector<double>& got, const std::vector<double>& want);
// max |got - want| over elements; equal infinities count as 0, a NaN as +inf.
double maxAbsError(const std::vector<double>& got, const std::vector<double>& want);

// Relative-norm tolerance of outputs and gradients stored in dtype: fp32 1e-5, fp16 5e-3,
// bf16 2e-2.
double tolerance(attncclDataType_t dtype);
// Absolute tolerance of the fp32 LSE.
constexpr double kLseTolerance = 1e-4;

// Seed of a test: ATTNCCL_TEST_SEED when set, else fresh from the clock. Print it on failure
// (seedText) so a failing case can be replayed.
uint64_t testSeed();
std::string seedText(uint64_t seed);
// A derived seed for the i-th tensor of a case.
uint64_t subSeed(uint64_t seed, uint64_t i);

std::vector<double> toDouble(const std::vector<float>& v);

}  // namespace attnccl_test
