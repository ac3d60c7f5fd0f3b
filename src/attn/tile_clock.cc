#include "attn/tile_clock.h"

namespace attnccl {
namespace attn {
namespace {

thread_local double tTileSeconds = 0;

}  // namespace

double tileSecondsThisThread() { return tTileSeconds; }

TileClock::~TileClock() {
  tTileSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

}  // namespace attn
}  // namespace attnccl
