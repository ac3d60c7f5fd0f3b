// libFuzzer target over attnccl's argument and descriptor validation. Each input picks one public
// entry point and fills its arguments from the bytes: attention descriptors (every field, the
// documents' offsets included) through attncclAttnLocalTokens and the attention calls on a
// one-rank communicator, attncclHeadAllToAll, attncclMergeStates, attncclHeadRange, the building
// blocks' counts, types, operations, peers and streams, config resolution, attncclCommGetStats.
//
// The harness passes real buffers only when they are as large as the arguments say (else NULL),
// so whatever a sanitizer finds is the library's fault. Properties checked on every input:
//   - the result is a known attncclResult_t; a failure leaves a message (attncclGetLastError);
//   - a refused call leaves the communicator usable (its async error stays attncclSuccess);
//   - attncclAttnLocalTokens: every rank's positions are increasing, in range, and all ranks
//     together hold each of the seqLen positions once; attncclHeadRange tiles the heads;
//   - config resolution and attncclCommInitRank agree on every invalid config.
//
// Built by -DATTNCCL_BUILD_FUZZ=ON with clang (tests/fuzz/CMakeLists.txt); run, e.g.:
//   build-fuzz/tests/fuzz/fuzz_validation -max_total_time=60 corpus/ tests/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "attnccl.h"
#include "comm/comm.h"

namespace {

attncclComm_t gComm = nullptr;
// A valid id for attncclCommInitRank calls that must fail before they connect (one rendezvous
// for the whole run, not one per input).
attncclUniqueId gId;

// Reads fields from the input; zeros once it is used up.
class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  template <typename T>
  T take() {
    T v;
    memset(&v, 0, sizeof v);
    size_t k = n_ - at_ < sizeof v ? n_ - at_ : sizeof v;
    memcpy(&v, d_ + at_, k);
    at_ += k;
    return v;
  }
  bool flag() { return (take<uint8_t>() & 1) != 0; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t at_ = 0;
};

[[noreturn]] void violated(const char* what) {
  fprintf(stderr, "fuzz_validation: property violated: %s (last error: %s)\n", what, attncclGetLastError(nullptr));
  abort();
}

void checkResult(attncclResult_t r) {
  int v;
  memcpy(&v, &r, sizeof v);
  if (v < 0 || v >= attncclNumResults) violated("unknown result code");
  if (r != attncclSuccess && r != attncclInProgress && attncclGetLastError(nullptr)[0] == '\0') {
    violated("a failure without a message");
  }
  attncclResult_t async = attncclInternalError;
  if (attncclCommGetAsyncError(gComm, &async) != attncclSuccess || async != attncclSuccess) {
    violated("a call left the communicator failed");
  }
}

template <typename E>
E rawEnum(int32_t v) {
  E e;
  memcpy(&e, &v, sizeof v);
  return e;
}

// A descriptor from the bytes; cu receives the documents' offsets it points to.
attncclAttnDesc_t takeDesc(Input& in, std::vector<int64_t>* cu) {
  attncclAttnDesc_t d = ATTNCCL_ATTN_DESC_INITIALIZER;
  const uint8_t header = in.take<uint8_t>();
  if (header & 1) d.magic = in.take<uint32_t>();
  if (header & 2) d.size = in.take<uint16_t>();
  d.dtype = rawEnum<attncclDataType_t>(in.take<int32_t>());
  d.seqLen = (header & 4) ? in.take<int64_t>() : in.take<uint16_t>();
  d.numHeadsQ = in.take<int32_t>();
  d.numHeadsKV = in.take<int32_t>();
  d.headDim = in.take<int32_t>();
  d.layout = rawEnum<attncclLayout_t>(in.take<int32_t>());
  d.causal = in.take<int32_t>();
  d.windowLeft = in.take<int64_t>();
  d.windowRight = in.take<int64_t>();
  d.softmaxScale = in.take<float>();
  d.numSeqs = (header & 8) ? in.take<int64_t>() : in.take<uint8_t>();
  // The library reads numSeqs + 1 offsets: give it that many, or NULL (one document).
  if (d.numSeqs >= 0 && d.numSeqs <= 64 && !(header & 16)) {
    cu->resize(static_cast<size_t>(d.numSeqs) + 1);
    for (int64_t& c : *cu) c = (header & 32) ? in.take<int64_t>() : in.take<uint16_t>();
    d.cuSeqlens = cu->data();
  }
  return d;
}

constexpr int64_t kMaxElems = 1 << 15;  // real buffers up to this many elements

// Elements of seqLen x heads x dim, or -1 when that is not small.
int64_t smallProduct(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0 || a > kMaxElems || b > kMaxElems || c > kMaxElems) return -1;
  int64_t p = a * b;
  if (p > kMaxElems) return -1;
  p *= c;
  return p > kMaxElems ? -1 : p;
}

