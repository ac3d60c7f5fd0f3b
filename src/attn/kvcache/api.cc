// The public KV cache calls of include/attnccl.h ("inference"): argument checks (each failure
// names the argument and its value and changes nothing), then the work through the
// communicator's door (commRun), in call order.
//
// What a call does to the cache when it fails: a rejected argument changes nothing. Append and
// Attend run only on a usable communicator (checkComm); Attend never writes the cache, and
// Append's copies cannot fail once started. If the communicator fails or is aborted (by this
// call or an unrelated one), the cache can no longer be used for Append or Attend, as the
// communicator cannot; Length still answers and Destroy frees it.
#include <cmath>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "attn/kvcache/cache.h"
#include "comm/comm.h"
#include "core/dtype.h"
#include "core/export.h"
#include "core/result.h"

using namespace attnccl;
using namespace attnccl::attn;

namespace {

template <typename E>
int rawEnum(E field) {
  static_assert(sizeof(E) == sizeof(int), "enum fields are int-sized");
  int v;
  memcpy(&v, &field, sizeof v);
  return v;
}

uint64_t mixHash(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

// The whole descriptor as resolved, and the communicator's size: ranks that disagree on any of it
// would compute garbage silently, so Create compares it across ranks.
uint64_t descHash(const KvShape& sh, const KvPlacement& pl) {
  uint32_t scaleBits;
  memcpy(&scaleBits, &sh.scale, sizeof scaleBits);
  uint64_t h = 0x6b76636163686531ull;
  for (int64_t v :
       {int64_t{rawEnum(sh.dtype)}, int64_t{sh.numHeadsQ}, int64_t{sh.numHeadsKV}, int64_t{sh.headDim}, sh.windowLeft,
        int64_t{scaleBits}, int64_t{rawEnum(pl.kind)}, int64_t{pl.nranks}, pl.capacity, pl.block})
    h = mixHash(h, static_cast<uint64_t>(v));
  return h;
}

attncclResult_t resolveKvDesc(const char* fn, const attncclKvCacheDesc_t* d, int nranks, KvShape* sh, KvPlacement* pl) {
  ATTN_ARG(d != nullptr, "%s: desc is NULL", fn);
  ATTN_ARG(d->magic == ATTNCCL_KV_CACHE_DESC_MAGIC,
           "%s: desc->magic 0x%x is not ATTNCCL_KV_CACHE_DESC_MAGIC (use ATTNCCL_KV_CACHE_DESC_INITIALIZER)", fn,
           d->magic);
  ATTN_ARG(d->size >= offsetof(attncclKvCacheDesc_t, softmaxScale) + sizeof(d->softmaxScale),
           "%s: desc->size %zu is smaller than %zu (use ATTNCCL_KV_CACHE_DESC_INITIALIZER)", fn, d->size,
           offsetof(attncclKvCacheDesc_t, softmaxScale) + sizeof(d->softmaxScale));
  const int dtype = rawEnum(d->dtype);
  ATTN_ARG(dtype == attncclFloat32 || dtype == attncclFloat16 || dtype == attncclBfloat16,
           "%s: desc->dtype %d (%s) is not attncclFloat32, attncclFloat16 or attncclBfloat16", fn, dtype,
           dtype >= 0 && dtype < attncclNumTypes ? dtypeName(static_cast<attncclDataType_t>(dtype)) : "unknown");
  ATTN_ARG(d->numHeadsQ >= 1, "%s: desc->numHeadsQ %d must be >= 1", fn, d->numHeadsQ);
  ATTN_ARG(d->numHeadsKV >= 1, "%s: desc->numHeadsKV %d must be >= 1", fn, d->numHeadsKV);
  ATTN_ARG(d->numHeadsQ % d->numHeadsKV == 0, "%s: desc->numHeadsQ %d is not divisible by desc->numHeadsKV %d", fn,
           d->numHeadsQ, d->numHeadsKV);
  ATTN_ARG(d->headDim >= 1 && d->headDim <= 256, "%s: desc->headDim %d is not in 1..256", fn, d->headDim);
  ATTN_ARG(d->capacity >= 1, "%s: desc->capacity %lld must be >= 1", fn, static_cast<long long>(d->capacity));
  const int64_t kvWidth = static_cast<int64_t>(d->numHeadsKV) * d->headDim;
  ATTN_ARG(d->capacity <= (int64_t{1} << 44) / kvWidth,
           "%s: desc->capacity %lld x numHeadsKV %d x headDim %d is more than 2^44 elements", fn,
           static_cast<long long>(d->capacity), d->numHeadsKV, d->headDim);
  const int placement = rawEnum(d->placement);
  ATTN_ARG(placement >= 0 && placement < attncclNumKvPlacements,
           "%s: desc->placement %d is not attncclKvPlaceRoundRobin (0) or attncclKvPlaceContiguous (1)", fn, placement);
  ATTN_ARG(d->blockTokens >= 0 && d->blockTokens <= d->capacity,
           "%s: desc->blockTokens %lld is not in 0..capacity %lld (0 = the library's choice)", fn,
           static_cast<long long>(d->blockTokens), static_cast<long long>(d->capacity));
  ATTN_ARG(d->windowLeft >= -1, "%s: desc->windowLeft %lld must be >= -1 (-1 = unbounded)", fn,
           static_cast<long long>(d->windowLeft));
  ATTN_ARG(std::isfinite(d->softmaxScale), "%s: desc->softmaxScale %g is not finite", fn,
           static_cast<double>(d->softmaxScale));
  sh->dtype = d->dtype;
  sh->numHeadsQ = d->numHeadsQ;
  sh->numHeadsKV = d->numHeadsKV;
  sh->headDim = d->headDim;
  sh->windowLeft = d->windowLeft;
  sh->scale = d->softmaxScale != 0.f ? d->softmaxScale : 1.f / std::sqrt(static_cast<float>(d->headDim));
  pl->kind = d->placement;
  pl->nranks = nranks;
  pl->capacity = d->capacity;
  pl->block = d->blockTokens != 0 ? d->blockTokens : defaultKvBlockTokens(d->capacity, nranks);
  return attncclSuccess;
}

attncclResult_t checkCache(const char* fn, attncclKvCache_t cache) {
  ATTN_ARG(cache != nullptr, "%s: cache is NULL", fn);
  ATTN_ARG(cache->magic == attncclKvCache::kMagic && cache->state,
           "%s: cache %p is not a KV cache (destroyed, or never created)", fn, static_cast<void*>(cache));
  return attncclSuccess;
}

// The cache's communicator, still there and usable (checkComm: not aborted, not failed).
attncclResult_t checkCacheComm(const char* fn, const KvState& s) {
  if (s.commGone->load())
    return fail(attncclInvalidUsage,
                "%s: the cache's communicator was aborted, failed or destroyed: the cache can only be destroyed", fn);
  return checkComm(s.comm, fn);
}

attncclResult_t checkKvStream(const char* fn, cudaStream_t stream) {
  ATTN_ARG(stream == nullptr, "%s: stream is %p but the cache's communicator is on the CPU (pass NULL)", fn,
           static_cast<void*>(stream));
  return attncclSuccess;
}

}  // namespace

ATTN_EXPORT attncclResult_t attncclKvCacheCreate(attncclKvCache_t* cache, const attncclKvCacheDesc_t* desc,
                                                 attncclComm_t comm) {
  const char* fn = "attncclKvCacheCreate";
  ATTN_ARG(cache != nullptr, "%s: cache is NULL", fn);
  *cache = nullptr;
  ATTN_CHECK(checkComm(comm, fn));
  if (comm->config.device != ATTNCCL_DEVICE_CPU) {
    return fail(attncclNotSupported,
                "%s: the communicator is on CUDA device %d; this version keeps KV caches on CPU communicators only "
                "(create the cache on a communicator with config.device = ATTNCCL_DEVICE_CPU)",
                fn, comm->config.device);
  }
  KvShape sh;
  KvPlacement pl;
  ATTN_CHECK(resolveKvDesc(fn, desc, comm->nranks, &sh, &pl));
  // A rank that cannot allocate its shard still takes part in the collective check below (with
  // the value 0 for its hash), so every rank fails together instead of waiting for it.
  std::shared_ptr<KvState> s;
  attncclKvCache* handle = nullptr;
  const int64_t shardTokens = pl.shardCapacity(comm->rank);
  std::string allocError;
  try {
    s = std::make_shared<KvState>();
    s->comm = comm;
    s->commGone = attnState(comm).kvCacheLink();
    s->shape = sh;
    s->place = pl;
    s->descHash = descHash(sh, pl);
    s->rank = comm->rank;
    s->shardCapacity = shardTokens;
    const size_t half = static_cast<size_t>(s->shardCapacity) * sh.numHeadsKV * sh.headDim * s->elemBytes();
    if (half > 0) {
      if (regionCreate(2 * half, "attnccl-kvcache", &s->shard) != attncclSuccess) {
        allocError = lastError();
      } else {
        regionRegister(s->shard);
        s->k = static_cast<char*>(s->shard.base);
        s->v = s->k + half;
      }
    }
    if (allocError.empty()) {
      s->pos.resize(static_cast<size_t>(s->shardCapacity));
      for (int64_t i = 0; i < s->shardCapacity; ++i) s->pos[i] = pl.position(comm->rank, i);
      s->doc.assign(static_cast<size_t>(s->shardCapacity), 0);
      handle = new attncclKvCache;
      handle->state = s;
    }
  } catch (const std::bad_alloc&) {
    allocError = "out of memory";
  }
  const uint64_t hash = descHash(sh, pl);
  const uint64_t mine = allocError.empty() ? hash : 0;  // descHash is never 0 in practice
  const int64_t capacity = pl.capacity;
  // Collective: every rank must have made the same cache (the descriptor and the rank count).
  attncclResult_t r = commRun(comm, fn, [comm, mine, hash, shardTokens, capacity, allocError]() -> attncclResult_t {
    std::vector<uint64_t> all(static_cast<size_t>(comm->nranks));
    ATTN_CHECK(comm->engine.allGatherSmall(&mine, sizeof(uint64_t), all.data()));
    for (int p = 0; p < comm->nranks; ++p) {
      if (all[p] == 0 && p == comm->rank)
        return fail(attncclInvalidArgument,
                    "attncclKvCacheCreate: desc->capacity %lld: this rank (%d) could not allocate its shard of %lld "
                    "tokens: %s",
                    static_cast<long long>(capacity), p, static_cast<long long>(shardTokens), allocError.c_str());
      if (all[p] == 0)
        return fail(attncclInvalidArgument,
                    "attncclKvCacheCreate: desc->capacity %lld: rank %d could not allocate its shard",
                    static_cast<long long>(capacity), p);
      if (all[p] != hash)
        return fail(attncclInvalidArgument,
                    "attncclKvCacheCreate: rank %d passed a different cache descriptor than rank %d (hash %016llx vs "
                    "%016llx): every rank must pass the same dtype, heads, headDim, capacity, placement, "
                    "blockTokens, windowLeft and softmaxScale",
                    p, comm->rank, static_cast<unsigned long long>(all[p]), static_cast<unsigned long long>(hash));
    }
    return attncclSuccess;
  });
  if (r != attncclSuccess && r != attncclInProgress) {
    delete handle;
    return r;
  }
  if (handle == nullptr)  // non-blocking: the queued check fails the communicator's call too
    return fail(attncclInvalidArgument,
                "%s: desc->capacity %lld: could not allocate this rank's shard of %lld tokens: %s", fn,
                static_cast<long long>(capacity), static_cast<long long>(shardTokens), allocError.c_str());
  *cache = handle;
  return r;
}

ATTN_EXPORT attncclResult_t attncclKvCacheDestroy(attncclKvCache_t cache) {
  if (cache == nullptr) return attncclSuccess;
  ATTN_CHECK(checkCache("attncclKvCacheDestroy", cache));
  // Queued calls hold their own reference to the state: the shard goes with the last of them.
  cache->magic = 0;
  cache->state.reset();
  delete cache;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclKvCacheLength(attncclKvCache_t cache, int64_t* tokens) {
  const char* fn = "attncclKvCacheLength";
  ATTN_CHECK(checkCache(fn, cache));
  ATTN_ARG(tokens != nullptr, "%s: tokens is NULL", fn);
  *tokens = cache->state->length;
  return attncclSuccess;
}

ATTN_EXPORT attncclResult_t attncclKvCacheAppend(attncclKvCache_t cache, const void* k, const void* v, int64_t n,
                                                 cudaStream_t stream) {
  const char* fn = "attncclKvCacheAppend";
  ATTN_CHECK(checkCache(fn, cache));
  std::shared_ptr<KvState> s = cache->state;
  ATTN_CHECK(checkCacheComm(fn, *s));
  ATTN_CHECK(checkKvStream(fn, stream));
  ATTN_ARG(n >= 1, "%s: n %lld must be >= 1", fn, static_cast<long long>(n));
  ATTN_ARG(n <= s->place.capacity - s->length,
           "%s: n %lld more tokens do not fit: the cache holds %lld of its capacity %lld (nothing was appended)", fn,
           static_cast<long long>(n), static_cast<long long>(s->length), static_cast<long long>(s->place.capacity));
  ATTN_ARG(k != nullptr, "%s: k is NULL (n = %lld)", fn, static_cast<long long>(n));
  ATTN_ARG(v != nullptr, "%s: v is NULL (n = %lld)", fn, static_cast<long long>(n));
  const int64_t first = s->length;
  attncclResult_t r = commRun(s->comm, fn, [s, k, v, first, n]() -> attncclResult_t {
    kvStore(*s, k, v, first, n);
    return attncclSuccess;
  });
  if (r == attncclSuccess || r == attncclInProgress) s->length = first + n;
  return r;
}

ATTN_EXPORT attncclResult_t attncclKvCacheAttend(attncclKvCache_t cache, const void* q, int64_t n, void* out,
                                                 float* lse, cudaStream_t stream) {
  const char* fn = "attncclKvCacheAttend";
  ATTN_CHECK(checkCache(fn, cache));
  std::shared_ptr<KvState> s = cache->state;
  ATTN_CHECK(checkCacheComm(fn, *s));
  ATTN_CHECK(checkKvStream(fn, stream));
  ATTN_ARG(n >= 1, "%s: n %lld must be >= 1 (n = 1: decode, n > 1: a prefill chunk)", fn, static_cast<long long>(n));
  ATTN_ARG(n <= s->length,
           "%s: n %lld is more than the cache's length %lld (the queries are the last n cached positions: append "
           "first)",
           fn, static_cast<long long>(n), static_cast<long long>(s->length));
  ATTN_ARG(q != nullptr, "%s: q is NULL (n = %lld)", fn, static_cast<long long>(n));
  ATTN_ARG(out != nullptr, "%s: out is NULL (n = %lld)", fn, static_cast<long long>(n));
  const int64_t length = s->length;
  return commRun(s->comm, fn,
                 [s, q, n, out, lse, length]() -> attncclResult_t { return kvAttend(*s, length, q, n, out, lse); });
}
