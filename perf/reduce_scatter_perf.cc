// reduce_scatter_perf: attncclReduceScatter (sum). size = the input of one rank (P blocks);
// busbw = algbw * (P-1)/P. The check is exact: inputs are small integers whose sums every
// dtype holds.
//
//   reduce_scatter_perf -r 4 -b 1M -e 64M -f 2 -d bf16
#include "harness/collective.h"

int main(int argc, char** argv) {
  perf::Collective c;
  c.name = "reduce_scatter_perf";
  c.description = "attncclReduceScatter (sum): rank r gets the sum over ranks of their block r";
  c.blocksPerRank = true;
  c.sendBlocks = 0;  // P blocks
  c.recvBlocks = 1;
  c.summed = true;
  c.busFactor = [](int n) { return static_cast<double>(n - 1) / n; };
  c.expected = [](const perf::ValueCode& code, int rank, int nranks, size_t block, size_t i) {
    double sum = 0;
    for (int p = 0; p < nranks; ++p) sum += code(p, rank * block + i);
    return sum;
  };
  c.call = [](const void* send, void* recv, size_t block, attncclDataType_t t, const perf::RankInfo& ri) {
    return attncclReduceScatter(send, recv, block, t, attncclSum, ri.comm, nullptr);
  };
  return perf::runCollectiveTool(c, argc, argv);
}
