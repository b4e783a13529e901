#include "memory.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>

namespace cf::cpu {
namespace {
std::mutex g_mutex;
MemoryStats g_stats;
}  // namespace

void* alloc(size_t nbytes) {
  const size_t rounded = ((nbytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw Error("out of host memory allocating " + std::to_string(nbytes) + " bytes");
  std::lock_guard<std::mutex> lk(g_mutex);
  g_stats.allocated_bytes += static_cast<int64_t>(nbytes);
  g_stats.reserved_bytes += static_cast<int64_t>(nbytes);
  if (g_stats.allocated_bytes > g_stats.peak_allocated_bytes) g_stats.peak_allocated_bytes = g_stats.allocated_bytes;
  ++g_stats.live_blocks;
  ++g_stats.alloc_calls;
  ++g_stats.system_allocs;
  return p;
}

void free(void* ptr, size_t nbytes) {
  std::free(ptr);
  std::lock_guard<std::mutex> lk(g_mutex);
  g_stats.allocated_bytes -= static_cast<int64_t>(nbytes);
  g_stats.reserved_bytes -= static_cast<int64_t>(nbytes);
  --g_stats.live_blocks;
}

MemoryStats memory_stats() {
  std::lock_guard<std::mutex> lk(g_mutex);
  return g_stats;
}

}  // namespace cf::cpu
