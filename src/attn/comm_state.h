// Per-communicator state of the attention collectives: scratch memory reused across calls and
// the tuner's calibration. Created with the communicator, destroyed with it.
#pragma once

namespace attnccl {
namespace attn {

struct AttnCommState {};

}  // namespace attn
}  // namespace attnccl
