// Softmax and log-softmax over the last axis. x, y, dy and dx are [rows, n] with n >= 1,
// f32 or bf16 storage, f32 math. With m = max_j x_j and s = sum_j exp(x_j - m) (the max is
// subtracted so no exp overflows):
//   softmax:      y = exp(x - m) / s
//   log-softmax:  y = x - m - log(s)
// The backward reads the saved output y, not x:
//   softmax:      dx = y * (dy - sum_j dy_j y_j)
//   log-softmax:  dx = dy - exp(y) * sum_j dy_j
// Floor: memory bound; forward moves 2 * rows * n * sizeof(T) bytes, backward 3 * rows * n * sizeof(T).
#pragma once
#include "core.h"

#define CF_SOFTMAX_OPS(NS)                                                                                        \
  namespace cf::NS {                                                                                              \
  void softmax_forward(DType dtype, bool log, const void* x, void* y, int64_t rows, int64_t n, Stream stream);    \
  void softmax_backward(DType dtype, bool log, const void* y, const void* dy, void* dx, int64_t rows, int64_t n,  \
                        Stream stream);                                                                           \
  }

CF_SOFTMAX_OPS(cpu)
CF_SOFTMAX_OPS(cuda)
#undef CF_SOFTMAX_OPS
