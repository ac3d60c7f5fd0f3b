// Per-thread clocks of the transport engine (transport/engine.cc): the seconds the calling thread
// has spent inside Engine::waitAll (wait) and inside Engine::isend/irecv (post) since it started,
// all engines together. The attention perf tools subtract them (and the tile clock,
// attn/tile_clock.h) from a call's wall time to report the host overhead of a call
// (perf/harness/attn_tool.h, -O 1). Two clock reads per wait and per post.
#pragma once

namespace attnccl {

double waitSecondsThisThread();
double postSecondsThisThread();

}  // namespace attnccl
