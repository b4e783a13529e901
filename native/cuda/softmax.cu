// Softmax and log-softmax over the last axis of x [rows, n], forward and backward from the
// saved output (formulas in softmax.h). One warp per row for n <= 1024, one 512-thread block
// per row beyond (rows.cuh). Forward: max pass, exp-sum pass, write pass; backward: one sum
// pass and one write pass. Later passes re-read the row from L1/L2.
// Floor: memory bound; forward 2 * rows * n * sizeof(T) bytes of DRAM traffic, backward
// 3 * rows * n * sizeof(T).
#include "rows.cuh"
#include "softmax.h"

namespace cf::cuda {
namespace {
using rows::Group;

template <typename T, int G>
__global__ void __launch_bounds__(Group<G>::kBlock) softmax_forward_kernel(bool log, const T* x, T* y, int64_t nrows, int n) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    float m = -INFINITY;
    for (int i = t; i < n; i += G) m = fmaxf(m, Elem<T>::load(xr, i));
    m = Gr::max(m, red);
    float s = 0.0f;
    for (int i = t; i < n; i += G) s += expf(Elem<T>::load(xr, i) - m);
    s = Gr::sum(s, red);
    if (log) {
      // (x - m) - log(s): x - m is exact for x near m, so large logits keep their precision.
      const float ls = logf(s);
      for (int i = t; i < n; i += G) Elem<T>::store(yr, i, (Elem<T>::load(xr, i) - m) - ls);
    } else {
      const float inv = 1.0f / s;
      for (int i = t; i < n; i += G) Elem<T>::store(yr, i, expf(Elem<T>::load(xr, i) - m) * inv);
    }
  }
}

template <typename T, int G>
__global__ void __launch_bounds__(Group<G>::kBlock)
    softmax_backward_kernel(bool log, const T* y, const T* dy, T* dx, int64_t nrows, int n) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* yr = y + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    float s = 0.0f;
    if (log) {
      for (int i = t; i < n; i += G) s += Elem<T>::load(gr, i);
    } else {
      for (int i = t; i < n; i += G) s += Elem<T>::load(gr, i) * Elem<T>::load(yr, i);
    }
    s = Gr::sum(s, red);
    if (log) {
      for (int i = t; i < n; i += G) Elem<T>::store(dr, i, Elem<T>::load(gr, i) - expf(Elem<T>::load(yr, i)) * s);
    } else {
      for (int i = t; i < n; i += G) Elem<T>::store(dr, i, Elem<T>::load(yr, i) * (Elem<T>::load(gr, i) - s));
    }
  }
}

}  // namespace

void softmax_forward(DType dtype, bool log, const void* x, void* y, int64_t nrows, int64_t n, Stream s) {
  if (nrows == 0) return;
  CF_FLOAT_DTYPE(dtype, T, rows::for_rows(nrows, n, [&](auto g, unsigned grid, int threads) {
                   softmax_forward_kernel<T, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
                       log, static_cast<const T*>(x), static_cast<T*>(y), nrows, static_cast<int>(n));
                 }));
}

void softmax_backward(DType dtype, bool log, const void* y, const void* dy, void* dx, int64_t nrows, int64_t n, Stream s) {
  if (nrows == 0) return;
  CF_FLOAT_DTYPE(dtype, T, rows::for_rows(nrows, n, [&](auto g, unsigned grid, int threads) {
                   softmax_backward_kernel<T, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
                       log, static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx), nrows, static_cast<int>(n));
                 }));
}

}  // namespace cf::cuda