std::vector<float> pattern(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n) + 1);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7919) % 97) / 97.f - 0.5f;
  return v;
}

void fuzzLocalTokens(Input& in) {
  std::vector<int64_t> cu;
  attncclAttnDesc_t d = takeDesc(in, &cu);
  const int32_t nranks = in.take<int32_t>() % 33;
  const int32_t rank = in.take<int32_t>();
  int64_t n = -1;
  attncclResult_t r = attncclAttnLocalTokens(&d, nranks, rank, &n, nullptr);
  checkResult(r);
  if (r != attncclSuccess || d.seqLen > kMaxElems) return;
  // Every rank's positions: increasing, in range, each position of the sequence exactly once.
  std::vector<int> seen(static_cast<size_t>(d.seqLen), 0);
  for (int q = 0; q < nranks; ++q) {
    int64_t count = -1;
    if (attncclAttnLocalTokens(&d, nranks, q, &count, nullptr) != attncclSuccess) violated("rank count");
    std::vector<int64_t> pos(static_cast<size_t>(count) + 1, -1);
    int64_t again = -1;
    if (attncclAttnLocalTokens(&d, nranks, q, &again, pos.data()) != attncclSuccess || again != count) {
      violated("positions count differs from the count alone");
    }
    for (int64_t i = 0; i < count; ++i) {
      if (pos[i] < 0 || pos[i] >= d.seqLen || (i > 0 && pos[i] <= pos[i - 1])) violated("positions out of order");
      seen[static_cast<size_t>(pos[i])]++;
    }
  }
  for (int s : seen) {
    if (s != 1) violated("a position held by zero or several ranks");
  }
}

void fuzzAttention(Input& in, bool backward) {
  std::vector<int64_t> cu;
  attncclAttnDesc_t d = takeDesc(in, &cu);
  const attncclAlgo_t algo = rawEnum<attncclAlgo_t>(in.take<int32_t>());
  const uint8_t nulls = in.take<uint8_t>();
  const cudaStream_t stream = in.flag() ? reinterpret_cast<cudaStream_t>(0x10) : nullptr;
  int64_t tokens = -1;
  // Real tensors when the descriptor is valid and small; NULL otherwise (must be refused).
  std::vector<float> q, kv, lse;
  if (attncclAttnLocalTokens(&d, 1, 0, &tokens, nullptr) == attncclSuccess &&
      smallProduct(tokens, d.numHeadsQ, d.headDim) >= 0 && smallProduct(tokens, tokens, 1) >= 0) {
    q = pattern(tokens * d.numHeadsQ * d.headDim);
    kv = pattern(tokens * d.numHeadsKV * d.headDim);
    lse.assign(static_cast<size_t>(tokens * d.numHeadsQ) + 1, 0.f);
  }
  auto ptr = [&](std::vector<float>& v, int bit) -> float* { return v.empty() || (nulls >> bit & 1) ? nullptr : v.data(); };
  std::vector<float> out = q, dq = q, dk = kv, dv = kv;
  attncclResult_t r;
  if (!backward) {
    r = attncclAttnForward(ptr(q, 0), ptr(kv, 1), ptr(kv, 2), ptr(out, 3), ptr(lse, 4), &d, algo, gComm, stream);
  } else {
    r = attncclAttnBackward(ptr(q, 0), ptr(kv, 1), ptr(kv, 2), ptr(q, 3), ptr(lse, 4), ptr(q, 5), ptr(dq, 6),
                            ptr(dk, 7), ptr(dv, 7), &d, algo, gComm, stream);
  }
  checkResult(r);
}

