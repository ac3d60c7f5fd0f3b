// Shared memory regions: memfd-backed mappings that other processes on the node open through
// /proc/<pid>/fd/<fd> (no name in /dev/shm, so nothing can leak when a process dies) and that
// threads of the same process use at the owner's address. Every region starts with a header page
// holding a random id, so a peer can tell a stale handle (the fd number reused) from the region
// it meant. attncclMemAlloc hands out such regions; a registry finds the region of any pointer
// so a transfer from inside one can be read by the peer in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>

#include "attnccl.h"

namespace attnccl {

// What a peer needs to map a region.
struct RegionHandle {
  int32_t pid = 0;
  int32_t fd = -1;
  uint64_t id = 0;
  uint64_t size = 0;   // usable bytes after the header page
  uint64_t base = 0;   // owner's address of the usable bytes
};

struct Region {
  void* base = nullptr;  // usable bytes (after the header page)
  size_t size = 0;
  int fd = -1;
  uint64_t id = 0;
  RegionHandle handle() const;
};

constexpr size_t kRegionHeaderBytes = 4096;

// Creates a region of `size` usable bytes (zero-filled).
attncclResult_t regionCreate(size_t size, const char* what, Region* out);
void regionDestroy(Region* r);

// Process-wide registry of library-allocated regions (attncclMemAlloc and library windows).
void regionRegister(const Region& r);
void regionUnregister(void* base);
// If [ptr, ptr+bytes) lies inside a registered region, fills *h and returns true.
bool regionLookup(const void* ptr, size_t bytes, RegionHandle* h);

// Maps peers' regions, caching the mappings (least recently used are unmapped past a bound).
class RegionMapper {
 public:
  ~RegionMapper();
  // Address of the region's usable bytes in this process, or an error (peer gone, no permission,
  // stale handle). Pinned mappings (control segments) are never evicted and always are a mapping
  // of their own, valid after the owner unmaps (same-process peers included).
  attncclResult_t map(const RegionHandle& h, void** out, bool pin = false);
  void clear();

 private:
  struct Entry {
    int32_t pid;
    uint64_t id;
    void* mapping;  // whole mapping (header included); nullptr for same-process regions
    size_t mapBytes;
    void* usable;
    bool pinned;
  };
  std::mutex mutex_;  // attention executors may map from pool threads
  std::list<Entry> entries_;
  static constexpr size_t kMaxEntries = 256;
};

}  // namespace attnccl
