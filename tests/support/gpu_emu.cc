#include "support/gpu_emu.h"

#include <ucontext.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "attn/gpu/portable.h"
#include "core/dtype.h"

namespace attnccl_test {
namespace emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;

struct Copy {
  void* dst;
  const void* src;
  bool valid;
};

struct Lane {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  int tid = 0;
  bool done = false;
  std::vector<Copy> open;               // cp.async issued since the last commit
  std::deque<std::vector<Copy>> groups;  // committed, not yet waited for
};

struct Barrier {
  int count = 0;
  uint64_t gen = 0;
};

// One 64-byte mailbox per lane for warp collectives.
struct Warp {
  Barrier bar;
  unsigned char box[32][64];
};

struct Block {
  int bx = 0, by = 0, gx = 0, threads = 0;
  std::vector<Lane> lanes;
  std::vector<Warp> warps;
  Barrier bar;
  const std::function<void(char*)>* body = nullptr;
  char* smem = nullptr;
  ucontext_t sched;
  int cur = -1;
  uint64_t events = 0;  // barrier arrivals and finished threads: progress for deadlock detection
  std::string error;
};

Block* gBlock = nullptr;
uint64_t gSwitches = 0;

Lane& me() { return gBlock->lanes[gBlock->cur]; }

void yield() {
  ++gSwitches;
  Lane& l = me();
  swapcontext(&l.ctx, &gBlock->sched);
}

void arrive(Barrier& b, int needed) {
  const uint64_t gen = b.gen;
  ++gBlock->events;
  if (++b.count == needed) {
    b.count = 0;
    ++b.gen;
    return;
  }
  while (b.gen == gen) yield();
}

Warp& myWarp() { return gBlock->warps[me().tid / 32]; }
int myLane() { return me().tid % 32; }

// Every lane deposits `bytes` of `in`, then reads what it needs, then all leave together (so a
// fast lane's next collective cannot overwrite a mailbox a slow lane still reads).
template <typename F>
void collective(const void* in, size_t bytes, F read) {
  Warp& w = myWarp();
  memcpy(w.box[myLane()], in, bytes);
  arrive(w.bar, 32);
  read(w);
  arrive(w.bar, 32);
}

void entry() {
  Block* b = gBlock;
  (*b->body)(b->smem);
  Lane& l = me();
  if (!l.open.empty() || !l.groups.empty()) {
    if (b->error.empty()) b->error = "a thread finished with cp.async copies never waited for";
  }
  l.done = true;
  ++b->events;
  swapcontext(&l.ctx, &b->sched);
}

std::string runBlock(Block& b) {
  gBlock = &b;
  for (int t = 0; t < b.threads; ++t) {
    Lane& l = b.lanes[t];
    l.tid = t;
    l.done = false;
    l.open.clear();
    l.groups.clear();
    if (!l.stack) l.stack.reset(new char[kStackBytes]);
    getcontext(&l.ctx);
    l.ctx.uc_stack.ss_sp = l.stack.get();
    l.ctx.uc_stack.ss_size = kStackBytes;
    l.ctx.uc_link = nullptr;
    makecontext(&l.ctx, entry, 0);
  }
  int live = b.threads;
  while (live > 0) {
    const uint64_t before = b.events;
    for (int t = 0; t < b.threads; ++t) {
      if (b.lanes[t].done) continue;
      b.cur = t;
      ++gSwitches;
      swapcontext(&b.sched, &b.lanes[t].ctx);
      if (b.lanes[t].done) --live;
    }
    if (live > 0 && b.events == before) {
      gBlock = nullptr;
      return "deadlock: every live thread waits on a barrier or warp collective that cannot complete";
    }
  }
  gBlock = nullptr;
  return b.error;
}

}  // namespace

std::string launch(int gx, int gy, int threads, size_t smemBytes, const std::function<void(char*)>& body) {
  if (threads <= 0 || threads % 32 != 0) return "threads must be a positive multiple of 32";
  Block b;
  b.gx = gx;
  b.threads = threads;
  b.lanes.resize(threads);
  b.warps.resize(threads / 32);
  b.body = &body;
  std::vector<char> smem(smemBytes + 128);
  for (int y = 0; y < gy; ++y) {
    for (int x = 0; x < gx; ++x) {
      memset(smem.data(), 0xff, smem.size());  // NaN in every float format
      b.smem = smem.data();
      b.bx = x;
      b.by = y;
      b.bar = Barrier();
      for (Warp& w : b.warps) w.bar = Barrier();
      std::string err = runBlock(b);
      if (!err.empty()) return err + " (block " + std::to_string(x) + "," + std::to_string(y) + ")";
    }
  }
  return "";
}

uint64_t switches() { return gSwitches; }

}  // namespace emu
}  // namespace attnccl_test

