// sendrecv_perf: a ring of point-to-point transfers. In one group every rank sends its buffer to
// rank r+1 and receives rank r-1's; size = one message, busbw = algbw (each rank's link carries
// the message once).
//
//   sendrecv_perf -r 4 -b 1M -e 64M -f 2          (4 ranks as threads)
//   mpirun -np 4 sendrecv_perf -b 1M -e 64M -t shm (4 processes)
#include "harness/collective.h"

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "sendrecv_perf";
  c.description = "ring send/recv: each rank sends to r+1 and receives from r-1 in one group";
  c.blocksPerRank = false;
  c.sendBlocks = 1;
  c.recvBlocks = 1;
  c.busFactor = [](int) { return 1.0; };
  c.expected = [](const perf::ValueCode& code, int rank, int nranks, size_t, size_t i) {
    return code((rank - 1 + nranks) % nranks, i);
  };
  c.call = [](const void* send, void* recv, size_t count, attncclDataType_t t, const perf::RankInfo& ri) {
    const int next = (ri.rank + 1) % ri.nranks, prev = (ri.rank - 1 + ri.nranks) % ri.nranks;
    attncclGroupStart();
    attncclResult_t s = attncclSend(send, count, t, next, ri.comm, nullptr);
    attncclResult_t r = attncclRecv(recv, count, t, prev, ri.comm, nullptr);
    attncclResult_t e = attncclGroupEnd();
    return s != attncclSuccess ? s : r != attncclSuccess ? r : e;
  };
  return perf::runCollectiveTool(c, argc, argv);
}
