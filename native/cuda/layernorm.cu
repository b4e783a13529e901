// LayerNorm over the last axis of x [rows, n], forward and backward (formulas in
// layernorm.h). Forward and dx: one warp per row for n <= 1024, one 512-thread block per row
// beyond (rows.cuh); mean and variance in two passes (the second re-reads the row from
// L1/L2), which is more accurate than a single-pass E[x^2] - E[x]^2.
// dweight/dbias, a sum over rows, in two stages with no atomics, so they are deterministic:
//   1. blocks of 32 columns x 8 row-lanes own a chunk of rows and write their column sums
//      to partials [chunks, 2, n] (reads coalesced along the columns);
//   2. blocks of 32 columns x 32 chunk-lanes add the partials in a fixed order.
// Floor: memory bound (layernorm.h). This backward reads x and dy twice from DRAM when both
// dx and dweight/dbias are wanted: the dx pass needs whole rows, the parameter pass whole
// columns.
#include <algorithm>

#include "layernorm.h"
#include "workspace.cuh"
#include "rows.cuh"

namespace cf::cuda {
namespace {
using rows::Group;

constexpr int kColTile = 32;      // columns per block in the parameter-gradient kernels
constexpr int kPartialLanes = 8;  // row lanes per block in stage 1
constexpr int kFinalLanes = 32;   // chunk lanes per block in stage 2
constexpr int64_t kMaxChunks = 1024;

template <typename T, typename TY, int G>
__global__ void __launch_bounds__(Group<G>::kBlock)
    layernorm_forward_kernel(const T* x, const T* w, const T* b, TY* y, float* mean, float* rstd, int64_t nrows, int n, float eps) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    TY* yr = y + r * n;
    float s = 0.0f;
    for (int i = t; i < n; i += G) s += Elem<T>::load(xr, i);
    const float mu = Gr::sum(s, red) * inv_n;
    float v = 0.0f;
    for (int i = t; i < n; i += G) {
      const float d = Elem<T>::load(xr, i) - mu;
      v += d * d;
    }
    const float rs = 1.0f / sqrtf(Gr::sum(v, red) * inv_n + eps);
    if (t == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (int i = t; i < n; i += G) {
      float o = (Elem<T>::load(xr, i) - mu) * rs;
      if (w) o *= Elem<T>::load(w, i);
      if (b) o += Elem<T>::load(b, i);
      Elem<TY>::store(yr, i, o);
    }
  }
}

template <typename T, typename TY, int G>
__global__ void __launch_bounds__(Group<G>::kBlock)
    layernorm_dx_kernel(const T* x, const T* w, const float* mean, const float* rstd, const TY* dy, T* dx, bool accumulate, int64_t nrows, int n) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    const TY* gr = dy + r * n;
    T* dr = dx + r * n;
    const float mu = mean[r], rs = rstd[r];
    float2 acc = make_float2(0.0f, 0.0f);
    for (int i = t; i < n; i += G) {
      float g = Elem<TY>::load(gr, i);
      if (w) g *= Elem<T>::load(w, i);
      acc.x += g;
      acc.y += g * ((Elem<T>::load(xr, i) - mu) * rs);
    }
    acc = Gr::sum2(acc, red);
    const float mg = acc.x * inv_n, mgx = acc.y * inv_n;
    for (int i = t; i < n; i += G) {
      float g = Elem<TY>::load(gr, i);
      if (w) g *= Elem<T>::load(w, i);
      const float v = rs * (g - mg - (Elem<T>::load(xr, i) - mu) * rs * mgx);
      Elem<T>::store(dr, i, accumulate ? v + Elem<T>::load(dr, i) : v);
    }
  }
}