// attncclAttnForwardEx / BackwardEx: batch, strides (zero, negative, overlapping, huge) and sinks
// from the bytes. A view gets a real buffer only when every element its strides reach fits in it
// (else NULL, which the library must refuse as a missing tensor).
void fuzzAttentionEx(Input& in, bool backward) {
  std::vector<int64_t> cu;
  attncclAttnDesc_t d = takeDesc(in, &cu);
  const uint8_t bmode = in.take<uint8_t>();
  d.batch = (bmode & 0x80) ? in.take<int64_t>() : bmode % 4;
  const attncclAlgo_t algo = rawEnum<attncclAlgo_t>(in.take<int32_t>());
  attncclAttnTensors_t t = ATTNCCL_ATTN_TENSORS_INITIALIZER;
  const uint8_t header = in.take<uint8_t>();
  if (header & 1) t.magic = in.take<uint32_t>();
  if (header & 2) t.size = in.take<uint16_t>();
  int64_t tokens = -1;
  const bool small = attncclAttnLocalTokens(&d, 1, 0, &tokens, nullptr) == attncclSuccess && d.batch >= 0 &&
                     d.batch <= 4 && smallProduct(tokens, d.numHeadsQ + 2 * d.numHeadsKV, d.headDim) >= 0 &&
                     smallProduct(tokens, tokens, 1) >= 0;
  const int64_t B = d.batch < 1 ? 1 : d.batch;
  std::vector<std::vector<float>> bufs;
  // A strided view of `heads` heads: strides from the bytes (often all zero), a buffer if it fits.
  auto view = [&](int heads, attncclStrides_t* s, bool isLse) -> float* {
    const uint8_t how = in.take<uint8_t>();
    *s = {0, 0, 0};
    if (how & 1) *s = {in.take<int16_t>(), in.take<int16_t>(), in.take<int16_t>()};
    if (!small || (how & 2)) return nullptr;
    const int64_t inner = isLse ? 1 : d.headDim;
    int64_t span;
    if (s->batch == 0 && s->token == 0 && s->head == 0) {
      span = B * tokens * heads * inner;
    } else {
      if (s->batch < 0 || s->token < 0 || s->head < 0) return nullptr;  // the library refuses these anyway
      span = (B - 1) * s->batch + (tokens - 1) * (isLse ? 1 : s->token) + (heads - 1) * s->head + inner;
    }
    if (span < 0 || span > 4 * kMaxElems) return nullptr;
    bufs.push_back(pattern(span));
    return bufs.back().data();
  };
  t.q = view(d.numHeadsQ, &t.qStrides, false);
  t.k = view(d.numHeadsKV, &t.kStrides, false);
  t.v = view(d.numHeadsKV, &t.vStrides, false);
  t.out = view(d.numHeadsQ, &t.outStrides, false);
  t.lse = view(d.numHeadsQ, &t.lseStrides, true);
  std::vector<float> sinks(static_cast<size_t>(d.numHeadsQ > 0 && d.numHeadsQ < 4096 ? d.numHeadsQ : 1), 0.5f),
      dsinks(sinks.size());
  const uint8_t sinkBits = in.take<uint8_t>();
  if (sinkBits & 1) t.sinks = sinks.data();
  if (backward) {
    t.dout = view(d.numHeadsQ, &t.doutStrides, false);
    t.dq = view(d.numHeadsQ, &t.dqStrides, false);
    t.dk = view(d.numHeadsKV, &t.dkStrides, false);
    t.dv = view(d.numHeadsKV, &t.dvStrides, false);
    if (sinkBits & 2) t.dsinks = dsinks.data();
  }
  const attncclResult_t r = backward ? attncclAttnBackwardEx(&t, &d, algo, gComm, nullptr)
                                     : attncclAttnForwardEx(&t, &d, algo, gComm, nullptr);
  checkResult(r);
}

void fuzzHeadAllToAll(Input& in) {
  std::vector<int64_t> cu;
  attncclAttnDesc_t d = takeDesc(in, &cu);
  const int32_t numHeads = in.take<int32_t>();
  const int32_t direction = in.take<int32_t>();
  const uint8_t mode = in.take<uint8_t>();
  std::vector<float> a, b;
  if (d.seqLen >= 0 && smallProduct(d.seqLen, numHeads, d.headDim) >= 0) {
    a = pattern(d.seqLen * numHeads * d.headDim);
    b = a;
  }
  float* in0 = a.empty() || (mode & 1) ? nullptr : a.data();
  float* out0 = b.empty() || (mode & 2) ? nullptr : ((mode & 4) ? a.data() : b.data());
  checkResult(attncclHeadAllToAll(in0, out0, numHeads, direction, (mode & 8) ? nullptr : &d, gComm, nullptr));
}

