// oneDNN matmul primitives for the tiles' GEMMs (see onednn.h for the caching rule).
#include "attn/cpu/onednn.h"

#include <dlfcn.h>

#include <cstring>
#include <dnnl.hpp>
#include <mutex>
#include <string>
#include <unordered_map>

namespace attnccl {
namespace attn {
namespace cpu {

namespace {

using dt = dnnl::memory::data_type;

dnnl::engine& cpuEngine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Debian's oneDNN runs its primitives on OpenMP. Our pool threads each run their own GEMMs, so
// an OpenMP team per call would only oversubscribe the cores: every calling thread sets its own
// OpenMP thread count (a per-thread setting for threads outside OpenMP) to 1 before its first
// primitive. Looked up at run time so that attnccl links no OpenMP runtime of its own (and a
// oneDNN built on another runtime simply has none to set).
void serialOnThisThread() {
  static thread_local bool done = false;
  if (done) return;
  done = true;
  using SetFn = void (*)(int);
  static SetFn set = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set) set(1);
}

struct Key {
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t alphaBits;
  uint8_t flags;  // bit 0 transA, 1 transB, 2 bf16
  bool operator==(const Key& o) const { return std::memcmp(this, &o, sizeof(Key)) == 0; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t v : {static_cast<uint64_t>(k.m), static_cast<uint64_t>(k.n), static_cast<uint64_t>(k.k),
                       static_cast<uint64_t>(k.lda), static_cast<uint64_t>(k.ldb), static_cast<uint64_t>(k.ldc),
                       static_cast<uint64_t>(k.alphaBits) << 8 | k.flags})
      h = (h ^ v) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

struct Entry {
  dnnl::matmul prim;
  dnnl::memory a, b, c, scratch;
};

// The matmul for a key: C[M][N] (+)= alpha * op(A) op(B) with op(A) [M][K] and op(B) [K][N]
// described by strides (a transposed operand is the same buffer read with swapped strides).
dnnl::matmul::primitive_desc describe(const Key& k) {
  const bool ta = k.flags & 1, tb = k.flags & 2;
  const dt t = (k.flags & 4) ? dt::bf16 : dt::f32;
  dnnl::memory::desc a({k.m, k.k}, t, ta ? dnnl::memory::dims{1, k.lda} : dnnl::memory::dims{k.lda, 1});
  dnnl::memory::desc b({k.k, k.n}, t, tb ? dnnl::memory::dims{1, k.ldb} : dnnl::memory::dims{k.ldb, 1});
  dnnl::memory::desc c({k.m, k.n}, dt::f32, {k.ldc, 1});
  dnnl::primitive_attr attr;
  float alpha;
  std::memcpy(&alpha, &k.alphaBits, sizeof alpha);
  if (alpha != 1.f) attr.set_output_scales(0, {alpha});
  // The scratchpad belongs to each (per-thread) entry, whatever oneDNN's build does by default.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops po;
  po.append_sum(1.f);  // C += ...: the tiles always accumulate (beta = 1)
  attr.set_post_ops(po);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, cpuEngine());
}

// Bounded: trimmed causal blocks make many shapes; a full cache is simply dropped.
constexpr size_t kMaxEntries = 4096;

struct ThreadState {
  dnnl::stream stream{cpuEngine()};
  std::unordered_map<Key, Entry, KeyHash> cache;
};
ThreadState& threadState() {
  static thread_local ThreadState s;
  return s;
}

bool probeBf16() {
  try {
    Key k{16, 16, 16, 16, 16, 16, 0, 4};
    const float one = 1.f;
    std::memcpy(&k.alphaBits, &one, sizeof one);
    describe(k);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace

bool dnnlBuilt() { return true; }

bool dnnlCapAvx2() {
  try {
    return dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2) == dnnl::status::success;
  } catch (const dnnl::error&) {
    return false;
  }
}

bool dnnlHasAvx512() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  // cpu_isa values are bit masks ordered by inclusion: avx512_core's bits within isa's.
  const unsigned core = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
  return (static_cast<unsigned>(isa) & core) == core;
}

bool dnnlHasAmx() {
  const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const unsigned amx = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_amx);
  return (isa & amx) == amx;
}

bool dnnlHasBf16() {
  static const bool has = probeBf16();
  return has;
}

const char* dnnlDescription() {
  static const std::string desc = [] {
    const dnnl_version_t* v = dnnl_version();
    std::string s = "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                    std::to_string(v->patch);
    const char* isa = "?";
    switch (dnnl::get_effective_cpu_isa()) {
      case dnnl::cpu_isa::sse41: isa = "sse41"; break;
      case dnnl::cpu_isa::avx: isa = "avx"; break;
      case dnnl::cpu_isa::avx2: isa = "avx2"; break;
      case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
      case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
      case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
      case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
      case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
      default: break;
    }
    s += std::string(", ISA ") + isa;
    Key k{128, 512, 128, 128, 128, 512, 0, 2};
    const float one = 1.f;
    std::memcpy(&k.alphaBits, &one, sizeof one);
    try {
      s += std::string(", f32 ") + describe(k).impl_info_str();
    } catch (const dnnl::error&) {
      s += ", f32 none";
    }
    k.flags |= 4;
    try {
      s += std::string(", bf16 ") + describe(k).impl_info_str();
    } catch (const dnnl::error&) {
      s += ", bf16 none";
    }
    return s;
  }();
  return desc.c_str();
}

bool dnnlGemmAcc(bool bf16, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                 int64_t lda, const void* B, int64_t ldb, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return true;  // C += nothing
  if (bf16 && !dnnlHasBf16()) return false;
  serialOnThisThread();
  ThreadState& st = threadState();
  Key key{M, N, K, lda, ldb, ldc, 0, static_cast<uint8_t>((transA ? 1 : 0) | (transB ? 2 : 0) | (bf16 ? 4 : 0))};
  std::memcpy(&key.alphaBits, &alpha, sizeof alpha);
  auto it = st.cache.find(key);
  if (it == st.cache.end()) {
    try {
      dnnl::matmul::primitive_desc pd = describe(key);
      Entry e{dnnl::matmul(pd), dnnl::memory(pd.src_desc(), cpuEngine(), DNNL_MEMORY_NONE),
              dnnl::memory(pd.weights_desc(), cpuEngine(), DNNL_MEMORY_NONE),
              dnnl::memory(pd.dst_desc(), cpuEngine(), DNNL_MEMORY_NONE),
              dnnl::memory(pd.scratchpad_desc(), cpuEngine())};
      if (st.cache.size() >= kMaxEntries) st.cache.clear();
      it = st.cache.emplace(key, std::move(e)).first;
    } catch (const dnnl::error&) {
      return false;
    }
  }
  Entry& e = it->second;
  e.a.set_data_handle(const_cast<void*>(A));
  e.b.set_data_handle(const_cast<void*>(B));
  e.c.set_data_handle(C);
  e.prim.execute(st.stream, {{DNNL_ARG_SRC, e.a}, {DNNL_ARG_WEIGHTS, e.b}, {DNNL_ARG_DST, e.c},
                           {DNNL_ARG_SCRATCHPAD, e.scratch}});
  st.stream.wait();
  return true;
}

}  // namespace cpu
}  // namespace attn
}  // namespace attnccl
