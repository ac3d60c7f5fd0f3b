// Runs one attention case distributed over P ranks and checks every rank's slice of the
// outputs (O, LSE, dQ, dK, dV) against the fp64 reference over the whole sequence and against
// the library's own single-rank result (same inputs, one rank), with docs/design.md's tolerances.
// Outputs are poisoned before each call so an unwritten element fails.
#pragma once

#include <string>

#include "attnccl.h"
#include "support/attn_case.h"
#include "support/ranks.h"

namespace attnccl_test {

struct DistOptions {
  attncclAlgo_t algo = attncclAlgoRing;
  int nranks = 2;
  attnccl::test::Mode mode = attnccl::test::Mode::kThreads;
  const char* transport = nullptr;  // null: auto
  bool backward = true;
  int cpuThreads = 1;
  int hybridGroupSize = 0;
  // Also compare with the library's one-rank result (computed once per case).
  bool compareSingleRank = true;
};

// "" when every rank's results are within tolerance; else what failed, with the case name.
std::string runDistributed(AttnCase& c, const DistOptions& o);

// The library's single-rank forward (+backward) of the case, cached in the case's process.
struct SingleRankResult {
  std::vector<double> out, lse, dq, dk, dv;
};
const SingleRankResult& singleRank(AttnCase& c);

// One rank's part of runDistributed on a communicator the caller made (any bootstrap, e.g. MPI):
// this rank's slice of the case through `algo`, forward (and backward), checked against the fp64
// reference and, when given, the one-rank result. "" or what failed.
std::string checkRank(AttnCase& c, attncclComm_t comm, attncclAlgo_t algo, bool backward,
                      const SingleRankResult* single);

// What the distributed suites walk: masks (causal, full, causal window, documents, documents
// with a two-sided window), layouts and dtypes.
struct RotationMask {
  const char* name;
  bool causal;
  int64_t wl, wr;
  bool docs;
};
extern const RotationMask kRotationMasks[5];
extern const attncclLayout_t kRotationLayouts[3];
extern const attncclDataType_t kRotationDtypes[3];

// Case i of a rotation for suites that walk world sizes and head counts and let the rest vary:
// mask i % 5, dtype i % 3, layout (i / 5) % 3 of the tables above.
CaseSpec rotatingSpec(int64_t seqLen, int hq, int hkv, int headDim, int i);

}  // namespace attnccl_test
