// Caching allocator for CUDA device memory (see native/include/memory.h for the contract).
// Sizes are rounded to 512 bytes below 1 MiB and to 2 MiB above, so freed blocks fit later
// requests of similar size; a cached block is reused for a request if it is at most twice
// (small) or 2 MiB more than (large) the rounded size. Blocks are reused only on the stream
// they were last used on, which keeps reuse ordered without events.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "check.cuh"
#include "memory.h"

namespace cf::cuda {
namespace {

constexpr size_t kSmall = 1 << 20;
constexpr size_t kLargeRound = 2 << 20;

size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n < kSmall) return (n + 511) / 512 * 512;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct Block {
  size_t size;   // of the block, as cached
  size_t asked;  // by the allocation, as counted in allocated_bytes
  Stream stream;
};

struct DeviceCache {
  std::unordered_map<void*, Block> live;
  std::multimap<std::pair<Stream, size_t>, void*> free_blocks;
  MemoryStats stats;
};

std::mutex g_mutex;
std::vector<DeviceCache> g_caches;

DeviceCache& cache_for(int device) {
  if (static_cast<int>(g_caches.size()) <= device) g_caches.resize(device + 1);
  return g_caches[device];
}

void release_cached(int device, DeviceCache& c) {
  if (c.free_blocks.empty()) return;
  CF_CUDA_CHECK(cudaSetDevice(device));
  CF_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [key, ptr] : c.free_blocks) {
    CF_CUDA_CHECK(cudaFree(ptr));
    c.stats.reserved_bytes -= static_cast<int64_t>(key.second);
  }
  c.free_blocks.clear();
}

std::string mib(int64_t b) { return std::to_string(b / (1 << 20)) + " MiB"; }

}  // namespace

void* alloc(int device, size_t nbytes, Stream stream) {
  std::lock_guard<std::mutex> lk(g_mutex);
  DeviceCache& c = cache_for(device);
  const size_t size = round_size(nbytes);
  const size_t limit = size < kSmall ? size * 2 : size + kLargeRound;
  ++c.stats.alloc_calls;
  void* ptr = nullptr;
  size_t got = 0;
  auto it = c.free_blocks.lower_bound({stream, size});
  if (it != c.free_blocks.end() && it->first.first == stream && it->first.second <= limit) {
    ptr = it->second;
    got = it->first.second;
    c.free_blocks.erase(it);
    ++c.stats.cache_hits;
  } else {
    CF_CUDA_CHECK(cudaSetDevice(device));
    cudaError_t e = cudaMalloc(&ptr, size);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached(device, c);
      e = cudaMalloc(&ptr, size);
    }
    // Any other failure (a sticky error left by a faulting kernel, a lost device) is not a
    // lack of memory and must not be reported as one.
    if (e != cudaSuccess && e != cudaErrorMemoryAllocation)
      throw Error(std::string("CUDA error: ") + cudaGetErrorString(e) + " (cudaMalloc of " + std::to_string(size) + " bytes on cuda:" +
                  std::to_string(device) + ")");
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error("CUDA out of memory: tried to allocate " + std::to_string(nbytes) + " bytes on cuda:" +
                  std::to_string(device) + " (" + mib(c.stats.allocated_bytes) + " allocated by clipforge, " +
                  mib(static_cast<int64_t>(free_b)) + " free of " + mib(static_cast<int64_t>(total_b)) + ")");
    }
    got = size;
    ++c.stats.system_allocs;
    c.stats.reserved_bytes += static_cast<int64_t>(size);
  }
#ifdef CLIPFORGE_CUDA_EMULATION
  cf_emu::device_bytes_usable(ptr, nbytes, got);
#endif
  c.live.emplace(ptr, Block{got, nbytes, stream});
  c.stats.allocated_bytes += static_cast<int64_t>(nbytes);
  ++c.stats.live_blocks;
  if (c.stats.allocated_bytes > c.stats.peak_allocated_bytes) c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
  return ptr;
}

void free(int device, void* ptr, Stream stream) {
  std::lock_guard<std::mutex> lk(g_mutex);
  DeviceCache& c = cache_for(device);
  auto it = c.live.find(ptr);
  if (it == c.live.end()) throw Error("cuda free: pointer was not allocated by clipforge");
  const Block b = it->second;
  c.live.erase(it);
  c.stats.allocated_bytes -= static_cast<int64_t>(b.asked);
  --c.stats.live_blocks;
#ifdef CLIPFORGE_CUDA_EMULATION
  cf_emu::device_bytes_usable(ptr, 0, b.size);
#endif
  c.free_blocks.emplace(std::make_pair(stream ? stream : b.stream, b.size), ptr);
}

MemoryStats memory_stats(int device) {
  std::lock_guard<std::mutex> lk(g_mutex);
  return cache_for(device).stats;
}

void empty_cache(int device) {
  std::lock_guard<std::mutex> lk(g_mutex);
  release_cached(device, cache_for(device));
}

void copy_bytes(int device, void* dst, const void* src, size_t nbytes, int kind, Stream stream) {
  if (nbytes == 0) return;
  CF_CUDA_CHECK(cudaSetDevice(device));
  const cudaMemcpyKind k = kind == 0 ? cudaMemcpyHostToDevice : kind == 1 ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
  CF_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, k, as_cuda(stream)));
  // From pageable host memory the runtime has read the source before cudaMemcpyAsync returns,
  // so an upload need not wait for the stream (a wait here would drain the GPU's queue at every
  // batch upload); a download must, before the host reads it.
  if (kind == 1) CF_CUDA_CHECK(cudaStreamSynchronize(as_cuda(stream)));
}

}  // namespace cf::cuda
