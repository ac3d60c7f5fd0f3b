// kvcache_perf: context-parallel decode and chunked prefill over a KV cache sharded over the ranks
// (attncclKvCacheCreate / Append / Attend). The sweep is the cache length L in tokens (-b/-e/-f);
// per length, the cache is filled with L seeded tokens, then three phases are timed:
//
//   decode   attncclKvCacheAttend of 1 query at position L-1 (the step's attention and its
//            combine; the step's append is one token's memcpy on its owner, not timed)
//   local    the same rank's shard alone: a one-rank cache of this rank's shard size (its own
//            communicator), 1 query that sees all of it; all ranks at once, so the machine is
//            as loaded as in the decode phase. decode/local is the cost of the combine
//   prefill  attncclKvCacheAttend of the last C positions (-C; 0 = no prefill phase)
//
// Columns: time per step, tokens/s, the bytes of K and V that the most loaded rank reads in a
// decode step and that rate (bytes / decode time) against one thread's memcpy of as many bytes,
// measured on rank 0 in the same run while the other ranks wait; bytes each rank sends per decode
// step (attncclCommGetStats); #wrong: rank 0's decode and prefill outputs against a one-rank cache
// over the same tokens (elements off by more than tol x (|want| + rms)), fp32 1e-4, fp16 5e-3,
// bf16 2e-2.
//
//   kvcache_perf -r 4 -b 16K -e 128K -f 2 -H 8 -K 1 -D 128 -C 256 -n 20
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "attn/kvcache/placement.h"
#include "harness/harness.h"
#include "harness/memcpy_bw.h"
#include "harness/sync.h"

using namespace perf;

