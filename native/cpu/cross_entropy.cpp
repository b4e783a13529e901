// Cross-entropy of logits [rows, C] against i32 labels [rows], fused with the log-softmax
// (formulas in cross_entropy.h). Labels are checked first, serially (cheap, and a kernel
// must not throw from inside the thread pool); then each row is max, exp-and-sum and one
// gather, in contiguous passes. Mean and sum add the row losses in row order, in double.
// Floor: memory bound; forward reads rows * C * sizeof(T) bytes, backward reads and writes
// rows * C * sizeof(T) each.
#include "cross_entropy.h"

#include <cmath>
#include <string>
#include <vector>

#include "row_math.h"
#include "threadpool.h"

namespace cf::cpu {
using namespace rowmath;

namespace {

void check_labels(const int32_t* labels, int64_t rows, int64_t classes, int32_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t y = labels[r];
    if (y != ignore_index && (y < 0 || y >= classes))
      throw Error("crossEntropy: expected labels in [0, " + std::to_string(classes) + ") or ignoreIndex " +
                  std::to_string(ignore_index) + " for labels[" + std::to_string(r) + "], got " + std::to_string(y));
  }
}

int64_t count_kept(const int32_t* labels, int64_t rows, int32_t ignore_index) {
  int64_t k = 0;
  for (int64_t r = 0; r < rows; ++r) k += labels[r] != ignore_index;
  return k;
}

}  // namespace

void cross_entropy_forward(DType dtype, const void* logits, const int32_t* labels, void* outv, float* lse, int64_t rows,
                           int64_t classes, CrossEntropyReduction reduction, int32_t ignore_index, float smoothing, Stream) {
  check_labels(labels, rows, classes, ignore_index);
  const int64_t n = classes;
  const float keep = 1.0f - smoothing, spread = smoothing / static_cast<float>(n);
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(logits);
    T* out = static_cast<T*>(outv);
    std::vector<float> row_loss(reduction == CrossEntropyReduction::None ? 0 : rows);
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      Row<T> xin(n);
      std::vector<float> ex(n);
      for (int64_t r = b; r < e; ++r) {
        const float* xr = xin.load(x + r * n);
        const float m = lane_max(xr, n);
        exp_shifted(xr, m, ex.data(), n);
        float s, sx;
        lane_sum2(n, &s, &sx, [&](int64_t i, float& a, float& c) {
          a += ex[i];
          c += xr[i] - m;
        });
        const float ls = std::log(s);
        lse[r] = m + ls;
        // lse - keep x_y - spread sum(x), written with x - m (exact near the max), using keep + spread C = 1.
        const int32_t y = labels[r];
        const float loss = y == ignore_index ? 0.0f : ls - keep * (xr[y] - m) - spread * sx;
        if (reduction == CrossEntropyReduction::None) Elem<T>::store(out, r, loss);
        else row_loss[r] = loss;
      }
    });
    if (reduction != CrossEntropyReduction::None) {
      double total = 0;
      for (int64_t r = 0; r < rows; ++r) total += row_loss[r];
      if (reduction == CrossEntropyReduction::Mean) total /= static_cast<double>(count_kept(labels, rows, ignore_index));
      Elem<T>::store(out, 0, static_cast<float>(total));
    }
  });
}

void cross_entropy_backward(DType dtype, const void* logits, const int32_t* labels, const float* lse, const void* dyv,
                            void* dlogits, int64_t rows, int64_t classes, CrossEntropyReduction reduction,
                            int32_t ignore_index, float smoothing, Stream) {
  check_labels(labels, rows, classes, ignore_index);
  const int64_t n = classes;
  const float keep = 1.0f - smoothing, spread = smoothing / static_cast<float>(n);
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(logits);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dlogits);
    float scale = 0.0f;
    if (reduction == CrossEntropyReduction::Sum) scale = Elem<T>::load(dy, 0);
    if (reduction == CrossEntropyReduction::Mean)
      scale = static_cast<float>(Elem<T>::load(dy, 0) / static_cast<double>(count_kept(labels, rows, ignore_index)));
    parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
      Row<T> xin(n), dout(n);
      for (int64_t r = b; r < e; ++r) {
        float* dr = dout.target(dx + r * n);
        const int32_t y = labels[r];
        if (y == ignore_index) {
          for (int64_t i = 0; i < n; ++i) dr[i] = 0.0f;
        } else {
          const float* xr = xin.load(x + r * n);
          const float g = reduction == CrossEntropyReduction::None ? Elem<T>::load(dy, r) : scale;
          const float l = lse[r], gs = g * spread;
          exp_shifted(xr, l, dr, n);
          for (int64_t i = 0; i < n; ++i) dr[i] = g * dr[i] - gs;
          dr[y] -= g * keep;
        }
        dout.store(dx + r * n);
      }
    });
  });
}

}  // namespace cf::cpu
