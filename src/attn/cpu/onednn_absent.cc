// Stand-in for onednn.cc in builds without oneDNN: every GEMM goes through OpenBLAS.
#include "attn/cpu/onednn.h"

namespace attnccl {
namespace attn {
namespace cpu {

bool dnnlBuilt() { return false; }
bool dnnlHasAvx512() { return false; }
bool dnnlHasAmx() { return false; }
bool dnnlHasBf16() { return false; }
const char* dnnlDescription() { return "oneDNN not built"; }
bool dnnlGemmAcc(bool, bool, bool, int64_t, int64_t, int64_t, float, const void*, int64_t, const void*, int64_t, float*,
                 int64_t) {
  return false;
}
bool dnnlCapAvx2() { return false; }

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
