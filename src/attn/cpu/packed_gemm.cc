// Which packed-operand kernels (cpu/packed_gemm.h) the machine runs: the AVX2 ones follow the
// row operations' ISA, so a test that forces the generic row operations forces these off too.
#include "attn/cpu/packed_gemm.h"

#include "attn/cpu/rowops.h"

namespace attnccl {
namespace attn {
namespace cpu {

const PackedGemmOps* packedGemm() { return rowOps().isa >= Isa::Avx2 ? &kAvx2PackedGemm : nullptr; }

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
