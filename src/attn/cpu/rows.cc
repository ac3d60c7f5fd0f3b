// Row-wise helpers of attn/tile.h: Delta for the backward, accumulator reset and merge, and
// conversions between fp32 and the storage dtype.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attn/cpu/rowops.h"
#include "attn/cpu/staging.h"
#include "attn/tile.h"
#include "core/dtype.h"

namespace attnccl {
namespace attn {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int64_t kRowsPerItem = 64;

int64_t itemsOf(int64_t n) { return (n + kRowsPerItem - 1) / kRowsPerItem; }

}  // namespace

void computeDelta(attncclDataType_t dtype, const void* out, const void* dout, int64_t n, int numHeads, int headDim,
                  int64_t ld, float* delta, int64_t lddelta, ThreadPool& pool) {
  computeDelta(dtype, out, ld, headDim, dout, ld, headDim, n, numHeads, headDim, delta, lddelta, pool);
}

void computeDelta(attncclDataType_t dtype, const void* out, int64_t ldOut, int64_t hsOut, const void* dout,
                  int64_t ldDout, int64_t hsDout, int64_t n, int numHeads, int headDim, float* delta,
                  int64_t lddelta, ThreadPool& pool) {
  const cpu::RowOps& ops = cpu::rowOps();
  const size_t esz = dtypeSize(dtype);
  const char* ob = static_cast<const char*>(out);
  const char* db = static_cast<const char*>(dout);
  pool.run(itemsOf(n), [&](int64_t item, int) {
    cpu::ThreadScratch& t = cpu::threadScratch();
    t.q.resize(2 * static_cast<size_t>(headDim));
    float* o = t.q.data();
    float* d = o + headDim;
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t i = item * kRowsPerItem; i < r1; ++i) {
      for (int h = 0; h < numHeads; ++h) {
        ops.toFloat(dtype, ob + static_cast<size_t>(i * ldOut + h * hsOut) * esz, o, headDim);
        ops.toFloat(dtype, db + static_cast<size_t>(i * ldDout + h * hsDout) * esz, d, headDim);
        delta[h * lddelta + i] = ops.dot(o, d, headDim);
      }
    }
  });
}

void clearAccumulator(float* o, int64_t n, int numHeads, int headDim, int64_t ldo, float* lse, int64_t ldlse) {
  const int64_t width = static_cast<int64_t>(numHeads) * headDim;
  for (int64_t i = 0; i < n; ++i) std::fill(o + i * ldo, o + i * ldo + width, 0.f);
  for (int h = 0; h < numHeads; ++h) std::fill(lse + h * ldlse, lse + h * ldlse + n, -kInf);
}

void mergeAccumulators(float* o, float* lse, const float* oB, const float* lseB, int64_t n, int numHeads,
                       int headDim, int64_t ldo, int64_t ldlse, ThreadPool& pool) {
  pool.run(itemsOf(n), [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int h = 0; h < numHeads; ++h) {
      for (int64_t i = item * kRowsPerItem; i < r1; ++i) {
        const float lb = lseB[h * ldlse + i];
        if (lb == -kInf) continue;  // B holds nothing
        float& la = lse[h * ldlse + i];
        float* orow = o + i * ldo + static_cast<int64_t>(h) * headDim;
        const float* brow = oB + i * ldo + static_cast<int64_t>(h) * headDim;
        if (la == -kInf) {
          std::copy(brow, brow + headDim, orow);
          la = lb;
          continue;
        }
        // (o, la) and (oB, lb) are softmax-normalised over disjoint key sets: weigh by their sums.
        const float m = std::max(la, lb);
        const float wa = std::exp(la - m), wb = std::exp(lb - m);
        const float sum = wa + wb;
        const float ca = wa / sum, cb = wb / sum;
        for (int d = 0; d < headDim; ++d) orow[d] = orow[d] * ca + brow[d] * cb;
        la = m + std::log(sum);
      }
    }
  });
}

void storeRows(attncclDataType_t dtype, const float* src, int64_t ldsrc, void* dst, int64_t lddst, int64_t n,
               int64_t width, ThreadPool& pool) {
  const cpu::RowOps& ops = cpu::rowOps();
  const size_t esz = dtypeSize(dtype);
  char* db = static_cast<char*>(dst);
  pool.run(itemsOf(n), [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t i = item * kRowsPerItem; i < r1; ++i)
      ops.fromFloat(dtype, src + i * ldsrc, db + static_cast<size_t>(i * lddst) * esz, width);
  });
}

void loadRows(attncclDataType_t dtype, const void* src, int64_t ldsrc, float* dst, int64_t lddst, int64_t n,
              int64_t width, ThreadPool& pool) {
  const cpu::RowOps& ops = cpu::rowOps();
  const size_t esz = dtypeSize(dtype);
  const char* sb = static_cast<const char*>(src);
  pool.run(itemsOf(n), [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t i = item * kRowsPerItem; i < r1; ++i)
      ops.toFloat(dtype, sb + static_cast<size_t>(i * ldsrc) * esz, dst + i * lddst, width);
  });
}

void mergeSinks(float* o, float* lse, int64_t n, int numHeads, int headDim, int64_t ldo, int64_t ldlse,
                const float* sinks) {
  for (int h = 0; h < numHeads; ++h) {
    const float sink = sinks[h];
    for (int64_t i = 0; i < n; ++i) {
      float& l = lse[h * ldlse + i];
      float* row = o + i * ldo + static_cast<int64_t>(h) * headDim;
      if (l == -kInf) {
        std::fill(row, row + headDim, 0.f);
        l = sink;
        continue;
      }
      const float m = std::max(l, sink);
      const float total = m + std::log(std::exp(l - m) + std::exp(sink - m));
      const float c = std::exp(l - total);
      for (int d = 0; d < headDim; ++d) row[d] *= c;
      l = total;
    }
  }
}

void storeHeads(attncclDataType_t dtype, const float* src, int64_t ldsrc, void* dst, int64_t lddst, int64_t hsdst,
                int64_t n, int numHeads, int headDim, ThreadPool& pool) {
  const cpu::RowOps& ops = cpu::rowOps();
  const size_t esz = dtypeSize(dtype);
  char* db = static_cast<char*>(dst);
  pool.run(itemsOf(n), [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t i = item * kRowsPerItem; i < r1; ++i)
      for (int h = 0; h < numHeads; ++h)
        ops.fromFloat(dtype, src + i * ldsrc + static_cast<int64_t>(h) * headDim,
                      db + static_cast<size_t>(i * lddst + h * hsdst) * esz, headDim);
  });
}

void copyHeads(size_t elemSize, const void* src, int64_t ldsrc, int64_t hssrc, void* dst, int64_t lddst,
               int64_t hsdst, int64_t n, int numHeads, int headDim, ThreadPool& pool) {
  const char* sb = static_cast<const char*>(src);
  char* db = static_cast<char*>(dst);
  const size_t rowBytes = static_cast<size_t>(headDim) * elemSize;
  pool.run(itemsOf(n), [&](int64_t item, int) {
    const int64_t r1 = std::min(n, (item + 1) * kRowsPerItem);
    for (int64_t i = item * kRowsPerItem; i < r1; ++i)
      for (int h = 0; h < numHeads; ++h)
        memcpy(db + static_cast<size_t>(i * lddst + h * hsdst) * elemSize,
               sb + static_cast<size_t>(i * ldsrc + h * hssrc) * elemSize, rowBytes);
  });
}

}  // namespace attn
}  // namespace attnccl
