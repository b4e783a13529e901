#include "reduce.h"

#include <cmath>
#include <vector>

#include "threadpool.h"

namespace cf::cpu {

void reduce(ReduceOp op, DType dtype, DType out_dtype, const void* xv, void* outv, int32_t* indices, int64_t outer, int64_t n,
            int64_t inner, Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, out_dtype, T, TO, {
    const T* x = static_cast<const T*>(xv);
    TO* out = static_cast<TO*>(outv);
    // Each task owns whole rows of `outer` and walks k in order, accumulating a row of `inner`
    // values in double, so reads stay contiguous.
    parallel_for(outer, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, n * inner)), [&](int64_t b, int64_t e) {
      std::vector<double> acc(inner);
      std::vector<int32_t> arg(inner);
      for (int64_t o = b; o < e; ++o) {
        const T* base = x + o * n * inner;
        if (op == ReduceOp::Max) {
          for (int64_t i = 0; i < inner; ++i) {
            acc[i] = n ? Elem<T>::load(base, i) : -INFINITY;
            arg[i] = 0;
          }
          for (int64_t k = 1; k < n; ++k)
            for (int64_t i = 0; i < inner; ++i) {
              const double v = Elem<T>::load(base, k * inner + i);
              // NaN wins, so a NaN anywhere shows in the result.
              if (v > acc[i] || (std::isnan(v) && !std::isnan(acc[i]))) {
                acc[i] = v;
                arg[i] = static_cast<int32_t>(k);
              }
            }
        } else {
          for (int64_t i = 0; i < inner; ++i) acc[i] = 0;
          for (int64_t k = 0; k < n; ++k)
            for (int64_t i = 0; i < inner; ++i) acc[i] += Elem<T>::load(base, k * inner + i);
          if (op == ReduceOp::Mean)
            for (int64_t i = 0; i < inner; ++i) acc[i] /= static_cast<double>(n);
        }
        for (int64_t i = 0; i < inner; ++i) {
          Elem<TO>::store(out, o * inner + i, static_cast<float>(acc[i]));
          if (indices) indices[o * inner + i] = arg[i];
        }
      }
    });
  });
}

void reduce_max_backward(DType dtype, const void* dyv, const int32_t* indices, void* dxv, int64_t outer, int64_t n, int64_t inner,
                         Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    parallel_for(outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        for (int64_t k = 0; k < n; ++k)
          for (int64_t i = 0; i < inner; ++i)
            Elem<T>::store(dx, (o * n + k) * inner + i, indices[o * inner + i] == k ? Elem<T>::load(dy, o * inner + i) : 0.0f);
    });
  });
}

}  // namespace cf::cpu
