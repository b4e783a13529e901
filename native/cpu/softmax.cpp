// Softmax and log-softmax over the last axis of x [rows, n], forward and backward from the
// saved output (formulas in softmax.h). Each row is one task's work, in three contiguous
// passes (max, exp-and-sum, scale) that vectorize; rows are split across the thread pool.
// Floor: memory bound; forward 2 * rows * n * sizeof(T) bytes, backward 3 * rows * n * sizeof(T).
#include "softmax.h"

#include <cmath>
#include <vector>

#include "row_math.h"
#include "threadpool.h"

namespace cf::cpu {
using namespace rowmath;

void softmax_forward(DType dtype, bool log, const void* xv, void* yv, int64_t rows, int64_t n, Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      Row<T> xin(n), yout(n);
      std::vector<float> ex(log ? n : 0);
      for (int64_t r = b; r < e; ++r) {
        const float* xr = xin.load(x + r * n);
        float* yr = yout.target(y + r * n);
        const float m = lane_max(xr, n);
        // Softmax exponentiates straight into the output; log-softmax only needs the sum.
        float* er = log ? ex.data() : yr;
        exp_shifted(xr, m, er, n);
        const float s = lane_sum(n, [&](int64_t i) { return er[i]; });
        if (log) {
          // (x - m) - log(s): x - m is exact for x near m, so large logits keep their precision.
          const float ls = std::log(s);
          for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) - ls;
        } else {
          const float inv = 1.0f / s;
          for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
        }
        yout.store(y + r * n);
      }
    });
  });
}

void softmax_backward(DType dtype, bool log, const void* yv, const void* dyv, void* dxv, int64_t rows, int64_t n, Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* y = static_cast<const T*>(yv);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      Row<T> yin(n), gin(n), dout(n);
      for (int64_t r = b; r < e; ++r) {
        const float* yr = yin.load(y + r * n);
        const float* gr = gin.load(dy + r * n);
        float* dr = dout.target(dx + r * n);
        if (log) {
          const float s = lane_sum(n, [&](int64_t i) { return gr[i]; });
          exp_shifted(yr, 0.0f, dr, n);
          for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] - dr[i] * s;
        } else {
          const float s = lane_sum(n, [&](int64_t i) { return gr[i] * yr[i]; });
          for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - s);
        }
        dout.store(dx + r * n);
      }
    });
  });
}

}  // namespace cf::cpu
