// GRN's passes on CUDA (see grn.h). The dot runs one block per (sample, 32 channels): a
// warp's lanes on adjacent channels (coalesced), 32 pixel lanes striding over the pixels,
// f64 partial sums reduced through shared memory in a fixed order. The affine is one thread
// per element, or, when it also sums its output per (sample, channel), laid out like the dot.
// The GELU forms are template instances.
#include "check.cuh"
#include "elementwise_math.h"
#include "grn.h"

namespace cf::cuda {
namespace {

constexpr int kChannels = 32;
constexpr int kPixelLanes = 32;  // 1024 threads: __launch_bounds__ holds ptxas to 64 registers, or the launch fails

__device__ __forceinline__ float gelu_of(float x) { return unary_fn(UnaryOp::GeluErf, x, 0.0f, 0.0f); }

// x[i] plus channel k's input bias (x is b, or a when b is null).
template <typename T, typename P>
__device__ __forceinline__ float load_x(const T* x, const P* x_bias, int64_t i, int64_t k) {
  return Elem<T>::load(x, i) + (x_bias ? Elem<P>::load(x_bias, k) : 0.0f);
}

// Sums s over the pixel lanes of the block (f64, fixed order) into s[0][lane]; s is written and synced before.
__device__ __forceinline__ void reduce_pixel_lanes(double (&s)[kPixelLanes][kChannels]) {
  for (int stride = kPixelLanes / 2; stride > 0; stride /= 2) {
    if (threadIdx.y < stride) s[threadIdx.y][threadIdx.x] += s[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
}

// With a_sums, the same walk also sums a (as stored) into a second shared array.
template <typename T, typename P, bool Gelu>
__global__ void __launch_bounds__(kChannels * kPixelLanes)
    dot_kernel(const T* a, const T* b, const P* x_bias, float* out, float* a_sums, int64_t p, int64_t c) {
  __shared__ double s[kPixelLanes][kChannels];
  __shared__ double s_a[kPixelLanes][kChannels];
  const int64_t sample = blockIdx.y;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kChannels + threadIdx.x;
  double acc = 0.0, acc_a = 0.0;
  if (k < c)
    for (int64_t q = threadIdx.y; q < p; q += kPixelLanes) {
      const int64_t i = (sample * p + q) * c + k;
      float x = load_x(b ? b : a, x_bias, i, k);
      if (Gelu) x = gelu_of(x);
      acc += static_cast<double>(b ? Elem<T>::load(a, i) : x) * x;
      if (a_sums) acc_a += Elem<T>::load(a, i);
    }
  s[threadIdx.y][threadIdx.x] = acc;
  s_a[threadIdx.y][threadIdx.x] = acc_a;
  __syncthreads();
  reduce_pixel_lanes(s);
  if (a_sums) reduce_pixel_lanes(s_a);
  if (k < c && threadIdx.y == 0) {
    out[sample * c + k] = static_cast<float>(s[0][threadIdx.x]);
    if (a_sums) a_sums[sample * c + k] = static_cast<float>(s_a[0][threadIdx.x]);
  }
}

template <typename T, typename P>
struct AffineArgs {
  const T* a;
  const float* fa;
  const T* b;
  const float* fb;
  const P* beta;
  bool beta_per_sample;
  const P* x_bias;
  T* y;
  int64_t p, c;
};

// y at element i (channel k, factor index nc = sample * c + k), before rounding.
template <typename T, typename P, bool Gelu>
__device__ __forceinline__ float affine_value(const AffineArgs<T, P>& A, int64_t i, int64_t k, int64_t nc) {
  float v;
  if (!Gelu) {
    v = (A.b ? Elem<T>::load(A.a, i) : load_x(A.a, A.x_bias, i, k)) * A.fa[nc];
    if (A.b) v += load_x(A.b, A.x_bias, i, k) * A.fb[nc];
  } else if (!A.b) {
    v = gelu_of(load_x(A.a, A.x_bias, i, k)) * A.fa[nc];
  } else {
    const float x = load_x(A.b, A.x_bias, i, k);
    v = (Elem<T>::load(A.a, i) * A.fa[nc] + gelu_of(x) * A.fb[nc]) * unary_grad(UnaryOp::GeluErf, x, 0.0f, 0.0f);
  }
  if (A.beta) v += Elem<P>::load(A.beta, A.beta_per_sample ? nc : k);
  return v;
}

template <typename T, typename P, bool Gelu>
__global__ void affine_kernel(AffineArgs<T, P> A, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % A.c, nc = (i / A.c / A.p) * A.c + k;
    Elem<T>::store(A.y, i, affine_value<T, P, Gelu>(A, i, k, nc));
  }
}

template <typename T, typename P, bool Gelu>
__global__ void __launch_bounds__(kChannels * kPixelLanes) affine_sums_kernel(AffineArgs<T, P> A, float* y_sums) {
  __shared__ double s[kPixelLanes][kChannels];
  const int64_t sample = blockIdx.y;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kChannels + threadIdx.x;
  double acc = 0.0;
  if (k < A.c)
    for (int64_t q = threadIdx.y; q < A.p; q += kPixelLanes) {
      const int64_t i = (sample * A.p + q) * A.c + k;
      const float v = affine_value<T, P, Gelu>(A, i, k, sample * A.c + k);
      Elem<T>::store(A.y, i, v);
      acc += v;
    }
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  reduce_pixel_lanes(s);
  if (k < A.c && threadIdx.y == 0) y_sums[sample * A.c + k] = static_cast<float>(s[0][threadIdx.x]);
}

dim3 sample_channel_grid(int64_t n, int64_t c) {
  return dim3(static_cast<unsigned>((c + kChannels - 1) / kChannels), static_cast<unsigned>(n));
}

}  // namespace

void sample_channel_dot(DType dtype, DType bias_dtype, const void* a, const void* b, const void* x_bias, float* out, float* a_sums,
                        int64_t n, int64_t p, int64_t c, bool gelu, Stream stream) {
  if (n == 0 || c == 0) return;
  CF_SAME_OR_WIDER_DTYPES(dtype, bias_dtype, T, P, {
    const dim3 grid = sample_channel_grid(n, c);
    const dim3 block(kChannels, kPixelLanes);
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    const P* pb = static_cast<const P*>(x_bias);
    if (gelu) dot_kernel<T, P, true><<<grid, block, 0, as_cuda(stream)>>>(ta, tb, pb, out, a_sums, p, c);
    else dot_kernel<T, P, false><<<grid, block, 0, as_cuda(stream)>>>(ta, tb, pb, out, a_sums, p, c);
  });
}

void sample_channel_affine(DType dtype, DType param_dtype, const void* a, const float* fa, const void* b, const float* fb, const void* beta,
                           bool beta_per_sample, const void* x_bias, void* y, float* y_sums, int64_t n, int64_t p, int64_t c, bool gelu,
                           Stream stream) {
  const int64_t total = n * p * c;
  if (n == 0 || c == 0) return;
  CF_SAME_OR_WIDER_DTYPES(dtype, param_dtype, T, P, {
    const AffineArgs<T, P> A{static_cast<const T*>(a), fa, static_cast<const T*>(b), fb, static_cast<const P*>(beta), beta_per_sample,
                             static_cast<const P*>(x_bias), static_cast<T*>(y), p, c};
    cudaStream_t st = as_cuda(stream);
    if (y_sums) {
      const dim3 grid = sample_channel_grid(n, c), block(kChannels, kPixelLanes);
      if (gelu) affine_sums_kernel<T, P, true><<<grid, block, 0, st>>>(A, y_sums);
      else affine_sums_kernel<T, P, false><<<grid, block, 0, st>>>(A, y_sums);
    } else if (total > 0) {
      if (gelu) affine_kernel<T, P, true><<<grid_1d(total, 256), 256, 0, st>>>(A, total);
      else affine_kernel<T, P, false><<<grid_1d(total, 256), 256, 0, st>>>(A, total);
    }
  });
}

}  // namespace cf::cuda