namespace {

struct KvParams {
  int heads = 8, kvHeads = 1, headDim = 128;
  attncclKvPlacement_t placement = attncclKvPlaceRoundRobin;
  int64_t block = 0, window = -1, chunk = 256;
  int kv() const { return kvHeads; }
};

bool parseInt(const char* s, int64_t lo, int64_t hi, int64_t* out) {
  if (!s || !*s) return false;
  int64_t v;
  if (!parseScaled(s, &v) || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Seeded value of element i of tensor `which`, in [-1, 1) and at least 1/64 away from 0.
float valueAt(uint64_t which, uint64_t i) {
  uint64_t x = (which + 1) * 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull);
  x ^= x >> 31;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 29;
  float u = static_cast<float>(x >> 40) / static_cast<float>(1 << 24);  // [0, 1)
  float v = 2.f * u - 1.f;
  return std::fabs(v) < 1.f / 64 ? 1.f / 64 : v;
}

uint16_t toHalf(float f) {  // |f| in [1/64, 1]: normal half, round to nearest
  uint32_t b;
  memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((b >> 23) & 0xff) - 127 + 15;
  uint32_t mant = b & 0x7fffffu;
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  if (mant & 0x1000u) ++h;
  return static_cast<uint16_t>(h);
}

float fromHalf(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const int32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  uint32_t b = exp == 0 ? sign : sign | (static_cast<uint32_t>(exp - 15 + 127) << 23) | (mant << 13);
  float f;
  memcpy(&f, &b, 4);
  return f;
}

void fill(attncclDataType_t t, void* dst, uint64_t which, uint64_t first, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = valueAt(which, first + static_cast<uint64_t>(i));
    if (t == attncclFloat32) {
      static_cast<float*>(dst)[i] = v;
    } else if (t == attncclFloat16) {
      static_cast<uint16_t*>(dst)[i] = toHalf(v);
    } else {
      uint32_t b;
      memcpy(&b, &v, 4);
      static_cast<uint16_t*>(dst)[i] = static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    }
  }
}

float load(attncclDataType_t t, const void* src, int64_t i) {
  if (t == attncclFloat32) return static_cast<const float*>(src)[i];
  const uint16_t h = static_cast<const uint16_t*>(src)[i];
  if (t == attncclFloat16) return fromHalf(h);
  uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

double tolerance(attncclDataType_t t) { return t == attncclFloat32 ? 1e-4 : t == attncclFloat16 ? 5e-3 : 2e-2; }

void ok(attncclResult_t r, attncclComm_t comm, const char* what) { checkResult(r, comm, what); }

double threadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// GB/s of memcpy of `bytes` per CPU second of the calling thread (touched buffers, >= 5 copies
// and >= 0.1 CPU seconds).
double memcpyCpuBandwidth(size_t bytes) {
  std::vector<char> a(bytes, 1), b(bytes, 2);
  int reps = 0;
  const double c0 = threadCpuSeconds();
  double c = 0;
  do {
    memcpy(b.data(), a.data(), bytes);
    a[reps % bytes] = b[(reps * 7) % bytes];  // keep the copies observable
    ++reps;
    c = threadCpuSeconds() - c0;
  } while (reps < 5 || c < 0.1);
  return static_cast<double>(bytes) * reps / c / 1e9;
}

attncclKvCacheDesc_t kvDesc(const KvParams& kp, attncclDataType_t t, int64_t capacity) {
  attncclKvCacheDesc_t d = ATTNCCL_KV_CACHE_DESC_INITIALIZER;
  d.dtype = t;
  d.numHeadsQ = kp.heads;
  d.numHeadsKV = kp.kvHeads;
  d.headDim = kp.headDim;
  d.capacity = capacity;
  d.placement = kp.placement;
  d.blockTokens = kp.block;
  d.windowLeft = kp.window;
  return d;
}

// Appends positions [0, L) of the seeded K, V, in chunks (every rank passes every token).
void fillCache(attncclKvCache_t cache, attncclComm_t comm, attncclDataType_t t, const KvParams& kp, int64_t L) {
  const int64_t kvW = int64_t{kp.kvHeads} * kp.headDim, step = 4096;
  std::vector<char> k(static_cast<size_t>(step * kvW) * 4), v(k.size());
  for (int64_t p = 0; p < L; p += step) {
    const int64_t n = std::min(step, L - p);
    fill(t, k.data(), 1, static_cast<uint64_t>(p * kvW), n * kvW);
    fill(t, v.data(), 2, static_cast<uint64_t>(p * kvW), n * kvW);
    ok(attncclKvCacheAppend(cache, k.data(), v.data(), n, nullptr), comm, "attncclKvCacheAppend");
  }
}

attncclComm_t oneRankComm(const Options& opt) {
  attncclUniqueId id;
  attncclComm_t c = nullptr;
  ok(attncclGetUniqueId(&id), nullptr, "attncclGetUniqueId");
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.cpuThreads = opt.cpuThreads;
  ok(attncclCommInitRank(&c, 1, id, 0, &cfg), nullptr, "attncclCommInitRank (one rank)");
  return c;
}

class KvCase : public Case {
 public:
  KvCase(const KvParams& kp, const RankInfo& ri, int64_t L) : kp_(kp), ri_(ri), L_(L), t_(ri.opt->dtype) {
    const int64_t qW = int64_t{kp.heads} * kp.headDim;
    chunk_ = std::min(kp.chunk, L);
    attncclKvCacheDesc_t d = kvDesc(kp, t_, L);
    ok(attncclKvCacheCreate(&cache_, &d, ri.comm), ri.comm, "attncclKvCacheCreate");
    fillCache(cache_, ri.comm, t_, kp, L);
    // This rank's shard, as the placement puts it (attn/kvcache/placement.h).
    attnccl::attn::KvPlacement pl;
    pl.kind = kp.placement;
    pl.nranks = ri.nranks;
    pl.capacity = L;
    pl.block = kp.block ? kp.block : attnccl::attn::defaultKvBlockTokens(L, ri.nranks);
    shard_ = pl.ownedBelow(ri.rank, L);
    one_ = oneRankComm(*ri.opt);
    if (shard_ > 0) {
      attncclKvCacheDesc_t ld = kvDesc(kp, t_, shard_);
      ok(attncclKvCacheCreate(&local_, &ld, one_), one_, "attncclKvCacheCreate (shard alone)");
      fillCache(local_, one_, t_, kp, shard_);
    }
    const size_t esz = dtypeBytes(t_);
    readBytes_ = static_cast<double>(shard_) * kp.kvHeads * kp.headDim * esz * 2;
    qDecode_.resize(static_cast<size_t>(qW) * esz);
    qChunk_.resize(static_cast<size_t>(chunk_ * qW) * esz);
    fill(t_, qDecode_.data(), 0, static_cast<uint64_t>((L - 1) * qW), qW);
    fill(t_, qChunk_.data(), 0, static_cast<uint64_t>((L - chunk_) * qW), chunk_ * qW);
    outDecode_.assign(qDecode_.size(), static_cast<char>(0xff));
    outChunk_.assign(qChunk_.size(), static_cast<char>(0xff));
    outLocal_.resize(qDecode_.size());
    lse_.resize(static_cast<size_t>(chunk_ * kp.heads));
    // The memcpy ceiling of the bytes the most loaded rank reads: rank 0 alone, the others wait.
    int64_t maxShard = 0;
    for (int r = 0; r < ri.nranks; ++r) maxShard = std::max(maxShard, pl.ownedBelow(r, L));
    const int64_t maxBytes = maxShard * kp.kvHeads * kp.headDim * static_cast<int64_t>(esz) * 2;
    barrier(ri.comm);
    if (ri.rank == 0) {
      memcpyGBps_ = memcpyBandwidth({maxBytes}, 5, 0.1)[0];
      memcpyCpuGBps_ = memcpyCpuBandwidth(static_cast<size_t>(maxBytes));
    }
    barrier(ri.comm);
  }
  ~KvCase() override {
    if (local_) attncclKvCacheDestroy(local_);
    attncclKvCacheDestroy(cache_);
    if (one_) attncclCommDestroy(one_);
  }

  int phases() const override { return kp_.chunk > 0 ? 3 : 2; }

  attncclResult_t run(int phase) override {
    if (phase == 0) {
      attncclCommStats_t a{sizeof a, 0, 0, 0, 0}, b{sizeof b, 0, 0, 0, 0};
      attncclCommGetStats(ri_.comm, &a);
      const double t0 = wallSeconds();
      attncclResult_t r = attncclKvCacheAttend(cache_, qDecode_.data(), 1, outDecode_.data(), lse_.data(), nullptr);
      decodeMin_ = std::min(decodeMin_, wallSeconds() - t0);
      attncclCommGetStats(ri_.comm, &b);
      sent_ += static_cast<double>(b.bytesSent - a.bytesSent);
      ++decodeCalls_;
      return r;
    }
    if (phase == 1) {
      if (!local_) return attncclSuccess;
      const double t0 = wallSeconds(), c0 = threadCpuSeconds();
      attncclResult_t r = attncclKvCacheAttend(local_, qDecode_.data(), 1, outLocal_.data(), nullptr, nullptr);
      localMin_ = std::min(localMin_, wallSeconds() - t0);
      localCpu_ += threadCpuSeconds() - c0;
      ++localCalls_;
      return r;
    }
    return attncclKvCacheAttend(cache_, qChunk_.data(), chunk_, outChunk_.data(), lse_.data(), nullptr);
  }

  // Rank 0: its decode and prefill outputs against a one-rank cache of all L tokens.
  int64_t check() override {
    if (ri_.rank != 0) return 0;
    attncclKvCacheDesc_t d = kvDesc(kp_, t_, L_);
    attncclKvCache_t ref = nullptr;
    ok(attncclKvCacheCreate(&ref, &d, one_), one_, "attncclKvCacheCreate (reference)");
    fillCache(ref, one_, t_, kp_, L_);
    std::vector<char> want1(outDecode_.size()), wantC(outChunk_.size());
    ok(attncclKvCacheAttend(ref, qDecode_.data(), 1, want1.data(), nullptr, nullptr), one_, "reference decode");
    if (chunk_ > 0)
      ok(attncclKvCacheAttend(ref, qChunk_.data(), chunk_, wantC.data(), nullptr, nullptr), one_, "reference prefill");
    attncclKvCacheDestroy(ref);
    return countWrong(outDecode_, want1) + (chunk_ > 0 ? countWrong(outChunk_, wantC) : 0);
  }

  std::vector<double> stats() override {
    return {readBytes_,  decodeCalls_ ? sent_ / decodeCalls_ : 0.0, memcpyGBps_, decodeMin_, local_ ? localMin_ : 0.0,
            memcpyCpuGBps_, localCalls_ ? localCpu_ / localCalls_ : 0.0};
  }

 private:
  int64_t countWrong(const std::vector<char>& got, const std::vector<char>& want) const {
    const int64_t n = static_cast<int64_t>(want.size() / dtypeBytes(t_));
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(load(t_, want.data(), i)) * load(t_, want.data(), i);
    const double rms = std::sqrt(ss / std::max<int64_t>(n, 1));
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double g = load(t_, got.data(), i), w = load(t_, want.data(), i);
      if (!(std::fabs(g - w) <= tolerance(t_) * (std::fabs(w) + rms))) ++wrong;
    }
    return wrong;
  }

  KvParams kp_;
  RankInfo ri_;
  int64_t L_, chunk_ = 0, shard_ = 0;
  attncclDataType_t t_;
  attncclKvCache_t cache_ = nullptr, local_ = nullptr;
  attncclComm_t one_ = nullptr;
  std::vector<char> qDecode_, qChunk_, outDecode_, outChunk_, outLocal_;
  std::vector<float> lse_;
  double readBytes_ = 0, sent_ = 0, memcpyGBps_ = 0;
  double decodeMin_ = 1e30, localMin_ = 1e30;  // the fastest single call (robust on a loaded machine)
  // CPU seconds of the local phase (1 compute thread per rank: all of its work) and the memcpy
  // rate per CPU second: a ratio that time slicing does not change.
  double localCpu_ = 0, memcpyCpuGBps_ = 0;
  int64_t localCalls_ = 0;
  int64_t decodeCalls_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  KvParams kp;
  Tool tool;
  tool.name = "kvcache_perf";
  tool.description = "attncclKvCacheAttend: context-parallel decode and chunked prefill over a sharded KV cache";
  tool.sweepUnit = "tokens (cache length)";
  auto intFlag = [](char letter, const char* help, int64_t lo, int64_t hi, auto store) {
    return ToolFlag{letter, true, help, [=](const char* a) -> std::string {
                      int64_t v;
                      if (!parseInt(a, lo, hi, &v)) return std::string("-") + letter + " '" + a + "': out of range";
                      store(v);
                      return "";
                    }};
  };
  tool.flags = {
      intFlag('H', "-H N      query heads [8]", 1, 4096, [&kp](int64_t v) { kp.heads = int(v); }),
      intFlag('K', "-K N      K/V heads, dividing -H [1]", 1, 4096, [&kp](int64_t v) { kp.kvHeads = int(v); }),
      intFlag('D', "-D N      head dim, 1..256 [128]", 1, 256, [&kp](int64_t v) { kp.headDim = int(v); }),
      intFlag('C', "-C N      prefill chunk in tokens, 0 = no prefill phase [256]", 0, int64_t(1) << 30,
              [&kp](int64_t v) { kp.chunk = v; }),
      intFlag('B', "-B N      round-robin block in tokens, 0 = the library's choice [0]", 0, int64_t(1) << 30,
              [&kp](int64_t v) { kp.block = v; }),
      intFlag('W', "-W N      left window in tokens, -1 = none [-1]", -1, int64_t(1) << 40,
              [&kp](int64_t v) { kp.window = v; }),
      ToolFlag{'P', true, "-P rr|contiguous   placement [rr]",
               [&kp](const char* a) -> std::string {
                 if (strcmp(a, "rr") == 0) kp.placement = attncclKvPlaceRoundRobin;
                 else if (strcmp(a, "contiguous") == 0) kp.placement = attncclKvPlaceContiguous;
                 else return std::string("-P '") + a + "': expected rr or contiguous";
                 return "";
               }},
  };
  tool.progress = true;
  tool.defaults = [](Options* o) {
    o->minValue = 16 << 10;
    o->maxValue = 128 << 10;
    o->iters = 20;
    o->warmup = 2;
  };
  tool.validate = [&kp](const Options& o) -> std::string {
    if (o.dtype != attncclFloat32 && o.dtype != attncclBfloat16 && o.dtype != attncclFloat16)
      return "-d: the cache takes fp32, bf16 or fp16";
    if (kp.heads % kp.kvHeads != 0) return "-K must divide -H";
    return "";
  };
  tool.columnsFor = [&kp](const Options&) {
    std::vector<Column> c = {{"length", "(tokens)", 9, "length", ""},
                             {"decode", "(us)", 10, "decode_us", ""},
                             {"tok/s", "", 9, "decode_tokens_per_s", ""},
                             {"local", "(us)", 10, "local_us", ""},
                             {"dec/loc", "", 8, "decode_over_local", "decode/local"},
                             {"read", "(B)", 11, "read_bytes_per_rank", ""},
                             {"read_bw", "(GB/s)", 8, "read_gbps", ""},
                             {"memcpy", "(GB/s)", 8, "memcpy_gbps", ""},
                             {"rd/mcpy", "", 8, "read_over_memcpy", "read/memcpy"},
                             {"sent", "(B)", 9, "sent_bytes_per_step", ""},
                             {"dec_min", "(us)", 9, "decode_min_us", ""},
                             {"loc_min", "(us)", 9, "local_min_us", ""},
                             {"min_d/l", "", 8, "decode_over_local_min", "min decode/local"},
                             {"min_rd/mc", "", 9, "read_over_memcpy_min", "min read/memcpy"},
                             {"loc_cpu", "(us)", 9, "local_cpu_us", ""},
                             {"mcpy_cpu", "(GB/s)", 8, "memcpy_cpu_gbps", ""},
                             {"cpu_rd/mc", "", 9, "read_over_memcpy_cpu", "cpu read/memcpy"}};
    if (kp.chunk > 0) {
      c.push_back({"prefill", "(us)", 10, "prefill_us", ""});
      c.push_back({"pf_tok/s", "", 9, "prefill_tokens_per_s", ""});
    }
    c.push_back({"#wrong", "", 6, "wrong", ""});
    return c;
  };
  tool.headerLines = [&kp](const Options& o, int nranks) {
    std::vector<std::string> l;
    l.push_back("kv cache: " + std::to_string(kp.heads) + " q heads, " + std::to_string(kp.kvHeads) +
                " kv heads, dim " + std::to_string(kp.headDim) + ", " +
                (kp.placement == attncclKvPlaceRoundRobin ? "round-robin" : "contiguous") + " placement, block " +
                (kp.block ? std::to_string(kp.block) : std::string("auto")) + ", window " + std::to_string(kp.window) +
                ", prefill chunk " + std::to_string(kp.chunk) + ", " + std::to_string(nranks) + " ranks");
    l.push_back("decode: 1 query; local: the rank's shard alone on a one-rank communicator, all ranks at once;");
    l.push_back("read: K+V bytes of the most loaded rank per decode step; read_bw = read/decode; memcpy: one thread,");
    l.push_back("same bytes, rank 0 alone; sent: bytes per rank per decode step; *_min: each rank's fastest call,");
    l.push_back("the slowest rank's (robust when the machine is loaded); loc_cpu: CPU time of a local call,");
    l.push_back("mcpy_cpu: memcpy per CPU second, cpu_rd/mc: read per CPU second of the local phase / mcpy_cpu");
    if (o.check) l.push_back("check: rank 0 against a one-rank cache of the same tokens");
    return l;
  };
  tool.makeCase = [&kp](const RankInfo& ri, int64_t value) -> std::unique_ptr<Case> {
    return std::make_unique<KvCase>(kp, ri, value);
  };
  tool.row = [&kp](const Measured& m) {
    const double dec = m.seconds[0], loc = m.seconds[1];
    const double read = m.stats[0].max, sent = m.stats[1].max, mcpy = m.stats[2].max;
    std::vector<Cell> cells = {intCell(m.value),
                               numberCell(dec * 1e6, 1),
                               numberCell(1.0 / dec, 1),
                               numberCell(loc * 1e6, 1),
                               numberCell(loc > 0 ? dec / loc : 0, 3),
                               intCell(static_cast<int64_t>(read)),
                               numberCell(read / dec / 1e9, 2),
                               numberCell(mcpy, 2),
                               numberCell(mcpy > 0 ? read / dec / 1e9 / mcpy : 0, 3),
                               intCell(static_cast<int64_t>(sent + 0.5))};
    // The fastest call of each rank, then the slowest rank (a step ends with its slowest rank).
    const double dmin = m.stats[3].max, lmin = m.stats[4].max;
    cells.push_back(numberCell(dmin * 1e6, 1));
    cells.push_back(numberCell(lmin * 1e6, 1));
    cells.push_back(numberCell(lmin > 0 ? dmin / lmin : 0, 3));
    cells.push_back(numberCell(mcpy > 0 ? read / dmin / 1e9 / mcpy : 0, 3));
    // The most loaded rank's shard read per CPU second of its local phase, against memcpy's rate
    // per CPU second: what the read would reach with a core to itself.
    const double lcpu = m.stats[6].max, mcpu = m.stats[5].max;
    cells.push_back(numberCell(lcpu * 1e6, 1));
    cells.push_back(numberCell(mcpu, 2));
    cells.push_back(numberCell(lcpu > 0 && mcpu > 0 ? read / lcpu / 1e9 / mcpu : 0, 3));
    if (kp.chunk > 0) {
      const double pf = m.seconds[2];
      const double c = static_cast<double>(std::min(kp.chunk, m.value));
      cells.push_back(numberCell(pf * 1e6, 1));
      cells.push_back(numberCell(c / pf, 1));
    }
    cells.push_back(m.wrong < 0 ? textCell("N/A") : intCell(m.wrong));
    return cells;
  };
  return runTool(tool, argc, argv);
}
