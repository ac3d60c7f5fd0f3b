// all_reduce_perf: attncclAllReduce (sum). size = the buffer of one rank (N elements);
// busbw = algbw * 2(P-1)/P, nccl-tests' factor: the bytes a bandwidth-optimal all-reduce moves
// per rank (a reduce-scatter and an all-gather, (P-1)/P N each), per second. The check is exact:
// inputs are small integers whose sums every dtype holds.
//
//   all_reduce_perf -r 4 -b 1M -e 64M -f 2 -d fp32
#include "harness/collective.h"

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "all_reduce_perf";
  c.description = "attncclAllReduce (sum): every rank gets the element-wise sum over ranks";
  c.blocksPerRank = false;
  c.sendBlocks = 1;
  c.recvBlocks = 1;
  c.inPlaceAllowed = true;
  c.summed = true;
  c.busFactor = [](int n) { return 2.0 * (n - 1) / n; };
  c.expected = [](const perf::ValueCode& code, int, int nranks, size_t, size_t i) {
    double sum = 0;
    for (int p = 0; p < nranks; ++p) sum += code(p, i);
    return sum;
  };
  c.call = [](const void* send, void* recv, size_t block, attncclDataType_t t, const perf::RankInfo& ri) {
    return attncclAllReduce(send, recv, block, t, attncclSum, ri.comm, nullptr);
  };
  return perf::runCollectiveTool(c, argc, argv);
}
