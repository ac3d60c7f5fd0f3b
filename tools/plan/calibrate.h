// What the planner's this-machine preset measures beyond the library's calibration
// (attn/tune/tuner.h measureCalibration: full tiles and memcpy): the masked work of the CPU tiles.
// A causal 512-token tile takes longer than its visible pairs at the full tile's rate (timed in
// the same loop), because the blocks on the diagonal are computed and then masked; the excess,
// in pairs per query row (and head), is the cost model's fwdMaskRowPairs / bwdMaskRowPairs.
#pragma once

#include "core/thread_pool.h"

namespace attnccl {
namespace plan {

struct MaskWaste {
  double fwdRowPairs = 0, bwdRowPairs = 0;
};

MaskWaste measureMaskWaste(ThreadPool& pool);

}  // namespace plan
}  // namespace attnccl
