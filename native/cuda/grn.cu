// GRN's passes on CUDA (see grn.h). The dot runs one block per (sample, 32 channels): a
// warp's lanes on adjacent channels (coalesced), 32 pixel lanes striding over the pixels,
// f64 partial sums reduced through shared memory in a fixed order. The affine is one thread
// per element. The GELU forms are template instances.
#include "check.cuh"
#include "elementwise_math.h"
#include "grn.h"

namespace cf::cuda {
namespace {

constexpr int kChannels = 32;
constexpr int kPixelLanes = 32;  // 1024 threads: __launch_bounds__ holds ptxas to 64 registers, or the launch fails

__device__ __forceinline__ float gelu_of(float x) { return unary_fn(UnaryOp::GeluErf, x, 0.0f, 0.0f); }

// x, the operand GELU applies to, is b, or a when b is null (a sum of squares).
// With a_sums, the same walk also sums a (raw, no GELU) into a second shared array.
template <typename T, bool Gelu>
__global__ void __launch_bounds__(kChannels * kPixelLanes) dot_kernel(const T* a, const T* b, float* out, float* a_sums, int64_t p, int64_t c) {
  __shared__ double s[kPixelLanes][kChannels];
  __shared__ double s_a[kPixelLanes][kChannels];
  const int64_t sample = blockIdx.y;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kChannels + threadIdx.x;
  double acc = 0.0, acc_a = 0.0;
  if (k < c)
    for (int64_t q = threadIdx.y; q < p; q += kPixelLanes) {
      const int64_t i = (sample * p + q) * c + k;
      float x = Elem<T>::load(b ? b : a, i);
      if (Gelu) x = gelu_of(x);
      const float av = b ? Elem<T>::load(a, i) : x;
      acc += static_cast<double>(av) * x;
      if (a_sums) acc_a += b ? av : Elem<T>::load(a, i);
    }
  s[threadIdx.y][threadIdx.x] = acc;
  s_a[threadIdx.y][threadIdx.x] = acc_a;
  __syncthreads();
  for (int stride = kPixelLanes / 2; stride > 0; stride /= 2) {
    if (threadIdx.y < stride) {
      s[threadIdx.y][threadIdx.x] += s[threadIdx.y + stride][threadIdx.x];
      s_a[threadIdx.y][threadIdx.x] += s_a[threadIdx.y + stride][threadIdx.x];
    }
    __syncthreads();
  }
  if (k < c && threadIdx.y == 0) {
    out[sample * c + k] = static_cast<float>(s[0][threadIdx.x]);
    if (a_sums) a_sums[sample * c + k] = static_cast<float>(s_a[0][threadIdx.x]);
  }
}

template <typename T, typename P, bool Gelu>
__global__ void affine_kernel(const T* a, const float* fa, const T* b, const float* fb, const P* beta, bool beta_per_sample, T* y,
                              int64_t total, int64_t p, int64_t c) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % c, nc = (i / c / p) * c + k;
    float v;
    if (!Gelu) {
      v = Elem<T>::load(a, i) * fa[nc];
      if (b) v += Elem<T>::load(b, i) * fb[nc];
    } else if (!b) {
      v = gelu_of(Elem<T>::load(a, i)) * fa[nc];
    } else {
      const float x = Elem<T>::load(b, i);
      v = (Elem<T>::load(a, i) * fa[nc] + gelu_of(x) * fb[nc]) * unary_grad(UnaryOp::GeluErf, x, 0.0f, 0.0f);
    }
    if (beta) v += Elem<P>::load(beta, beta_per_sample ? nc : k);
    Elem<T>::store(y, i, v);
  }
}

}  // namespace

void sample_channel_dot(DType dtype, const void* a, const void* b, float* out, float* a_sums, int64_t n, int64_t p, int64_t c, bool gelu,
                        Stream stream) {
  if (n == 0 || c == 0) return;
  CF_FLOAT_DTYPE(dtype, T, {
    const dim3 grid(static_cast<unsigned>((c + kChannels - 1) / kChannels), static_cast<unsigned>(n));
    const dim3 block(kChannels, kPixelLanes);
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    if (gelu) dot_kernel<T, true><<<grid, block, 0, as_cuda(stream)>>>(ta, tb, out, a_sums, p, c);
    else dot_kernel<T, false><<<grid, block, 0, as_cuda(stream)>>>(ta, tb, out, a_sums, p, c);
  });
}

void sample_channel_affine(DType dtype, DType beta_dtype, const void* a, const float* fa, const void* b, const float* fb, const void* beta,
                           bool beta_per_sample, void* y, int64_t n, int64_t p, int64_t c, bool gelu, Stream stream) {
  const int64_t total = n * p * c;
  if (total == 0) return;
  CF_SAME_OR_WIDER_DTYPES(dtype, beta_dtype, T, P, {
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    const P* pb = static_cast<const P*>(beta);
    if (gelu) affine_kernel<T, P, true><<<grid_1d(total, 256), 256, 0, as_cuda(stream)>>>(ta, fa, tb, fb, pb, beta_per_sample, static_cast<T*>(y),
                                                                                     total, p, c);
    else affine_kernel<T, P, false><<<grid_1d(total, 256), 256, 0, as_cuda(stream)>>>(ta, fa, tb, fb, pb, beta_per_sample, static_cast<T*>(y),
                                                                                      total, p, c);
  });
}

}  // namespace cf::cuda
