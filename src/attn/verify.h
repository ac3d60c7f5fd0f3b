// Checks a schedule without running it (docs/design.md, "A schedule is data"):
//   - every transfer has its counterpart in the peer's schedule, in the same round;
//   - every item is present where and when it is sent or computed on (local, or arrived in an
//     earlier round, or produced by an earlier task);
//   - no accumulator is written while it is being sent;
//   - every query row that sees some key of a rank is computed against that rank's keys exactly
//     once (so every visible pair exactly once), and no task covers rows twice;
//   - every partial result (Out, DQ, DKV) reaches the rank that owns its tokens, exactly once.
#pragma once

#include <string>

#include "attn/schedule.h"

namespace attnccl {
namespace attn {

// "" when the schedule is sound, else the first problem found, naming rank, round and item.
std::string verifySchedule(const Problem& problem, const Schedule& schedule);

}  // namespace attn
}  // namespace attnccl
