#include "harness/launch.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#if ATTNCCL_PERF_MPI
#include <mpi.h>

#include "attnccl_mpi.h"
#endif

namespace perf {
namespace {

bool gMpiActive = false;

attncclConfig_t makeConfig(const Options& opt) {
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.transport = opt.transport == "auto" ? nullptr : opt.transport.c_str();
  cfg.cpuThreads = opt.cpuThreads;
  return cfg;
}

void runOne(const World& world, const Options& opt, attncclComm_t comm, int thread,
            const std::function<void(const RankInfo&)>& body) {
  RankInfo info;
  info.comm = comm;
  info.process = world.process;
  info.processes = world.processes;
  info.thread = thread;
  info.threads = opt.threads;
  info.opt = &opt;
  attncclCommCount(comm, &info.nranks);
  attncclCommUserRank(comm, &info.rank);
  body(info);
  attncclResult_t r = attncclCommDestroy(comm);
  if (r != attncclSuccess) {
    fatal("rank %d: attncclCommDestroy: %s (%s)", info.rank, attncclGetErrorString(r), attncclGetLastError(nullptr));
  }
}

}  // namespace

bool launchedByMpirun() {
  return getenv("OMPI_COMM_WORLD_SIZE") != nullptr || getenv("PMI_SIZE") != nullptr ||
         getenv("PMIX_RANK") != nullptr;
}

bool worldInit(int* argc, char*** argv, World* world, std::string* error) {
  *world = World();
  if (!launchedByMpirun()) return true;
#if ATTNCCL_PERF_MPI
  // Only the main thread calls MPI (the id broadcast and the serial sections).
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    *error = "MPI_Init_thread failed";
    return false;
  }
  gMpiActive = true;
  world->mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &world->process);
  MPI_Comm_size(MPI_COMM_WORLD, &world->processes);
  return true;
#else
  (void)argc;
  (void)argv;
  *error = "started by mpirun, but this tool was built without MPI (ATTNCCL_WITH_MPI)";
  return false;
#endif
}

void worldFinalize(const World& world) {
#if ATTNCCL_PERF_MPI
  if (world.mpi) {
    MPI_Finalize();
    gMpiActive = false;
  }
#else
  (void)world;
#endif
}

void worldSerial(const World& world, const std::function<void()>& fn) {
#if ATTNCCL_PERF_MPI
  if (world.mpi) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (world.process == 0) fn();
    // The others poll a non-blocking barrier with sleeps: MPI's own blocking barrier spins, and
    // with more ranks than cores that spinning would steal the core fn is measured on.
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    int done = 0;
    while (!done) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (!done) usleep(1000);
    }
    return;
  }
#endif
  (void)world;
  fn();
}

void launchRanks(const World& world, const Options& opt, const std::function<void(const RankInfo&)>& body) {
  const int n = opt.threads;
  const int nranks = world.processes * n;
  attncclConfig_t cfg = makeConfig(opt);
#if ATTNCCL_PERF_MPI
  if (world.mpi && n == 1) {
    // One rank per process: exactly what attncclCommInitMpi serves.
    attncclComm_t comm = nullptr;
    attncclResult_t r = attncclCommInitMpi(&comm, MPI_COMM_WORLD, &cfg);
    if (r != attncclSuccess) {
      fatal("process %d: attncclCommInitMpi: %s (%s)", world.process, attncclGetErrorString(r),
            attncclGetLastError(nullptr));
    }
    runOne(world, opt, comm, 0, body);
    return;
  }
#endif
  attncclUniqueId id;
  attncclResult_t idResult = attncclSuccess;
  if (world.process == 0) idResult = attncclGetUniqueId(&id);
#if ATTNCCL_PERF_MPI
  if (world.mpi) {
    // Several ranks per process: one id for the whole world, broadcast once; each thread then
    // calls attncclCommInitRank with rank = process * n + thread.
    int ok = idResult == attncclSuccess;
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (!ok) idResult = attncclSystemError;
  }
#endif
  if (idResult != attncclSuccess) {
    fatal("attncclGetUniqueId: %s (%s)", attncclGetErrorString(idResult), attncclGetLastError(nullptr));
  }
  auto rankThread = [&](int t) {
    attncclComm_t comm = nullptr;
    attncclConfig_t c = cfg;
    int rank = world.process * n + t;
    attncclResult_t r = attncclCommInitRank(&comm, nranks, id, rank, &c);
    if (r != attncclSuccess) {
      fatal("rank %d: attncclCommInitRank: %s (%s)", rank, attncclGetErrorString(r), attncclGetLastError(nullptr));
    }
    runOne(world, opt, comm, t, body);
  };
  if (n == 1) {
    rankThread(0);
    return;
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) threads.emplace_back(rankThread, t);
  for (auto& th : threads) th.join();
}

void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(stdout);
  fflush(stderr);
#if ATTNCCL_PERF_MPI
  if (gMpiActive) MPI_Abort(MPI_COMM_WORLD, 3);
#endif
  // Other rank threads may still be inside the library: leave without running destructors.
  _exit(3);
}

}  // namespace perf
