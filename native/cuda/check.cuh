// CUDA error checking for the backend's host code: every runtime call goes through
// CF_CUDA_CHECK, which throws cf::Error naming the call, the error and the place.
#pragma once
#include <cuda_runtime.h>

#include <string>

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
// The device's SM count (a cached attribute: cheap enough to ask at every launch).
inline int sm_count(int device) {
  int v = 0;
  CF_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
  return v;
}
// Lets `kernel` launch with `bytes` of dynamic shared memory (above 48 KB it must opt in).
template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) CF_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}
inline unsigned grid_1d(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}
}  // namespace cf::cuda
