// allgather_perf: attncclAllGather. size = the gathered output of one rank (P blocks);
// busbw = algbw * (P-1)/P, the bytes each rank receives per second.
//
//   allgather_perf -r 4 -b 1M -e 64M -f 2
#include "harness/collective.h"

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "allgather_perf";
  c.description = "attncclAllGather: rank r's block lands at block r of every rank's output";
  c.blocksPerRank = true;
  c.sendBlocks = 1;
  c.recvBlocks = 0;  // P blocks
  c.busFactor = [](int n) { return static_cast<double>(n - 1) / n; };
  c.expected = [](const perf::ValueCode& code, int, int, size_t block, size_t i) {
    return code(static_cast<int>(i / block), i % block);
  };
  c.call = [](const void* send, void* recv, size_t block, attncclDataType_t t, const perf::RankInfo& ri) {
    return attncclAllGather(send, recv, block, t, ri.comm, nullptr);
  };
  return perf::runCollectiveTool(c, argc, argv);
}
