// Barrier and cross-rank reductions through the attnccl communicator itself (threads and
// processes alike, no MPI needed), and the wall clock the harness times with.
#pragma once

#include <vector>

#include "attnccl.h"
#include "harness/harness.h"

namespace perf {

double wallSeconds();

// Every rank returns after all ranks entered. Fatal on failure.
void barrier(attncclComm_t comm);

// Gathers `mine` (the same length on every rank) from all ranks and reduces each position.
std::vector<Reduced> reduceOverRanks(attncclComm_t comm, const std::vector<double>& mine);

// Ends the run (fatal) with the library's message when r is not attncclSuccess.
void checkResult(attncclResult_t r, attncclComm_t comm, const char* what);

}  // namespace perf
