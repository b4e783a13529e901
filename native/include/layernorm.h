// LayerNorm over the last axis. x, y, dy, dx are [rows, n] with n >= 1; weight, bias,
// dweight, dbias are [n] (same dtype as x; weight and bias may be null, meaning 1 and 0);
// mean and rstd are [rows] f32. f32 or bf16 storage, f32 math. Per row:
//   mean = sum_i x_i / n,   var = sum_i (x_i - mean)^2 / n (biased, as PyTorch),
//   rstd = 1 / sqrt(var + eps),   xhat_i = (x_i - mean) * rstd,   y_i = xhat_i * w_i + b_i.
// Backward, with g_i = dy_i * w_i:
//   dx_i = rstd * (g_i - mean_j g_j - xhat_i * mean_j (g_j xhat_j))
//   dweight_i = sum_rows dy_i xhat_i,   dbias_i = sum_rows dy_i
// Any of dx, dweight, dbias may be null (not computed). With accumulate, dx += its value
// instead (a residual stream's gradient taking the norm's in place). dweight and dbias are summed over
// rows in a fixed order on both backends, so they are deterministic.
// y (and so dy) may be bf16 when x is f32 (y_dtype): the normalized rows go straight to a
// bf16 product under autocast, rounded once, instead of being written in f32 and cast.
// Floor: memory bound; forward moves rows * n * (sizeof(T) + sizeof(TY)) bytes, backward
// rows * n * (2 sizeof(T) + sizeof(TY)) (x, dy read, dx written; mean, rstd and the [n]
// vectors are small).
#pragma once
#include "core.h"

// Runs the statements with T bound to x's storage type and TY to y's: both f32, both bf16, or
// f32 x with bf16 y (the addon refuses the other mix).
#define CF_LAYERNORM_DTYPES(dtype, y_dtype, T, TY, ...)                                   \
  do {                                                                                     \
    if ((dtype) == ::cf::DType::F32 && (y_dtype) == ::cf::DType::BF16) {                   \
      using T = float;                                                                     \
      using TY = ::cf::bf16;                                                               \
      __VA_ARGS__;                                                                         \
    } else if ((y_dtype) == (dtype)) {                                                     \
      CF_FLOAT_DTYPE(dtype, T, using TY = T; __VA_ARGS__);                                 \
    } else {                                                                               \
      throw ::cf::Error(std::string("layernorm: unsupported dtypes ") +                    \
                        ::cf::dtype_name(dtype) + " (x) and " + ::cf::dtype_name(y_dtype) + " (y)"); \
    }                                                                                      \
  } while (0)

#define CF_LAYERNORM_OPS(NS)                                                                                      \
  namespace cf::NS {                                                                                              \
  void layernorm_forward(DType dtype, DType y_dtype, const void* x, const void* weight, const void* bias, void* y, \
                         float* mean, float* rstd, int64_t rows, int64_t n, float eps, Stream stream);            \
  void layernorm_backward(DType dtype, DType dy_dtype, const void* x, const void* weight, const float* mean,      \
                          const float* rstd, const void* dy, void* dx, bool accumulate, void* dweight,            \
                          void* dbias, int64_t rows, int64_t n, Stream stream);                                   \
  }

CF_LAYERNORM_OPS(cpu)
CF_LAYERNORM_OPS(cuda)
#undef CF_LAYERNORM_OPS
