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
inline unsigned grid_1d(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}
}  // namespace cf::cuda
