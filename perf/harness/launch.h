// Launching ranks: threads of this process, or MPI processes x threads under mpirun.
//
// Without mpirun the process holds all ranks as threads (-r N). Under mpirun (detected from the
// launcher's environment) MPI is initialised, every process holds N threads, and rank =
// process * N + thread. MPI carries only the rendezvous (attnccl_mpi.h); timing and reductions
// go through the attnccl communicator itself, so the harness is the same in both cases.
#pragma once

#include <functional>
#include <string>

#include "harness/harness.h"

namespace perf {

struct World {
  bool mpi = false;
  int process = 0, processes = 1;
};

// True when the environment says mpirun (Open MPI, PMI or PMIx) started this process.
bool launchedByMpirun();

// Initialises MPI when launched by mpirun. false (and *error) if it cannot.
bool worldInit(int* argc, char*** argv, World* world, std::string* error);
void worldFinalize(const World& world);

// Runs fn on process 0 while the other processes wait without spinning, so fn has the machine
// to itself (the memcpy ceiling).
void worldSerial(const World& world, const std::function<void()>& fn);

// Creates one communicator per rank and runs body on every rank, each on its own thread (the
// main thread when a process holds one rank); returns when all are done and the communicators
// are destroyed. A failure to create a communicator is fatal.
void launchRanks(const World& world, const Options& opt, const std::function<void(const RankInfo&)>& body);

// Prints the message on stderr and ends the whole run (every process) with status 3.
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace perf
