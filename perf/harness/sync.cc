#include "harness/sync.h"

#include <algorithm>
#include <chrono>

#include "harness/launch.h"

namespace perf {

double wallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void checkResult(attncclResult_t r, attncclComm_t comm, const char* what) {
  if (r == attncclSuccess) return;
  int rank = -1;
  if (comm) attncclCommUserRank(comm, &rank);
  fatal("rank %d: %s: %s (%s)", rank, what, attncclGetErrorString(r), attncclGetLastError(comm));
}

void barrier(attncclComm_t comm) {
  // An all-gather of one byte: no rank can finish it before every rank has started it.
  int n = 1;
  attncclCommCount(comm, &n);
  char mine = 1;
  std::vector<char> all(n);
  checkResult(attncclAllGather(&mine, all.data(), 1, attncclInt8, comm, nullptr), comm, "barrier");
}

std::vector<Reduced> reduceOverRanks(attncclComm_t comm, const std::vector<double>& mine) {
  int n = 1;
  attncclCommCount(comm, &n);
  const size_t k = mine.size();
  std::vector<Reduced> out(k);
  if (k == 0) return out;
  std::vector<double> all(k * n);
  checkResult(attncclAllGather(mine.data(), all.data(), k, attncclFloat64, comm, nullptr), comm,
              "reduction over ranks");
  for (size_t i = 0; i < k; ++i) {
    Reduced& r = out[i];
    r.min = r.max = all[i];
    r.sum = 0;
    for (int p = 0; p < n; ++p) {
      double v = all[p * k + i];
      r.min = std::min(r.min, v);
      r.max = std::max(r.max, v);
      r.sum += v;
    }
  }
  return out;
}

}  // namespace perf
