// LayerNorm over the last axis. x, y, dy, dx are [rows, n] with n >= 1; weight, bias,
// dweight, dbias are [n] (same dtype as x; weight and bias may be null, meaning 1 and 0);
// mean and rstd are [rows] f32. f32 or bf16 storage, f32 math. Per row:
//   mean = sum_i x_i / n,   var = sum_i (x_i - mean)^2 / n (biased, as PyTorch),
//   rstd = 1 / sqrt(var + eps),   xhat_i = (x_i - mean) * rstd,   y_i = xhat_i * w_i + b_i.
// Backward, with g_i = dy_i * w_i:
//   dx_i = rstd * (g_i - mean_j g_j - xhat_i * mean_j (g_j xhat_j))
//   dweight_i = sum_rows dy_i xhat_i,   dbias_i = sum_rows dy_i
// Any of dx, dweight, dbias may be null (not computed). dweight and dbias are summed over
// rows in a fixed order on both backends, so they are deterministic.
// Floor: memory bound; forward moves 2 * rows * n * sizeof(T) bytes, backward
// 3 * rows * n * sizeof(T) (x, dy read, dx written; mean, rstd and the [n] vectors are small).
#pragma once
#include "core.h"

#define CF_LAYERNORM_OPS(NS)                                                                                      \
  namespace cf::NS {                                                                                              \
  void layernorm_forward(DType dtype, const void* x, const void* weight, const void* bias, void* y, float* mean,   \
                         float* rstd, int64_t rows, int64_t n, float eps, Stream stream);                         \
  void layernorm_backward(DType dtype, const void* x, const void* weight, const float* mean, const float* rstd,   \
                          const void* dy, void* dx, void* dweight, void* dbias, int64_t rows, int64_t n,          \
                          Stream stream);                                                                         \
  }

CF_LAYERNORM_OPS(cpu)
CF_LAYERNORM_OPS(cuda)
#undef CF_LAYERNORM_OPS
