// Data that encodes its origin, for checking every element of a collective's result.
//
// Element i of rank r's send buffer holds code(r, i): a small integer that every dtype holds
// exactly (fp16 up to 2048, bf16 up to 256, int8 up to 127), shrunk by the rank count when the
// collective sums over ranks so the sums stay exact too. A block that lands at the wrong offset,
// from the wrong rank, or not at all (outputs are poisoned with a value no code takes) shows up
// as wrong elements.
#pragma once

#include <cstddef>
#include <cstdint>

#include "attnccl.h"

namespace perf {

class ValueCode {
 public:
  ValueCode(attncclDataType_t t, int nranks, bool summed);
  double operator()(int rank, size_t i) const {
    return static_cast<double>((static_cast<uint64_t>(rank + 1) * 1009u + i * 13u) % modulus_);
  }
  // A value outside every code and every sum of codes.
  double poison() const { return poison_; }

 private:
  uint64_t modulus_;
  double poison_;
};

void storeValue(void* buf, size_t i, attncclDataType_t t, double v);
double loadValue(const void* buf, size_t i, attncclDataType_t t);

// buf[i] = code(rank, i) for i < n.
void fillCode(void* buf, size_t n, attncclDataType_t t, const ValueCode& code, int rank);
// buf[i] = v for i < n.
void fillValue(void* buf, size_t n, attncclDataType_t t, double v);

}  // namespace perf
