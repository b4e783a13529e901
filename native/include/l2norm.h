// L2 normalization over the last axis, as torch.nn.functional.normalize(x, dim=-1):
//   norm = sqrt(sum_i x_i^2)  (saved, f32 [rows]),   y = x / max(norm, eps).
// x, y, dy, dx are [rows, n] with n >= 1; f32 or bf16 storage, f32 math. Backward, from x
// and the saved norm:
//   norm >= eps:  dx = dy / norm - x * (sum_i dy_i x_i) / norm^3
//   norm <  eps:  dx = dy / eps   (the clamp is constant there, as clamp_min's gradient)
// Floor: memory bound; forward moves 2 * rows * n * sizeof(T) bytes, backward 3 * rows * n * sizeof(T).
#pragma once
#include "core.h"

#define CF_L2NORM_OPS(NS)                                                                                         \
  namespace cf::NS {                                                                                              \
  void l2norm_forward(DType dtype, const void* x, void* y, float* norm, int64_t rows, int64_t n, float eps,       \
                      Stream stream);                                                                             \
  void l2norm_backward(DType dtype, const void* x, const float* norm, const void* dy, void* dx, int64_t rows,     \
                       int64_t n, float eps, Stream stream);                                                      \
  }

CF_L2NORM_OPS(cpu)
CF_L2NORM_OPS(cuda)
#undef CF_L2NORM_OPS
