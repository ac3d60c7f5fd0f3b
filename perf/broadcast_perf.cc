// broadcast_perf: attncclBroadcast from rank 0. size = the buffer (N elements); busbw = algbw,
// nccl-tests' factor for broadcast (every rank receives N once).
//
//   broadcast_perf -r 4 -b 1M -e 64M -f 2
#include "harness/collective.h"

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "broadcast_perf";
  c.description = "attncclBroadcast from rank 0: every rank gets rank 0's buffer";
  c.blocksPerRank = false;
  c.sendBlocks = 1;
  c.recvBlocks = 1;
  c.inPlaceAllowed = true;
  c.busFactor = [](int) { return 1.0; };
  c.expected = [](const perf::ValueCode& code, int, int, size_t, size_t i) { return code(0, i); };
  c.call = [](const void* send, void* recv, size_t block, attncclDataType_t t, const perf::RankInfo& ri) {
    return attncclBroadcast(send, recv, block, t, 0, ri.comm, nullptr);
  };
  return perf::runCollectiveTool(c, argc, argv);
}