void fuzzMerge(Input& in) {
  const int64_t tokens = in.flag() ? in.take<int64_t>() : in.take<uint8_t>();
  const int32_t numHeads = in.take<int32_t>();
  const int32_t headDim = in.take<int32_t>();
  const attncclDataType_t t = rawEnum<attncclDataType_t>(in.take<int32_t>());
  const uint8_t mode = in.take<uint8_t>();
  std::vector<float> o, l, ob, lb;
  const int64_t n = smallProduct(tokens, numHeads, headDim);
  if (n >= 0) {
    o = pattern(n);
    ob = pattern(n);
    l = pattern(tokens * numHeads);
    lb = pattern(tokens * numHeads);
  }
  auto ptr = [&](std::vector<float>& v, int bit) -> float* { return v.empty() || (mode >> bit & 1) ? nullptr : v.data(); };
  attncclComm_t comm = (mode & 16) ? nullptr : gComm;
  cudaStream_t stream = (mode & 32) ? reinterpret_cast<cudaStream_t>(0x10) : nullptr;
  checkResult(attncclMergeStates(ptr(o, 0), ptr(l, 1), ptr(ob, 2), ptr(lb, 3), tokens, numHeads, headDim, t, comm,
                                 stream));
}

void fuzzHeadRange(Input& in) {
  const int32_t numHeads = in.take<int32_t>(), nranks = in.take<int32_t>(), rank = in.take<int32_t>();
  int first = -1, count = -1;
  attncclResult_t r = attncclHeadRange(numHeads, nranks, rank, &first, &count);
  checkResult(r);
  if (r != attncclSuccess || nranks > 64) return;
  int next = 0;
  for (int q = 0; q < nranks; ++q) {
    if (attncclHeadRange(numHeads, nranks, q, &first, &count) != attncclSuccess || first != next || count < 0) {
      violated("head ranges do not tile the heads");
    }
    next += count;
  }
  if (next != numHeads) violated("head ranges do not cover the heads");
}

// The building blocks on the one-rank communicator (peer 0 is this rank).
void fuzzCollective(Input& in) {
  const uint8_t which = in.take<uint8_t>() % 5;
  const uint64_t count = in.flag() ? in.take<uint64_t>() : in.take<uint16_t>();
  const attncclDataType_t t = rawEnum<attncclDataType_t>(in.take<int32_t>());
  const attncclRedOp_t op = rawEnum<attncclRedOp_t>(in.take<int32_t>());
  const int32_t peer = in.take<int32_t>();
  const uint8_t mode = in.take<uint8_t>();
  const cudaStream_t stream = (mode & 1) ? reinterpret_cast<cudaStream_t>(0x10) : nullptr;
  // 8 bytes per element covers every type; one rank: every collective moves count elements.
  std::vector<double> a, b;
  if (count <= static_cast<uint64_t>(kMaxElems)) {
    a.assign(count + 1, 1.0);
    b.assign(count + 1, 0.0);
  }
  void* sa = a.empty() || (mode & 2) ? nullptr : a.data();
  void* sb = b.empty() || (mode & 4) ? nullptr : ((mode & 8) ? sa : b.data());
  attncclResult_t r = attncclSuccess;
  switch (which) {
    case 0: r = attncclAllGather(sa, sb, count, t, gComm, stream); break;
    case 1: r = attncclReduceScatter(sa, sb, count, t, op, gComm, stream); break;
    case 2: r = attncclAllToAll(sa, sb, count, t, gComm, stream); break;
    case 3: {
      size_t sc = count, rc = (mode & 16) ? count + 1 : count, sd = 0, rd = (mode & 32) ? in.take<uint16_t>() : 0;
      if (rd != 0 && (b.empty() || rd + rc > b.size())) sb = nullptr;  // only a buffer that holds it
      r = attncclAllToAllv(sa, &sc, &sd, sb, &rc, &rd, t, gComm, stream);
      break;
    }
    case 4: {
      // A send and a receive with the same peer in one group: to itself, they meet. When only one
      // of them is refused (a NULL buffer), a scratch partner keeps the pair whole: a lone
      // receive would wait out the timeout, a lone send would stay queued for later inputs.
      std::vector<double> scratch(a.empty() ? 1 : a.size());
      attncclGroupStart();
      attncclResult_t s = attncclSend(sa, count, t, peer, gComm, stream);
      attncclResult_t v = attncclRecv(sb, count, t, peer, gComm, stream);
      if (s == attncclSuccess && v != attncclSuccess) checkResult(attncclRecv(scratch.data(), count, t, peer, gComm, stream));
      if (v == attncclSuccess && s != attncclSuccess) checkResult(attncclSend(scratch.data(), count, t, peer, gComm, stream));
      attncclResult_t e = attncclGroupEnd();
      checkResult(s);
      checkResult(v);
      r = e;
      break;
    }
  }
  checkResult(r);
}

