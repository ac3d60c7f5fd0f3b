// oneway_perf: one-way streams between pairs of ranks (as OSU's osu_bw, one message at a time).
// Even rank r sends its buffer to rank r+1, which receives it; with an odd rank count the last
// rank idles. size = one message, busbw = algbw: one copy of the message per call and pair, so
// busbw / memcpy is the transport's efficiency against a lone single-thread memcpy, with no
// second copier competing for the memory bus (sendrecv_perf's ring has every rank copying at once).
//
//   oneway_perf -r 2 -b 1M -e 64M -f 4               (2 ranks as threads)
//   mpirun -np 2 oneway_perf -b 1M -e 64M -t shm     (2 processes)
//   mpirun -np 2 mpi_bench -o oneway -b 1M -e 64M    (Open MPI: MPI_Send / MPI_Recv)
#include "harness/collective.h"

namespace {
bool paired(int rank, int nranks) { return (rank ^ 1) < nranks; }
}  // namespace

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "oneway_perf";
  c.description = "one-way streams: even rank r sends to r+1, which receives";
  c.blocksPerRank = false;
  c.sendBlocks = 1;
  c.recvBlocks = 1;
  c.busFactor = [](int) { return 1.0; };
  // Receivers hold the sender's block; a sender's (or an idle rank's) receive buffer keeps its poison.
  c.expected = [](const perf::ValueCode& code, int rank, int nranks, size_t, size_t i) {
    return rank % 2 == 1 ? code(rank - 1, i) : code.poison();
  };
  c.call = [](const void* send, void* recv, size_t count, attncclDataType_t t, const perf::RankInfo& ri) {
    if (!paired(ri.rank, ri.nranks)) return attncclSuccess;
    if (ri.rank % 2 == 0) return attncclSend(send, count, t, ri.rank + 1, ri.comm, nullptr);
    return attncclRecv(recv, count, t, ri.rank - 1, ri.comm, nullptr);
  };
  return perf::runCollectiveTool(c, argc, argv);
}
