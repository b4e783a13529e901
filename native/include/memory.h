// Device memory: allocation, copies and statistics for each backend.
// CPU memory is 64-byte aligned and cached in size bins (native/cpu/memory.cpp). CUDA memory comes from a caching allocator per device:
// size-binned free lists, blocks reused only on the stream they were freed on (no events:
// work on one stream runs in order, and each device has one stream), cudaMalloc only when
// the cache misses (after one retry with the cache emptied).
#pragma once
#include "core.h"

namespace cf {

struct MemoryStats {
  int64_t allocated_bytes = 0;  // bytes asked for by live allocations
  int64_t peak_allocated_bytes = 0;
  int64_t reserved_bytes = 0;   // bytes obtained from the system (live + cached)
  int64_t live_blocks = 0;
  int64_t alloc_calls = 0;      // allocations requested
  int64_t system_allocs = 0;    // of which reached the system allocator (cache misses)
  int64_t cache_hits = 0;
};

namespace cpu {
void* alloc(size_t nbytes);
void free(void* ptr, size_t nbytes);
MemoryStats memory_stats();
// Returns cached, unused blocks to the system.
void empty_cache();
}  // namespace cpu

namespace cuda {
void* alloc(int device, size_t nbytes, Stream stream);
void free(int device, void* ptr, Stream stream);
MemoryStats memory_stats(int device);
void empty_cache(int device);
// Copies; `kind` 0 host->device, 1 device->host, 2 device->device. Host copies are
// synchronous with respect to the host buffer: host->device returns once the (pageable)
// source has been read, without waiting for the stream's earlier work; device->host waits
// for the stream. The host buffer must not be pinned memory.
void copy_bytes(int device, void* dst, const void* src, size_t nbytes, int kind, Stream stream);
}  // namespace cuda

}  // namespace cf
