// alltoall_perf: attncclAllToAll. size = one rank's send (and receive) buffer, P blocks;
// busbw = algbw * (P-1)/P (the block a rank keeps does not cross a link).
//
//   alltoall_perf -r 4 -b 1M -e 64M -f 2
#include "harness/collective.h"

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "alltoall_perf";
  c.description = "attncclAllToAll: block j of rank i's input lands as block i of rank j's output";
  c.blocksPerRank = true;
  c.sendBlocks = 0;  // P blocks
  c.recvBlocks = 0;
  c.busFactor = [](int n) { return static_cast<double>(n - 1) / n; };
  c.expected = [](const perf::ValueCode& code, int rank, int, size_t block, size_t i) {
    return code(static_cast<int>(i / block), rank * block + i % block);
  };
  c.call = [](const void* send, void* recv, size_t block, attncclDataType_t t, const perf::RankInfo& ri) {
    return attncclAllToAll(send, recv, block, t, ri.comm, nullptr);
  };
  return perf::runCollectiveTool(c, argc, argv);
}
