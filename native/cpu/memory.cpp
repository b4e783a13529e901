// Host memory with a small cache: freed blocks are kept in size-binned free lists and
// handed out again, so a training step does not pay for fresh pages (and their faults) on
// every tensor. Sizes round up to the next step of a 1, 1.25, 1.5, 1.75 × 2^k series, so a
// block is at most 25% larger than asked. The cache holds at most kMaxCachedBytes; beyond
// that, freed blocks go straight back to the system.
#include "memory.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

namespace cf::cpu {
namespace {

constexpr size_t kMaxCachedBytes = size_t(1) << 30;

size_t bin_size(size_t n) {
  if (n <= 256) return 256;
  size_t p = 1;
  while (p * 2 <= n) p *= 2;
  const size_t quarter = p / 4;
  return (n + quarter - 1) / quarter * quarter;
}

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;
  std::unordered_map<void*, std::pair<size_t, size_t>> live;  // pointer -> (block size, bytes asked for)
  size_t cached_bytes = 0;
  MemoryStats stats;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: finalizers may free blocks during exit
  return *c;
}

void release_cached(Cache& c) {
  for (auto& [size, ptr] : c.free_blocks) {
    std::free(ptr);
    c.stats.reserved_bytes -= static_cast<int64_t>(size);
  }
  c.free_blocks.clear();
  c.cached_bytes = 0;
}

}  // namespace

void* alloc(size_t nbytes) {
  Cache& c = cache();
  const size_t size = bin_size(nbytes);
  std::lock_guard<std::mutex> lk(c.mutex);
  ++c.stats.alloc_calls;
  void* p = nullptr;
  auto it = c.free_blocks.find(size);
  if (it != c.free_blocks.end()) {
    p = it->second;
    c.free_blocks.erase(it);
    c.cached_bytes -= size;
    ++c.stats.cache_hits;
  } else {
    p = std::aligned_alloc(64, size);
    if (!p) {
      release_cached(c);
      p = std::aligned_alloc(64, size);
    }
    if (!p) throw Error("out of host memory allocating " + std::to_string(nbytes) + " bytes");
    ++c.stats.system_allocs;
    c.stats.reserved_bytes += static_cast<int64_t>(size);
  }
  c.live.emplace(p, std::make_pair(size, nbytes));
  c.stats.allocated_bytes += static_cast<int64_t>(nbytes);
  if (c.stats.allocated_bytes > c.stats.peak_allocated_bytes) c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
  ++c.stats.live_blocks;
  return p;
}

void free(void* ptr, size_t) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mutex);
  auto it = c.live.find(ptr);
  if (it == c.live.end()) throw Error("cpu free: pointer was not allocated by clipforge");
  const auto [size, asked] = it->second;
  c.live.erase(it);
  c.stats.allocated_bytes -= static_cast<int64_t>(asked);
  --c.stats.live_blocks;
  if (c.cached_bytes + size <= kMaxCachedBytes) {
    c.free_blocks.emplace(size, ptr);
    c.cached_bytes += size;
  } else {
    std::free(ptr);
    c.stats.reserved_bytes -= static_cast<int64_t>(size);
  }
}

MemoryStats memory_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mutex);
  return c.stats;
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mutex);
  release_cached(c);
}

}  // namespace cf::cpu
