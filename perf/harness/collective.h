// Building-block collective tools (sendrecv_perf, allgather_perf, ...) on the harness: the
// nccl-tests columns, sizes, buffers and the element-wise check; a tool only says how its
// collective is called, what lands where, and its bus-bandwidth factor.
//
// Sizes follow nccl-tests: the size column is the bytes of the larger buffer of one rank (one
// message for sendrecv; all P blocks for allgather's output, reduce-scatter's input and
// all-to-all's buffers), rounded down to a whole number of elements per block.
// algbw = size / time; busbw = algbw * busFactor(P), so busbw is comparable to a link's (or a
// memcpy's) bandwidth whatever the rank count.
#pragma once

#include <functional>
#include <string>

#include "harness/harness.h"
#include "harness/values.h"

namespace perf {

struct Collective {
  std::string name;         // "allgather_perf"
  std::string description;
  bool blocksPerRank = true;  // size = P blocks (false: size = one block, e.g. sendrecv)
  int sendBlocks = 1;         // blocks in the send buffer: 1, or 0 meaning P
  int recvBlocks = 1;         // blocks in the receive buffer: 1, or 0 meaning P
  bool summed = false;        // the result sums codes over ranks (reduce-scatter)
  // -I 1 runs it in place: one buffer per rank, holding the send data before the call and the
  // result after (sendbuff == recvbuff), as MPI's one-buffer MPI_Bcast. For collectives whose
  // send and receive buffers have the same size (broadcast, all-reduce).
  bool inPlaceAllowed = false;
  std::function<double(int nranks)> busFactor;
  // What element i of `rank`'s receive buffer must hold; code(r, j) is element j of rank r's
  // send buffer. block = elements per block.
  std::function<double(const ValueCode& code, int rank, int nranks, size_t block, size_t i)> expected;
  // One call of the collective; block = elements per block.
  std::function<attncclResult_t(const void* send, void* recv, size_t block, attncclDataType_t t, const RankInfo& ri)>
      call;
};

// main() of a building-block tool.
int runCollectiveTool(const Collective& coll, int argc, char** argv);

}  // namespace perf
