// Ulysses (head all-to-all) attention: sequence-sharded Q/K/V become head-sharded tensors over
// the whole sequence, each member attends on its heads, and the results go back. The formula,
// the pipeline and the communication volume are in ulysses.cc.
#pragma once

#include "attn/algos/head_exchange.h"
#include "attn/executor.h"
#include "attn/tensors.h"
#include "comm/comm.h"

namespace attnccl {
namespace attn {

// Over the communicator, ranks holding the descriptor's layout.
attncclResult_t ulyssesForward(attncclComm* comm, const AttnShape& s, const FwdTensors& t);
attncclResult_t ulyssesBackward(attncclComm* comm, const AttnShape& s, const BwdTensors& t);

// Over any group: ctx.engine's ranks 0..G-1 are g's members, ctx.rank = g.self; the tensors hold
// this member's tokens (g.rows[self]) with every head.
attncclResult_t ulyssesForward(const ExecContext& ctx, const HeadGroup& g, const AttnShape& s, const FwdTensors& t);
attncclResult_t ulyssesBackward(const ExecContext& ctx, const HeadGroup& g, const AttnShape& s, const BwdTensors& t);

// Pipeline chunks per member for G members: min(4, ceil(Hq / G)).
int ulyssesChunks(const AttnShape& s, int members);

// Payload bytes a rank sends and receives in one Ulysses call (the formula of ulysses.cc), for
// cost models; the tests hold the byte counters to an independent transcription of it.
struct HeadVolume {
  uint64_t sent = 0, recv = 0;
};
HeadVolume ulyssesVolume(const AttnShape& s, int nranks, int rank, bool backward);

}  // namespace attn
}  // namespace attnccl
