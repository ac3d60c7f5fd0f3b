#include "transport/shm_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include "core/result.h"

namespace attnccl {
namespace {

constexpr uint64_t kRegionMagic = 0xa77cc15e6e0ull;

struct RegionHeader {
  uint64_t magic;
  uint64_t id;
  uint64_t size;
};

uint64_t randomId() {
  static std::mutex m;
  static std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(getpid()) << 32));
  std::lock_guard<std::mutex> lock(m);
  uint64_t v = 0;
  while (v == 0) v = rng();
  return v;
}

struct Registered {
  size_t size;
  RegionHandle handle;
};
std::mutex gRegistryMutex;
std::map<uintptr_t, Registered> gRegistry;  // keyed by usable base

}  // namespace

RegionHandle Region::handle() const {
  RegionHandle h;
  h.pid = getpid();
  h.fd = fd;
  h.id = id;
  h.size = size;
  h.base = reinterpret_cast<uint64_t>(base);
  return h;
}

attncclResult_t regionCreate(size_t size, const char* what, Region* out) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t usable = (size + page - 1) / page * page;
  if (usable == 0) usable = page;
  size_t total = usable + kRegionHeaderBytes;
  int fd = memfd_create(what, MFD_CLOEXEC);
  if (fd < 0) return fail(attncclSystemError, "memfd_create(%s) failed: %s", what, strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
    int e = errno;
    close(fd);
    return fail(attncclSystemError, "ftruncate of a %zu-byte shared region failed: %s", total, strerror(e));
  }
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return fail(attncclSystemError, "mmap of a %zu-byte shared region failed: %s", total, strerror(e));
  }
  auto* hdr = static_cast<RegionHeader*>(p);
  hdr->magic = kRegionMagic;
  hdr->id = randomId();
  hdr->size = usable;
  out->base = static_cast<char*>(p) + kRegionHeaderBytes;
  out->size = usable;
  out->fd = fd;
  out->id = hdr->id;
  return attncclSuccess;
}

void regionDestroy(Region* r) {
  if (r->base == nullptr) return;
  munmap(static_cast<char*>(r->base) - kRegionHeaderBytes, r->size + kRegionHeaderBytes);
  close(r->fd);
  *r = Region();
}

void regionRegister(const Region& r) {
  std::lock_guard<std::mutex> lock(gRegistryMutex);
  gRegistry[reinterpret_cast<uintptr_t>(r.base)] = Registered{r.size, r.handle()};
}

void regionUnregister(void* base) {
  std::lock_guard<std::mutex> lock(gRegistryMutex);
  gRegistry.erase(reinterpret_cast<uintptr_t>(base));
}

bool regionLookup(const void* ptr, size_t bytes, RegionHandle* h) {
  uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(gRegistryMutex);
  auto it = gRegistry.upper_bound(p);
  if (it == gRegistry.begin()) return false;
  --it;
  if (p < it->first || p + bytes > it->first + it->second.size) return false;
  *h = it->second.handle;
  return true;
}

RegionMapper::~RegionMapper() { clear(); }

void RegionMapper::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& e : entries_) {
    if (e.mapping) munmap(e.mapping, e.mapBytes);
  }
  entries_.clear();
}

attncclResult_t RegionMapper::map(const RegionHandle& h, void** out, bool pin) {
  // A thread of this process: the owner's address is valid while the owner keeps the region.
  // Pinned mappings (peers' control segments) must outlive the owner's communicator, so they
  // get a mapping of their own like any other process's region.
  if (h.pid == getpid() && !pin) {
    *out = reinterpret_cast<void*>(h.base);
    return attncclSuccess;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->pid == h.pid && it->id == h.id) {
      entries_.splice(entries_.begin(), entries_, it);  // most recently used first
      entries_.front().pinned |= pin;
      *out = entries_.front().usable;
      return attncclSuccess;
    }
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd/%d", h.pid, h.fd);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return fail(errno == ENOENT ? attncclRemoteError : attncclSystemError,
                "cannot open the shared region of process %d (%s): %s; if /proc access is restricted here, use "
                "ATTNCCL_TRANSPORT=ucx",
                h.pid, path, strerror(errno));
  }
  size_t total = h.size + kRegionHeaderBytes;
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return fail(attncclSystemError, "mmap of process %d's region failed: %s", h.pid, strerror(e));
  auto* hdr = static_cast<RegionHeader*>(p);
  if (hdr->magic != kRegionMagic || hdr->id != h.id || hdr->size < h.size) {
    munmap(p, total);
    return fail(attncclRemoteError, "process %d's shared region %d is not the one expected (stale handle)", h.pid,
                h.fd);
  }
  entries_.push_front(Entry{h.pid, h.id, p, total, static_cast<char*>(p) + kRegionHeaderBytes, pin});
  if (entries_.size() > kMaxEntries) {
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
      if (!it->pinned) {
        munmap(it->mapping, it->mapBytes);
        entries_.erase(std::next(it).base());
        break;
      }
    }
  }
  *out = entries_.front().usable;
  return attncclSuccess;
}

}  // namespace attnccl
