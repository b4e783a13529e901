// BatchNorm over channels-last [rows, C] on CUDA (see batchnorm.h). The per-channel sums run
// one block per 32 channels: 32 x 32 threads, a warp's lanes on 32 adjacent channels (so
// each row segment is one coalesced load) and 32 row lanes striding over the rows, f64
// accumulators reduced through shared memory in a fixed order (deterministic). Apply and
// the input gradient are elementwise, one thread per element.
#include "batchnorm.h"
#include "check.cuh"

namespace cf::cuda {
namespace {

constexpr int kChannels = 32;
constexpr int kRowLanes = 32;  // 1024 threads: __launch_bounds__ holds ptxas to 64 registers, or the launch fails

// Sums over the row lanes of the block, for each of the block's channels; the result lands
// in s[0][tx]. All threads must call it.
__device__ double reduce_lanes(double v, double (*s)[kChannels]) {
  s[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  for (int stride = kRowLanes / 2; stride > 0; stride /= 2) {
    if (threadIdx.y < stride) s[threadIdx.y][threadIdx.x] += s[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  const double total = s[0][threadIdx.x];
  __syncthreads();
  return total;
}

// One pass over x: the sums of d = x - shift and of d^2 in f64, with shift a value of the
// channel (row 0's), so that the variance sum d^2 / rows - (sum d / rows)^2 does not cancel
// when the mean is large against the spread (as the raw moments would); a second pass to
// subtract the mean first (the CPU reference's way) would read x again.
template <typename T>
__global__ void __launch_bounds__(kChannels * kRowLanes)
    stats_kernel(const T* x, float* mean, float* var, float* rstd, int64_t rows, int64_t c, float eps) {
  __shared__ double s[kRowLanes][kChannels];
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kChannels + threadIdx.x;
  const bool live = k < c;
  const double shift = live ? Elem<T>::load(x, k) : 0.0;
  double sum = 0.0, sq = 0.0;
  if (live)
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) {
      const double d = Elem<T>::load(x, r * c + k) - shift;
      sum += d;
      sq += d * d;
    }
  const double shifted_mean = reduce_lanes(sum, s) / static_cast<double>(rows);
  const double v = fmax(reduce_lanes(sq, s) / static_cast<double>(rows) - shifted_mean * shifted_mean, 0.0);
  if (live && threadIdx.y == 0) {
    mean[k] = static_cast<float>(shift + shifted_mean);
    var[k] = static_cast<float>(v);
    rstd[k] = static_cast<float>(rsqrt(v + eps));
  }
}

// The backward's sums for every branch at once (dy, of type D, read once). Branch loops run to
// the compile-time bound (guarded by the count) so the accumulators stay in registers.
template <typename T, typename D>
__global__ void __launch_bounds__(kChannels * kRowLanes)
    reduce_kernel(BatchNormBranches br, const D* dy, float* sum_dy, BatchNormBranchGrads grads, int64_t rows, int64_t c) {
  __shared__ double s[kRowLanes][kChannels];
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kChannels + threadIdx.x;
  const bool live = k < c;
  double a = 0.0, b[kMaxBatchNormBranches] = {};
  if (live) {
    float mu[kMaxBatchNormBranches], rs[kMaxBatchNormBranches];
#pragma unroll
    for (int j = 0; j < kMaxBatchNormBranches; ++j)
      if (j < br.count) {
        mu[j] = br.mean[j][k];
        rs[j] = br.rstd[j][k];
      }
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) {
      const float g = Elem<D>::load(dy, r * c + k);
      a += g;
#pragma unroll
      for (int j = 0; j < kMaxBatchNormBranches; ++j)
        if (j < br.count) b[j] += static_cast<double>(g) * (Elem<T>::load(static_cast<const T*>(br.x[j]), r * c + k) - mu[j]) * rs[j];
    }
  }
  const double ta = reduce_lanes(a, s);
  if (live && threadIdx.y == 0) sum_dy[k] = static_cast<float>(ta);
#pragma unroll
  for (int j = 0; j < kMaxBatchNormBranches; ++j)
    if (j < br.count) {
      const double tb = reduce_lanes(b[j], s);
      if (live && threadIdx.y == 0) grads.sum_dy_xhat[j][k] = static_cast<float>(tb);
    }
}

// Branches summed in order, then the residual (may be null) added; residual and y in R: x's
// dtype, or f32 beside bf16 x.
template <typename T, typename P, typename R>
__global__ void apply_kernel(BatchNormBranches br, const R* residual, R* y, int64_t n, int64_t c) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % c;
    float acc = 0.0f;
    for (int b = 0; b < br.count; ++b) {
      const P* weight = static_cast<const P*>(br.weight[b]);
      const P* bias = static_cast<const P*>(br.bias[b]);
      const float w = weight ? Elem<P>::load(weight, k) : 1.0f;
      const float bb = bias ? Elem<P>::load(bias, k) : 0.0f;
      acc += (Elem<T>::load(static_cast<const T*>(br.x[b]), i) - br.mean[b][k]) * (br.rstd[b][k] * w) + bb;
    }
    Elem<R>::store(y, i, residual ? Elem<R>::load(residual, i) + acc : acc);
  }
}

// The input gradient of every branch at once (dy, of type D, read once); a null dx is skipped.
template <typename T, typename P, typename D>
__global__ void input_grad_kernel(BatchNormBranches br, const D* dy, const float* sum_dy, BatchNormBranchGrads grads, int64_t n,
                                  int64_t c, float inv_rows, bool batch_stats) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % c;
    const float g = Elem<D>::load(dy, i);
    const float mean_dy = batch_stats ? sum_dy[k] * inv_rows : 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxBatchNormBranches; ++j) {
      if (j >= br.count || !grads.dx[j]) continue;
      const P* weight = static_cast<const P*>(br.weight[j]);
      const float rs = br.rstd[j][k];
      const float gain = rs * (weight ? Elem<P>::load(weight, k) : 1.0f);
      float d = g - mean_dy;
      if (batch_stats) d -= (Elem<T>::load(static_cast<const T*>(br.x[j]), i) - br.mean[j][k]) * rs * grads.sum_dy_xhat[j][k] * inv_rows;
      Elem<T>::store(static_cast<T*>(grads.dx[j]), i, gain * d);
    }
  }
}

