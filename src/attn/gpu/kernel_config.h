// Compile-time shapes of the GPU attention kernels, readable by host code (launch selection,
// shared-memory sizes) without any device headers. One instantiation per (head dim, dtype):
// the tensor-core kernels exist for padded head dims 64 and 128; every other case runs the
// generic SIMT kernels (any head dim up to 256, fp32, unaligned tensors).
#pragma once

#include <cstddef>

namespace attnccl {
namespace attn {
namespace gpu {

// Forward, tensor cores: kWarps warps of 16 query rows each (kBr = 16 kWarps queries per block),
// key blocks of kBc keys; head dim padded to kD (a multiple of 64, so every row has at least 8
// 16-byte chunks for the XOR swizzle).
template <int kD_, int kWarps_, int kBc_>
struct FwdMmaConfig {
  static constexpr int kD = kD_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kThreads = 32 * kWarps_;
  static constexpr int kBr = 16 * kWarps_;
  static constexpr int kBc = kBc_;
  // Q, K, V tiles (16-bit) and the positions and documents of the key block.
  static constexpr size_t kSmemBytes = size_t(kBr + 2 * kBc) * kD * 2 + 2 * size_t(kBc) * 8;
  static_assert(kD % 64 == 0 && kBc % 16 == 0, "tile shape");
};
using FwdMma64 = FwdMmaConfig<64, 8, 128>;
using FwdMma128 = FwdMmaConfig<128, 8, 64>;

// Backward, tensor cores: one block per (kBc keys, key/value head); kWarps warps of 16 keys each
// accumulate dK and dV in registers while the block walks query blocks of kBr = kBc queries
// (every head of the GQA group); dQ goes out with fp32 atomics.
template <int kD_, int kWarps_>
struct BwdMmaConfig {
  static constexpr int kD = kD_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kThreads = 32 * kWarps_;
  static constexpr int kBc = 16 * kWarps_;
  static constexpr int kBr = 16 * kWarps_;
  // K, V, Q, dO tiles, dS^T [kBc][kBr] (16-bit), LSE and Delta (fp32), positions and documents.
  static constexpr size_t kSmemBytes =
      size_t(2 * kBc + 2 * kBr) * kD * 2 + size_t(kBc) * kBr * 2 + 2 * size_t(kBr) * 4 + 2 * size_t(kBr) * 8;
  static_assert(kD % 64 == 0 && kBr == 64, "tile shape: dS^T rows need 8 chunks");
};
using BwdMma64 = BwdMmaConfig<64, 4>;
using BwdMma128 = BwdMmaConfig<128, 4>;

// Generic kernels: 4 warps, 4 rows per warp, tiles of 16 tokens staged in fp32; lane l holds
// elements l, l+32, ... of a row (up to 8: head dim <= 256).
struct SimtConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 128;
  static constexpr int kRowsPerWarp = 4;
  static constexpr int kRows = kWarps * kRowsPerWarp;
  static constexpr int kTile = 16;
  static constexpr int kSlots = 8;
  static constexpr int kMaxHeadDim = 32 * kSlots;
  // Two staged tiles of kTile rows of headDim floats, positions and documents.
  static size_t smemBytes(int headDim) { return 2 * size_t(kTile) * headDim * 4 + 2 * size_t(kTile) * 8; }
};

}  // namespace gpu
}  // namespace attn
}  // namespace attnccl