// Config resolution; for an invalid config attncclCommInitRank must refuse alike (nothing made).
void fuzzConfig(Input& in) {
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  const uint8_t header = in.take<uint8_t>();
  if (header & 1) cfg.magic = in.take<uint32_t>();
  if (header & 2) cfg.size = in.take<uint16_t>();
  cfg.device = in.take<int32_t>();
  cfg.blocking = in.take<int32_t>();
  cfg.timeoutMs = in.take<int32_t>();
  cfg.cpuThreads = in.take<int32_t>();
  cfg.hybridGroupSize = in.take<int32_t>();
  char transport[12];
  for (char& c : transport) c = static_cast<char>(in.take<uint8_t>() % 128);
  transport[sizeof transport - 1] = '\0';
  if (header & 4) cfg.transport = transport;
  attnccl::CommConfig resolved;
  attncclResult_t r = attnccl::resolveConfig(&cfg, nullptr, &resolved);
  checkResult(r);
  if (r == attncclSuccess) return;  // a valid config would create a communicator: not here
  attncclComm_t c = nullptr;
  attncclResult_t init = attncclCommInitRank(&c, 1, gId, 0, &cfg);
  if (init != r || c != nullptr) violated("config resolution and attncclCommInitRank disagree");
}

void fuzzQueries(Input& in) {
  attncclCommStats_t s;
  memset(&s, 0, sizeof s);
  s.size = in.take<uint16_t>();
  if (s.size > sizeof s) s.size = sizeof s;  // the struct must be as large as it claims
  checkResult(attncclCommGetStats(gComm, in.flag() ? nullptr : &s));
  const int32_t code = in.take<int32_t>();
  if (attncclGetErrorString(rawEnum<attncclResult_t>(code)) == nullptr) violated("error string NULL");
  if (attncclAlgoName(rawEnum<attncclAlgo_t>(code)) == nullptr) violated("algo name NULL");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("ATTNCCL_TIMEOUT_MS", "2000", 0);
  attncclUniqueId id;
  attncclConfig_t cfg = ATTNCCL_CONFIG_INITIALIZER;
  cfg.cpuThreads = 1;
  cfg.timeoutMs = 2000;
  if (attncclGetUniqueId(&id) != attncclSuccess || attncclCommInitRank(&gComm, 1, id, 0, &cfg) != attncclSuccess ||
      attncclGetUniqueId(&gId) != attncclSuccess) {
    fprintf(stderr, "fuzz_validation: cannot create the communicator: %s\n", attncclGetLastError(nullptr));
    abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  switch (in.take<uint8_t>() % 11) {
    case 0: fuzzLocalTokens(in); break;
    case 1: fuzzAttention(in, false); break;
    case 2: fuzzAttention(in, true); break;
    case 3: fuzzHeadAllToAll(in); break;
    case 4: fuzzMerge(in); break;
    case 5: fuzzHeadRange(in); break;
    case 6: fuzzCollective(in); break;
    case 7: fuzzConfig(in); break;
    case 8: fuzzQueries(in); break;
    case 9: fuzzAttentionEx(in, false); break;
    case 10: fuzzAttentionEx(in, true); break;
  }
  return 0;
}
