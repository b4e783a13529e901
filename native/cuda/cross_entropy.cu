// Cross-entropy of logits [rows, C] against i32 labels [rows], fused with the log-softmax
// (formulas in cross_entropy.h). One warp per row for C <= 1024, one 512-thread block per
// row beyond (rows.cuh). Forward: max pass, then one pass for sum exp and sum x; the label's
// logit is one gathered load. 'mean'/'sum' write per-row losses to a scratch buffer that
// one 1024-thread block adds up in a fixed order (deterministic, no atomics). Backward
// recomputes softmax from the logits and the saved lse in a single pass per row.
// Labels are validated on the device, never used to index out of the row: a label outside
// [0, C) that is not ignore_index makes that row's lse, loss and gradient NaN (no host sync).
// Floor: memory bound; forward reads rows * C * sizeof(T) bytes, backward reads and writes
// rows * C * sizeof(T) each (labels and lse add 8 bytes per row).
#include "cross_entropy.h"
#include "rows.cuh"
#include "workspace.cuh"

namespace cf::cuda {
namespace {
using rows::Group;

constexpr int kReduceThreads = 1024;

__device__ __forceinline__ bool label_ok(int32_t y, int n) { return y >= 0 && y < n; }

// Per row: lse, and the loss either to out (reduction none, dtype T) or to row_loss (f32).
template <typename T, int G>
__global__ void __launch_bounds__(Group<G>::kBlock)
    ce_forward_kernel(const T* x, const int32_t* labels, T* out, float* row_loss, float* lse, int64_t nrows, int n,
                      int32_t ignore_index, float keep, float spread) {
  using Gr = Group<G>;
  __shared__ typename Gr::Scratch red;
  const int t = Gr::lane();
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    float m = -INFINITY;
    for (int i = t; i < n; i += G) m = fmaxf(m, Elem<T>::load(xr, i));
    m = Gr::max(m, red);
    float2 acc = make_float2(0.0f, 0.0f);
    for (int i = t; i < n; i += G) {
      const float v = Elem<T>::load(xr, i);
      acc.x += expf(v - m);
      acc.y += v - m;
    }
    acc = Gr::sum2(acc, red);
    if (t == 0) {
      const int32_t y = labels[r];
      const float ls = logf(acc.x);
      float l = m + ls, loss;
      // lse - keep x_y - spread sum(x), written with x - m (exact near the max), using keep + spread C = 1.
      if (y == ignore_index) {
        loss = 0.0f;
      } else if (label_ok(y, n)) {
        loss = ls - keep * (Elem<T>::load(xr, y) - m) - spread * acc.y;
      } else {
        l = NAN;
        loss = NAN;
      }
      lse[r] = l;
      if (out) Elem<T>::store(out, r, loss);
      else row_loss[r] = loss;
    }
  }
}

// out[0] = sum of row losses (in double, fixed order), over the rows kept when mean.
template <typename T>
__global__ void __launch_bounds__(kReduceThreads)
    ce_reduce_kernel(const float* row_loss, const int32_t* labels, T* out, int64_t nrows, int32_t ignore_index, bool mean) {
  __shared__ double ssum[kReduceThreads / 32];
  __shared__ long long scount[kReduceThreads / 32];
  double acc = 0.0;
  long long count = 0;
  for (int64_t r = threadIdx.x; r < nrows; r += kReduceThreads) {
    acc += row_loss[r];
    count += labels[r] != ignore_index;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    acc += __shfl_xor_sync(0xffffffffu, acc, o);
    count += __shfl_xor_sync(0xffffffffu, count, o);
  }
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  if (l == 0) {
    ssum[w] = acc;
    scount[w] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    long long kept = 0;
    for (int k = 0; k < kReduceThreads / 32; ++k) {
      total += ssum[k];
      kept += scount[k];
    }
    Elem<T>::store(out, 0, static_cast<float>(mean ? total / static_cast<double>(kept) : total));
  }
}

// scale[0] = dy[0] / (number of rows not ignored), the gradient scale of a mean.
template <typename T>
__global__ void __launch_bounds__(kReduceThreads)
    ce_mean_scale_kernel(const int32_t* labels, const T* dy, float* scale, int64_t nrows, int32_t ignore_index) {
  __shared__ long long scount[kReduceThreads / 32];
  long long count = 0;
  for (int64_t r = threadIdx.x; r < nrows; r += kReduceThreads) count += labels[r] != ignore_index;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) count += __shfl_xor_sync(0xffffffffu, count, o);
  if ((threadIdx.x & 31) == 0) scount[threadIdx.x >> 5] = count;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long kept = 0;
    for (int k = 0; k < kReduceThreads / 32; ++k) kept += scount[k];
    scale[0] = static_cast<float>(static_cast<double>(Elem<T>::load(dy, 0)) / static_cast<double>(kept));
  }
}

