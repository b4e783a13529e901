// L2 normalization over the last axis of x [rows, n], forward and backward (formulas in
// l2norm.h). One warp per row for n <= 1024, one 512-thread block per row beyond
// (rows.cuh): one reduction pass (sum of squares, or of dy * x) and one write pass that
// re-reads the row from L1/L2.
// Floor: memory bound; forward 2 * rows * n * sizeof(T) bytes, backward 3 * rows * n * sizeof(T).
#include "l2norm.h"
#include "rows.cuh"

namespace cf::cuda {
namespace {
using rows::Group;

template <typename T, int G>
__global__ void __launch_bounds__(Group<G>::kBlock) l2norm_forward_kernel(const T* x, T* y, float* norm, int64_t nrows, int n, float eps) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    float s = 0.0f;
    for (int i = t; i < n; i += G) {
      const float v = Elem<T>::load(xr, i);
      s += v * v;
    }
    const float nr = sqrtf(Gr::sum(s, red));
    if (t == 0) norm[r] = nr;
    const float inv = 1.0f / (nr >= eps ? nr : eps);
    for (int i = t; i < n; i += G) Elem<T>::store(yr, i, Elem<T>::load(xr, i) * inv);
  }
}

template <typename T, int G>
__global__ void __launch_bounds__(Group<G>::kBlock)
    l2norm_backward_kernel(const T* x, const float* norm, const T* dy, T* dx, int64_t nrows, int n, float eps) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    const float nr = norm[r];
    if (nr >= eps) {
      const float inv = 1.0f / nr;
      float s = 0.0f;
      for (int i = t; i < n; i += G) s += Elem<T>::load(gr, i) * Elem<T>::load(xr, i);
      // inv * (dy - x * dot(dy, x) / norm^2): no norm^3, which overflows for tiny norms.
      const float c = Gr::sum(s, red) * inv * inv;
      for (int i = t; i < n; i += G) Elem<T>::store(dr, i, (Elem<T>::load(gr, i) - Elem<T>::load(xr, i) * c) * inv);
    } else {
      const float inv = 1.0f / eps;
      for (int i = t; i < n; i += G) Elem<T>::store(dr, i, Elem<T>::load(gr, i) * inv);
    }
  }
}

}  // namespace

void l2norm_forward(DType dtype, const void* x, void* y, float* norm, int64_t nrows, int64_t n, float eps, Stream s) {
  if (nrows == 0) return;
  CF_FLOAT_DTYPE(dtype, T, rows::for_rows(nrows, n, [&](auto g, unsigned grid, int threads) {
                   l2norm_forward_kernel<T, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
                       static_cast<const T*>(x), static_cast<T*>(y), norm, nrows, static_cast<int>(n), eps);
                 }));
}

void l2norm_backward(DType dtype, const void* x, const float* norm, const void* dy, void* dx, int64_t nrows, int64_t n, float eps,
                     Stream s) {
  if (nrows == 0) return;
  CF_FLOAT_DTYPE(dtype, T, rows::for_rows(nrows, n, [&](auto g, unsigned grid, int threads) {
                   l2norm_backward_kernel<T, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
                       static_cast<const T*>(x), norm, static_cast<const T*>(dy), static_cast<T*>(dx), nrows, static_cast<int>(n), eps);
                 }));
}

}  // namespace cf::cuda
