// LayerNorm over the last axis of x [rows, n], forward and backward (formulas in
// layernorm.h). Each row is a few contiguous passes that vectorize (sum, sum of squared
// deviations, write); weight/bias presence is resolved once per call, not per element.
// dweight/dbias: rows are cut into chunks whose size depends only on (rows, n); each chunk
// sums its rows into its own partial [2, n], and the partials are added in chunk order, so
// the result does not depend on the thread count.
// Floor: memory bound (layernorm.h).
#include "layernorm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "row_math.h"
#include "threadpool.h"

namespace cf::cpu {
using namespace rowmath;

namespace {

template <typename F>
void with_flags(bool a, bool b, F&& f) {
  if (a && b) f(std::true_type{}, std::true_type{});
  else if (a) f(std::true_type{}, std::false_type{});
  else if (b) f(std::false_type{}, std::true_type{});
  else f(std::false_type{}, std::false_type{});
}

}  // namespace

void layernorm_forward(DType dtype, DType y_dtype, const void* xv, const void* weight, const void* bias, void* yv, float* mean,
                       float* rstd, int64_t rows, int64_t n, float eps, Stream) {
  CF_LAYERNORM_DTYPES(dtype, y_dtype, T, TY, {
    const T* x = static_cast<const T*>(xv);
    TY* y = static_cast<TY*>(yv);
    const std::vector<float> wv = values_f32<T>(weight, n), bv = values_f32<T>(bias, n);
    const float* w = wv.data();
    const float* bb = bv.data();
    const float inv_n = 1.0f / static_cast<float>(n);
    with_flags(weight != nullptr, bias != nullptr, [&](auto has_w, auto has_b) {
      parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
        Row<T> xin(n);
        Row<TY> yout(n);
        for (int64_t r = b; r < e; ++r) {
          const float* xr = xin.load(x + r * n);
          float* yr = yout.target(y + r * n);
          const float mu = lane_sum(n, [&](int64_t i) { return xr[i]; }) * inv_n;
          const float var = lane_sum(n, [&](int64_t i) {
                              const float d = xr[i] - mu;
                              return d * d;
                            }) * inv_n;
          const float rs = 1.0f / std::sqrt(var + eps);
          mean[r] = mu;
          rstd[r] = rs;
          for (int64_t i = 0; i < n; ++i) {
            float v = (xr[i] - mu) * rs;
            if constexpr (decltype(has_w)::value) v *= w[i];
            if constexpr (decltype(has_b)::value) v += bb[i];
            yr[i] = v;
          }
          yout.store(y + r * n);
        }
      });
    });
  });
}

void layernorm_backward(DType dtype, DType dy_dtype, const void* xv, const void* weight, const float* mean, const float* rstd,
                        const void* dyv, void* dxv, bool accumulate, void* dweight, void* dbias, int64_t rows, int64_t n, Stream) {
  CF_LAYERNORM_DTYPES(dtype, dy_dtype, T, TY, {
    const T* x = static_cast<const T*>(xv);
    const TY* dy = static_cast<const TY*>(dyv);
    T* dx = static_cast<T*>(dxv);
    const std::vector<float> wv = values_f32<T>(weight, n);
    const float* w = wv.data();
    const float inv_n = 1.0f / static_cast<float>(n);
    const bool want_params = dweight || dbias;
    // Chunks of at least ~32k elements, and at most 256 of them (bounds the partials' memory).
    const int64_t chunk = std::max<int64_t>({1, (1 << 15) / n, (rows + 255) / 256});
    const int64_t chunks = (rows + chunk - 1) / chunk;
    std::vector<float> partial(want_params ? chunks * 2 * n : 0, 0.0f);
    with_flags(weight != nullptr, want_params, [&](auto has_w, auto params) {
      parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
        Row<T> xin(n), dout(n);
        Row<TY> gin(n);
        for (int64_t c = cb; c < ce; ++c) {
          float* pw = want_params ? partial.data() + c * 2 * n : nullptr;
          float* pb = want_params ? pw + n : nullptr;
          for (int64_t r = c * chunk; r < std::min(rows, (c + 1) * chunk); ++r) {
            const float* xr = xin.load(x + r * n);
            const float* gr = gin.load(dy + r * n);
            const float mu = mean[r], rs = rstd[r];
            if constexpr (decltype(params)::value) {
              for (int64_t i = 0; i < n; ++i) {
                pw[i] += gr[i] * ((xr[i] - mu) * rs);
                pb[i] += gr[i];
              }
            }
            if (!dx) continue;
            float sg, sgx;
            lane_sum2(n, &sg, &sgx, [&](int64_t i, float& a, float& b) {
              float g = gr[i];
              if constexpr (decltype(has_w)::value) g *= w[i];
              a += g;
              b += g * ((xr[i] - mu) * rs);
            });
            const float mg = sg * inv_n, mgx = sgx * inv_n;
            float* dr = accumulate ? dout.update(dx + r * n) : dout.target(dx + r * n);
            for (int64_t i = 0; i < n; ++i) {
              float g = gr[i];
              if constexpr (decltype(has_w)::value) g *= w[i];
              const float v = rs * (g - mg - (xr[i] - mu) * rs * mgx);
              dr[i] = accumulate ? dr[i] + v : v;
            }
            dout.store(dx + r * n);
          }
        }
      });
    });
    if (want_params) {
      std::vector<float> sw(n, 0.0f), sb(n, 0.0f);
      for (int64_t c = 0; c < chunks; ++c) {
        const float* pw = partial.data() + c * 2 * n;
        const float* pb = pw + n;
        for (int64_t i = 0; i < n; ++i) {
          sw[i] += pw[i];
          sb[i] += pb[i];
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        if (dweight) Elem<T>::store(static_cast<T*>(dweight), i, sw[i]);
        if (dbias) Elem<T>::store(static_cast<T*>(dbias), i, sb[i]);
      }
    }
  });
}

}  // namespace cf::cpu