dim3 channel_grid(int64_t c) { return dim3(static_cast<unsigned>((c + kChannels - 1) / kChannels)); }

}  // namespace

void batchnorm_stats(DType dtype, const void* x, float* mean, float* var, float* rstd, int64_t rows, int64_t c, float eps, Stream stream) {
  if (rows == 0 || c == 0) return;
  CF_FLOAT_DTYPE(dtype, T, {
    stats_kernel<T><<<channel_grid(c), dim3(kChannels, kRowLanes), 0, as_cuda(stream)>>>(static_cast<const T*>(x), mean, var, rstd, rows, c, eps);
  });
}

void batchnorm_apply(DType dtype, DType param_dtype, DType out_dtype, const BatchNormBranches& branches, const void* residual, void* y,
                     int64_t rows, int64_t c, Stream stream) {
  const int64_t n = rows * c;
  if (n == 0) return;
  CF_SAME_OR_WIDER_DTYPES_2(dtype, param_dtype, out_dtype, T, P, R, {
    apply_kernel<T, P, R><<<grid_1d(n, 256), 256, 0, as_cuda(stream)>>>(branches, static_cast<const R*>(residual), static_cast<R*>(y), n, c);
  });
}

void batchnorm_backward_reduce(DType dtype, DType dy_dtype, const BatchNormBranches& branches, const void* dy, float* sum_dy,
                               const BatchNormBranchGrads& grads, int64_t rows, int64_t c, Stream stream) {
  if (c == 0) return;
  CF_SAME_OR_WIDER_DTYPES(dtype, dy_dtype, T, D, {
    reduce_kernel<T, D><<<channel_grid(c), dim3(kChannels, kRowLanes), 0, as_cuda(stream)>>>(branches, static_cast<const D*>(dy), sum_dy, grads,
                                                                                            rows, c);
  });
}

void batchnorm_backward_input(DType dtype, DType param_dtype, DType dy_dtype, const BatchNormBranches& branches, const void* dy,
                              const float* sum_dy, const BatchNormBranchGrads& grads, int64_t rows, int64_t c, bool batch_stats,
                              Stream stream) {
  const int64_t n = rows * c;
  if (n == 0) return;
  CF_SAME_OR_WIDER_DTYPES_2(dtype, param_dtype, dy_dtype, T, P, D, {
    input_grad_kernel<T, P, D><<<grid_1d(n, 256), 256, 0, as_cuda(stream)>>>(branches, static_cast<const D*>(dy), sum_dy, grads, n, c,
                                                                             1.0f / static_cast<float>(rows), batch_stats);
  });
}

}  // namespace cf::cuda
