// im2col / col2im on CUDA (see im2col.h): one thread per output element. im2col threads
// index cols in memory order (consecutive threads write consecutive taps of one pixel row);
// col2im threads index dx in memory order (consecutive channels) and gather their taps, so
// the result is deterministic without atomics.
#include "check.cuh"
#include "im2col.h"

namespace cf::cuda {
namespace {

template <typename T>
__global__ void im2col_kernel(Im2colGeom g, const T* x, T* cols, int64_t total) {
  const int64_t kk = static_cast<int64_t>(g.k) * g.k, row = g.c * kk;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = idx / row, r = idx % row;
    const int64_t c = r / kk, tap = r % kk;
    const int i = static_cast<int>(tap / g.k), j = static_cast<int>(tap % g.k);
    const int64_t n = p / (g.oh * g.ow), rem = p % (g.oh * g.ow), oh = rem / g.ow, ow = rem % g.ow;
    const int64_t ih = oh * g.stride - g.pad_h + i, iw = ow * g.stride - g.pad_w + j;
    float v = 0.0f;
    if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) v = Elem<T>::load(x, ((n * g.h + ih) * g.w + iw) * g.c + c);
    Elem<T>::store(cols, idx, v);
  }
}

template <typename T>
__global__ void col2im_kernel(Im2colGeom g, const T* dcols, T* dx, int64_t total) {
  const int64_t kk = static_cast<int64_t>(g.k) * g.k, row = g.c * kk;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = idx % g.c, pix = idx / g.c;
    const int64_t w = pix % g.w, nh = pix / g.w, h = nh % g.h, n = nh / g.h;
    float acc = 0.0f;
    for (int i = 0; i < g.k; ++i) {
      const int64_t th = h + g.pad_h - i;
      if (th < 0 || th % g.stride != 0 || th / g.stride >= g.oh) continue;
      const int64_t oh = th / g.stride;
      for (int j = 0; j < g.k; ++j) {
        const int64_t tw = w + g.pad_w - j;
        if (tw < 0 || tw % g.stride != 0 || tw / g.stride >= g.ow) continue;
        const int64_t ow = tw / g.stride;
        acc += Elem<T>::load(dcols, ((n * g.oh + oh) * g.ow + ow) * row + c * kk + static_cast<int64_t>(i) * g.k + j);
      }
    }
    Elem<T>::store(dx, idx, acc);
  }
}

}  // namespace

void im2col(DType dtype, const Im2colGeom& g, const void* x, void* cols, Stream stream) {
  const int64_t total = g.n * g.oh * g.ow * g.c * g.k * g.k;
  if (total == 0) return;
  CF_FLOAT_DTYPE(dtype, T, {
    im2col_kernel<T><<<grid_1d(total, 256), 256, 0, as_cuda(stream)>>>(g, static_cast<const T*>(x), static_cast<T*>(cols), total);
  });
}

void col2im(DType dtype, const Im2colGeom& g, const void* dcols, void* dx, Stream stream) {
  const int64_t total = g.n * g.h * g.w * g.c;
  if (total == 0) return;
  CF_FLOAT_DTYPE(dtype, T, {
    col2im_kernel<T><<<grid_1d(total, 256), 256, 0, as_cuda(stream)>>>(g, static_cast<const T*>(dcols), static_cast<T*>(dx), total);
  });
}

}  // namespace cf::cuda
