// CUDA error checking for the backend's host code: every runtime call goes through
// CF_CUDA_CHECK, which throws cf::Error naming the call, the error and the place.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "core.h"

#define CF_CUDA_CHECK(expr)                                                                          \
  do {                                                                                               \
    cudaError_t cf_err_ = (expr);                                                                    \
    if (cf_err_ != cudaSuccess)                                                                      \
      throw ::cf::Error(std::string("CUDA error: ") + cudaGetErrorString(cf_err_) + " (" #expr ") at " + \
                        __FILE__ + ":" + std::to_string(__LINE__));                                  \
  } while (0)

namespace cf::cuda {
inline cudaStream_t as_cuda(Stream s) { return static_cast<cudaStream_t>(s); }
inline int current_device() {
  int dev = 0;
  CF_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}
// A device attribute that cannot change while the process runs (a positive number), asked
// once per device: the GEMMs consult them at every launch.
template <cudaDeviceAttr A>
int device_attribute(int device) {
  constexpr int kCached = 64;
  static std::atomic<int> cache[kCached];  // 0: not asked yet
  const bool cached = device >= 0 && device < kCached;
  if (cached) {
    const int v = cache[device].load(std::memory_order_relaxed);
    if (v) return v;
  }
  int v = 0;
  CF_CUDA_CHECK(cudaDeviceGetAttribute(&v, A, device));
  if (cached) cache[device].store(v, std::memory_order_relaxed);
  return v;
}
inline int sm_count(int device) { return device_attribute<cudaDevAttrMultiProcessorCount>(device); }
// Lets `kernel` launch on the current device with `bytes` of dynamic shared memory (above 48 KB
// it must opt in). The attribute is set once per kernel, device and size, not at every launch.
template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return;
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, size_t> allowed;
  const std::pair<const void*, int> key(reinterpret_cast<const void*>(kernel), current_device());
  std::lock_guard<std::mutex> lock(mu);
  size_t& done = allowed[key];
  if (done >= bytes) return;
  CF_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  done = bytes;
}
inline unsigned grid_1d(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}
}  // namespace cf::cuda
