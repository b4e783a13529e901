// im2col / col2im on the CPU (see im2col.h). im2col walks output pixels: for each tap
// (kh, kw) it reads one contiguous channel vector of x and scatters it into the pixel's
// column row with stride K*K. col2im walks dx pixels and gathers the taps that read them:
// tap kh reaches row h from output row oh = (h + ph - kh) / s when that divides exactly.
#include <algorithm>
#include <cstring>
#include <vector>

#include "im2col.h"
#include "threadpool.h"

namespace cf::cpu {

void im2col(DType dtype, const Im2colGeom& g, const void* xv, void* colsv, Stream) {
  const int64_t kk = static_cast<int64_t>(g.k) * g.k, row = g.c * kk, pixels = g.n * g.oh * g.ow;
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(xv);
    T* cols = static_cast<T*>(colsv);
    parallel_for(pixels, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(row, 1)), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t n = p / (g.oh * g.ow), rem = p % (g.oh * g.ow), oh = rem / g.ow, ow = rem % g.ow;
        T* dst = cols + p * row;
        for (int i = 0; i < g.k; ++i) {
          const int64_t ih = oh * g.stride - g.pad_h + i;
          for (int j = 0; j < g.k; ++j) {
            const int64_t iw = ow * g.stride - g.pad_w + j;
            const int64_t tap = static_cast<int64_t>(i) * g.k + j;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) {
              for (int64_t c = 0; c < g.c; ++c) dst[c * kk + tap] = T{};
              continue;
            }
            const T* src = x + ((n * g.h + ih) * g.w + iw) * g.c;
            for (int64_t c = 0; c < g.c; ++c) dst[c * kk + tap] = src[c];
          }
        }
      }
    });
  });
}

void col2im(DType dtype, const Im2colGeom& g, const void* dcolsv, void* dxv, Stream) {
  const int64_t kk = static_cast<int64_t>(g.k) * g.k, row = g.c * kk;
  CF_FLOAT_DTYPE(dtype, T, {
    const T* dcols = static_cast<const T*>(dcolsv);
    T* dx = static_cast<T*>(dxv);
    parallel_for(g.n * g.h, 1, [&](int64_t b, int64_t e) {
      std::vector<float> acc(g.c);
      for (int64_t nh = b; nh < e; ++nh) {
        const int64_t n = nh / g.h, h = nh % g.h;
        for (int64_t w = 0; w < g.w; ++w) {
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int i = 0; i < g.k; ++i) {
            const int64_t th = h + g.pad_h - i;
            if (th < 0 || th % g.stride != 0 || th / g.stride >= g.oh) continue;
            const int64_t oh = th / g.stride;
            for (int j = 0; j < g.k; ++j) {
              const int64_t tw = w + g.pad_w - j;
              if (tw < 0 || tw % g.stride != 0 || tw / g.stride >= g.ow) continue;
              const int64_t ow = tw / g.stride;
              const T* src = dcols + ((n * g.oh + oh) * g.ow + ow) * row + static_cast<int64_t>(i) * g.k + j;
              for (int64_t c = 0; c < g.c; ++c) acc[c] += Elem<T>::load(src, c * kk);
            }
          }
          T* dst = dx + ((n * g.h + h) * g.w + w) * g.c;
          for (int64_t c = 0; c < g.c; ++c) Elem<T>::store(dst, c, acc[c]);
        }
      }
    });
  });
}

}  // namespace cf::cpu
