// L2 normalization over the last axis of x [rows, n], forward and backward (formulas in
// l2norm.h): per row one vectorized sum (of squares, or of dy * x) and one scaled write.
// Floor: memory bound; forward 2 * rows * n * sizeof(T) bytes, backward 3 * rows * n * sizeof(T).
#include "l2norm.h"

#include <cmath>

#include "row_math.h"
#include "threadpool.h"

namespace cf::cpu {
using namespace rowmath;

void l2norm_forward(DType dtype, const void* xv, void* yv, float* norm, int64_t rows, int64_t n, float eps, Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      Row<T> xin(n), yout(n);
      for (int64_t r = b; r < e; ++r) {
        const float* xr = xin.load(x + r * n);
        float* yr = yout.target(y + r * n);
        const float nr = std::sqrt(lane_sum(n, [&](int64_t i) { return xr[i] * xr[i]; }));
        norm[r] = nr;
        const float inv = 1.0f / (nr >= eps ? nr : eps);
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv;
        yout.store(y + r * n);
      }
    });
  });
}

void l2norm_backward(DType dtype, const void* xv, const float* norm, const void* dyv, void* dxv, int64_t rows, int64_t n,
                     float eps, Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(xv);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      Row<T> xin(n), gin(n), dout(n);
      for (int64_t r = b; r < e; ++r) {
        const float* gr = gin.load(dy + r * n);
        float* dr = dout.target(dx + r * n);
        const float nr = norm[r];
        if (nr >= eps) {
          const float* xr = xin.load(x + r * n);
          const float inv = 1.0f / nr;
          // inv * (dy - x * dot(dy, x) / norm^2): no norm^3, which overflows for tiny norms.
          const float c = lane_sum(n, [&](int64_t i) { return gr[i] * xr[i]; }) * inv * inv;
          for (int64_t i = 0; i < n; ++i) dr[i] = (gr[i] - xr[i] * c) * inv;
        } else {
          const float inv = 1.0f / eps;
          for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] * inv;
        }
        dout.store(dx + r * n);
      }
    });
  });
}

}  // namespace cf::cpu
