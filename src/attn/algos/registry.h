// The one table of distributed attention algorithms. Every place that used to switch on
// attncclAlgo_t (the name and its parser, the CPU dispatch, the CUDA executor's program
// builder, the cost model and with it the automatic choice and the planner, the schedule tests)
// looks a row up here or walks the rows, so a new algorithm is one row plus the file that
// implements it.
//
// Rows are of three kinds:
//   token schedule  a pure schedule (attn/schedule.h) of token items: ring, pass-Q, allgather.
//                   The schedule builder is all such a row needs; the CPU executor runs it, the
//                   device program is compiled from it and the cost model replays it.
//   head exchange   sequence <-> head all-to-all around local attention (Ulysses): no schedule;
//                   the row brings its own runners, cost model and device program.
//   two level       a head exchange inside groups and a token schedule across them (hybrid).
// A null runner, predictor or device program stands for that default: the row's schedule.
#pragma once

#include <vector>

#include "attn/schedule.h"
#include "attn/tensors.h"
#include "attnccl.h"

namespace attnccl {
namespace attn {

struct ClusterModel;
struct Prediction;
namespace gpu {
struct DevProgram;
}

enum class AlgoKind { kTokenSchedule, kHeadExchange, kTwoLevel };
const char* algoKindName(AlgoKind k);

struct AlgoEntry {
  attncclAlgo_t algo;
  const char* name;  // attncclAlgoName's answer and what ATTNCCL_ALGO accepts
  AlgoKind kind;
  // Every rank's rounds on a problem; null when the algorithm has no token schedule.
  Schedule (*schedule)(const Problem& p, bool backward);
  // CPU communicators of several ranks. Null: run `schedule` on the executor.
  attncclResult_t (*forward)(attncclComm* comm, const AttnShape& s, const FwdTensors& t);
  attncclResult_t (*backward)(attncclComm* comm, const AttnShape& s, const BwdTensors& t);
  // Predicted time and volume of one call (attn/tune/cost_model.h); hybridGroup is the hybrid's
  // group size on that communicator. Null: `schedule` replayed by predictSchedule.
  Prediction (*predict)(const Problem& p, bool backward, const ClusterModel& m, int hybridGroup);
  // Rank `rank`'s program on a CUDA communicator (attn/program). Null: `schedule` compiled.
  gpu::DevProgram (*deviceProgram)(const Problem& p, bool backward, int rank, int hybridGroup);
};

// Every algorithm in enum order (attncclAlgoAuto is not one: it picks among these). The order
// matters to the automatic choice: on a near tie the earlier row wins.
const std::vector<AlgoEntry>& algorithms();
// The row of algo; null for attncclAlgoAuto and values outside the enum.
const AlgoEntry* findAlgorithm(attncclAlgo_t algo);
// Parses a name ("ring", ..., or "auto"), case-insensitively; false when unknown.
bool parseAlgoName(const char* name, attncclAlgo_t* algo);
// "ring, passq, allgather, ulysses or hybrid", for messages.
const char* algoNameList();

// The row's entries with their defaults filled in.
Prediction predictAlgorithm(const AlgoEntry& a, const Problem& p, bool backward, const ClusterModel& m,
                            int hybridGroup);
gpu::DevProgram deviceProgramOf(const AlgoEntry& a, const Problem& p, bool backward, int rank, int hybridGroup);
// A token schedule compiled into rank `rank`'s device program (every rank's plan is needed: a
// sender writes into its receivers' slots).
gpu::DevProgram scheduleProgram(const Problem& p, const Schedule& s, int rank);

}  // namespace attn
}  // namespace attnccl