// dx_rc = g_r (exp(x_rc - lse_r) - spread - keep [c == y_r]); the row's g comes from dy[r]
// (none), dy[0] (sum) or mean_scale[0] (mean).
template <typename T, int G>
__global__ void __launch_bounds__(Group<G>::kBlock)
    ce_backward_kernel(const T* x, const int32_t* labels, const float* lse, const T* dy, const float* mean_scale, T* dx,
                       int64_t nrows, int n, CrossEntropyReduction reduction, int32_t ignore_index, float keep, float spread) {
  using Gr = Group<G>;
  const int t = Gr::lane();
  for (int64_t r = Gr::first_row(); r < nrows; r += Gr::row_stride()) {
    const T* xr = x + r * n;
    T* dr = dx + r * n;
    const int32_t y = labels[r];
    if (y == ignore_index) {
      for (int i = t; i < n; i += G) Elem<T>::store(dr, i, 0.0f);
      continue;
    }
    const float g = reduction == CrossEntropyReduction::None  ? Elem<T>::load(dy, r)
                    : reduction == CrossEntropyReduction::Sum ? Elem<T>::load(dy, 0)
                                                              : mean_scale[0];
    const float l = label_ok(y, n) ? lse[r] : NAN;
    const float gs = g * spread, gk = g * keep;
    for (int i = t; i < n; i += G) Elem<T>::store(dr, i, g * expf(Elem<T>::load(xr, i) - l) - gs - (i == y ? gk : 0.0f));
  }
}

}  // namespace

void cross_entropy_forward(DType dtype, const void* logits, const int32_t* labels, void* out, float* lse, int64_t nrows,
                           int64_t classes, CrossEntropyReduction reduction, int32_t ignore_index, float smoothing, Stream s) {
  const float keep = 1.0f - smoothing, spread = smoothing / static_cast<float>(classes);
  const bool none = reduction == CrossEntropyReduction::None;
  if (none && nrows == 0) return;
  // Stream-ordered: the block is reused only after the kernels below have run.
  const Workspace ws(current_device(), none ? 0 : nrows * sizeof(float), s);
  float* row_loss = ws.as<float>();
  CF_FLOAT_DTYPE(dtype, T, {
    if (nrows > 0)
      rows::for_rows(nrows, classes, [&](auto g, unsigned grid, int threads) {
        ce_forward_kernel<T, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
            static_cast<const T*>(logits), labels, none ? static_cast<T*>(out) : nullptr, row_loss, lse, nrows,
            static_cast<int>(classes), ignore_index, keep, spread);
      });
    if (!none)
      ce_reduce_kernel<T><<<1, kReduceThreads, 0, as_cuda(s)>>>(row_loss, labels, static_cast<T*>(out), nrows, ignore_index,
                                                                 reduction == CrossEntropyReduction::Mean);
  });
}

void cross_entropy_backward(DType dtype, const void* logits, const int32_t* labels, const float* lse, const void* dy, void* dlogits,
                            int64_t nrows, int64_t classes, CrossEntropyReduction reduction, int32_t ignore_index, float smoothing,
                            Stream s) {
  if (nrows == 0) return;
  const float keep = 1.0f - smoothing, spread = smoothing / static_cast<float>(classes);
  const bool mean = reduction == CrossEntropyReduction::Mean;
  const Workspace ws(current_device(), mean ? sizeof(float) : 0, s);
  float* scale = ws.as<float>();
  CF_FLOAT_DTYPE(dtype, T, {
    if (mean)
      ce_mean_scale_kernel<T><<<1, kReduceThreads, 0, as_cuda(s)>>>(labels, static_cast<const T*>(dy), scale, nrows, ignore_index);
    rows::for_rows(nrows, classes, [&](auto g, unsigned grid, int threads) {
      ce_backward_kernel<T, decltype(g)::kThreads><<<grid, threads, 0, as_cuda(s)>>>(
          static_cast<const T*>(logits), labels, lse, static_cast<const T*>(dy), scale, static_cast<T*>(dlogits), nrows,
          static_cast<int>(classes), reduction, ignore_index, keep, spread);
    });
  });
}

}  // namespace cf::cuda