// The primitives of attn/gpu/portable.h.
namespace attnccl {
namespace attn {
namespace gpu {

using attnccl_test::emu::gBlock;

int threadIdxX() { return attnccl_test::emu::me().tid; }
int blockIdxX() { return gBlock->bx; }
int blockIdxY() { return gBlock->by; }
int gridDimX() { return gBlock->gx; }
void syncThreads() { attnccl_test::emu::arrive(gBlock->bar, gBlock->threads); }
void syncWarp() { attnccl_test::emu::arrive(attnccl_test::emu::myWarp().bar, 32); }

float shflXor(float v, int mask) {
  float out = 0.f;
  const int lane = attnccl_test::emu::myLane();
  attnccl_test::emu::collective(&v, sizeof v, [&](attnccl_test::emu::Warp& w) {
    memcpy(&out, w.box[lane ^ mask], sizeof out);
  });
  return out;
}

void atomicAddF(float* p, float v) { *p += v; }

// ldmatrix .x4: lane l supplies the address of row l%8 of matrix l/8 (16 bytes: 8 elements).
// Register i of lane t: matrix i, row t/4, elements 2(t%4) and 2(t%4)+1; with .trans, the
// elements (row 2(t%4), column t/4) and (row 2(t%4)+1, column t/4).
void emuLdsm(uint32_t (&r)[4], const void* smemRow, bool trans) {
  const int lane = attnccl_test::emu::myLane();
  attnccl_test::emu::collective(&smemRow, sizeof smemRow, [&](attnccl_test::emu::Warp& w) {
    for (int i = 0; i < 4; ++i) {
      uint16_t e[2];
      for (int k = 0; k < 2; ++k) {
        const int row = trans ? 2 * (lane % 4) + k : lane / 4;
        const int col = trans ? lane / 4 : 2 * (lane % 4) + k;
        const uint16_t* rowPtr;
        memcpy(&rowPtr, w.box[8 * i + row], sizeof rowPtr);
        e[k] = rowPtr[col];
      }
      r[i] = static_cast<uint32_t>(e[0]) | static_cast<uint32_t>(e[1]) << 16;
    }
  });
}

// mma.m16n8k16.row.col, g = lane/4, c = lane%4:
//   A (16x16): a0 = A[g][2c..2c+1], a1 = A[g+8][2c..], a2 = A[g][2c+8..], a3 = A[g+8][2c+8..]
//   B (16x8):  b0 = B[2c..2c+1][g], b1 = B[2c+8..2c+9][g]
//   C (16x8):  c0, c1 = C[g][2c..2c+1], c2, c3 = C[g+8][2c..2c+1]
void emuMma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16) {
  struct In {
    uint32_t a[4], b[2];
  } in;
  memcpy(in.a, a, sizeof in.a);
  in.b[0] = b0;
  in.b[1] = b1;
  auto val = [bf16](uint32_t packed, int half) {
    const uint16_t bits = static_cast<uint16_t>(half ? packed >> 16 : packed & 0xffffu);
    return bf16 ? attnccl::bf16ToFloat(bits) : attnccl::fp16ToFloat(bits);
  };
  const int lane = attnccl_test::emu::myLane();
  float out[4];
  attnccl_test::emu::collective(&in, sizeof in, [&](attnccl_test::emu::Warp& w) {
    float A[16][16], B[16][8];
    for (int t = 0; t < 32; ++t) {
      In x;
      memcpy(&x, w.box[t], sizeof x);
      const int g = t / 4, c = t % 4;
      for (int k = 0; k < 2; ++k) {
        A[g][2 * c + k] = val(x.a[0], k);
        A[g + 8][2 * c + k] = val(x.a[1], k);
        A[g][2 * c + 8 + k] = val(x.a[2], k);
        A[g + 8][2 * c + 8 + k] = val(x.a[3], k);
        B[2 * c + k][g] = val(x.b[0], k);
        B[2 * c + 8 + k][g] = val(x.b[1], k);
      }
    }
    const int g = lane / 4, c = lane % 4;
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e >> 1), col = 2 * c + (e & 1);
      float s = 0.f;
      for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
      out[e] = s;
    }
  });
  for (int e = 0; e < 4; ++e) d[e] += out[e];
}

void cpAsync16(void* smemDst, const void* src, bool valid) {
  attnccl_test::emu::me().open.push_back({smemDst, src, valid});
}

void cpAsyncCommit() {
  auto& l = attnccl_test::emu::me();
  l.groups.push_back(std::move(l.open));
  l.open.clear();
}

void emuCpAsyncWait(int n) {
  auto& l = attnccl_test::emu::me();
  while (static_cast<int>(l.groups.size()) > n) {
    for (const auto& c : l.groups.front()) {
      if (c.valid) {
        memcpy(c.dst, c.src, 16);
      } else {
        memset(c.dst, 0, 16);
      }
    }
    l.groups.pop_front();
  }
}

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