// Stage 1: partial[c][0][i] = sum over rows of chunk c of dy * xhat, partial[c][1][i] = of dy.
template <typename T, typename TY>
__global__ void __launch_bounds__(kColTile * kPartialLanes)
    layernorm_param_partial_kernel(const T* x, const float* mean, const float* rstd, const TY* dy, float* partial, int64_t nrows,
                                   int n, int64_t chunk) {
  __shared__ float sw[kPartialLanes][kColTile + 1], sb[kPartialLanes][kColTile + 1];
  const int i = blockIdx.x * kColTile + threadIdx.x;
  const int64_t c = blockIdx.y;
  const int64_t r1 = min(nrows, (c + 1) * chunk);
  float aw = 0.0f, ab = 0.0f;
  if (i < n) {
    for (int64_t r = c * chunk + threadIdx.y; r < r1; r += kPartialLanes) {
      const float g = Elem<TY>::load(dy, r * n + i);
      aw += g * ((Elem<T>::load(x, r * n + i) - mean[r]) * rstd[r]);
      ab += g;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && i < n) {
    for (int k = 1; k < kPartialLanes; ++k) {
      aw += sw[k][threadIdx.x];
      ab += sb[k][threadIdx.x];
    }
    partial[(c * 2) * n + i] = aw;
    partial[(c * 2 + 1) * n + i] = ab;
  }
}

// Stage 2: dweight[i] = sum over chunks of partial[c][0][i], dbias[i] of partial[c][1][i].
template <typename T>
__global__ void __launch_bounds__(kColTile * kFinalLanes)
    layernorm_param_final_kernel(const float* partial, T* dw, T* db, int64_t chunks, int n) {
  __shared__ float sw[kFinalLanes][kColTile + 1], sb[kFinalLanes][kColTile + 1];
  const int i = blockIdx.x * kColTile + threadIdx.x;
  float aw = 0.0f, ab = 0.0f;
  if (i < n) {
    for (int64_t c = threadIdx.y; c < chunks; c += kFinalLanes) {
      aw += partial[(c * 2) * n + i];
      ab += partial[(c * 2 + 1) * n + i];
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && i < n) {
    for (int k = 1; k < kFinalLanes; ++k) {
      aw += sw[k][threadIdx.x];
      ab += sb[k][threadIdx.x];
    }
    if (dw) Elem<T>::store(dw, i, aw);
    if (db) Elem<T>::store(db, i, ab);
  }
}

}  // namespace

void layernorm_forward(DType dtype, DType y_dtype, const void* x, const void* weight, const void* bias, void* y, float* mean,
                       float* rstd, int64_t nrows, int64_t n, float eps, Stream s) {
  if (nrows == 0) return;
  CF_LAYERNORM_DTYPES(dtype, y_dtype, T, TY, rows::for_rows(nrows, n, [&](auto g, unsigned grid, int threads) {
                   layernorm_forward_kernel<T, TY, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
                       static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<TY*>(y), mean,
                       rstd, nrows, static_cast<int>(n), eps);
                 }));
}

void layernorm_backward(DType dtype, DType dy_dtype, const void* x, const void* weight, const float* mean, const float* rstd,
                        const void* dy, void* dx, bool accumulate, void* dweight, void* dbias, int64_t nrows, int64_t n, Stream s) {
  CF_LAYERNORM_DTYPES(dtype, dy_dtype, T, TY, {
    if (dx && nrows > 0)
      rows::for_rows(nrows, n, [&](auto g, unsigned grid, int threads) {
        layernorm_dx_kernel<T, TY, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
            static_cast<const T*>(x), static_cast<const T*>(weight), mean, rstd, static_cast<const TY*>(dy), static_cast<T*>(dx), accumulate,
            nrows, static_cast<int>(n));
      });
    if (dweight || dbias) {
      // At least 64 rows per chunk, and at most kMaxChunks chunks (bounds the partials).
      const int64_t chunk = std::max<int64_t>(64, (nrows + kMaxChunks - 1) / kMaxChunks);
      const int64_t chunks = (nrows + chunk - 1) / chunk;
      const unsigned col_blocks = static_cast<unsigned>((n + kColTile - 1) / kColTile);
      // Stream-ordered: the block is reused only after the kernels below have run.
      const Workspace ws(current_device(), chunks * 2 * n * sizeof(float), s);
      float* partial = ws.as<float>();
      if (chunks)
        layernorm_param_partial_kernel<T, TY><<<dim3(col_blocks, static_cast<unsigned>(chunks)), dim3(kColTile, kPartialLanes), 0, as_cuda(s)>>>(
            static_cast<const T*>(x), mean, rstd, static_cast<const TY*>(dy), partial, nrows, static_cast<int>(n), chunk);
      layernorm_param_final_kernel<T><<<col_blocks, dim3(kColTile, kFinalLanes), 0, as_cuda(s)>>>(
          partial, static_cast<T*>(dweight), static_cast<T*>(dbias), chunks, static_cast<int>(n));
    }
  });
}

}  // namespace cf::cuda
