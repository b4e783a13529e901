// GRN's passes on the CPU (see grn.h). The dot runs one task per (sample, block of 64
// channels), walking the pixels in order with f64 accumulators; the affine is elementwise
// over rows of C. The GELU forms are template instances, so the plain ones keep their loops.
#include <algorithm>
#include <vector>

#include "elementwise_math.h"
#include "grn.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

constexpr int64_t kChannelBlock = 64;

CF_HD float gelu_of(float x) { return unary_fn(UnaryOp::GeluErf, x, 0.0f, 0.0f); }

template <typename T, bool Gelu>
void dot(const T* a, const T* b, float* out, int64_t n, int64_t p, int64_t c) {
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  parallel_for(n * blocks, 1, [&](int64_t t0, int64_t t1) {
    double acc[kChannelBlock];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = t / blocks, k0 = (t % blocks) * kChannelBlock, k1 = std::min(c, k0 + kChannelBlock);
      std::fill(acc, acc + kChannelBlock, 0.0);
      for (int64_t q = 0; q < p; ++q) {
        const int64_t row = (s * p + q) * c;
        for (int64_t k = k0; k < k1; ++k) {
          // x, the operand GELU applies to, is b (a when b is null).
          float x = Elem<T>::load(b ? b : a, row + k);
          if (Gelu) x = gelu_of(x);
          const float other = b ? Elem<T>::load(a, row + k) : x;
          acc[k - k0] += static_cast<double>(other) * x;
        }
      }
      for (int64_t k = k0; k < k1; ++k) out[s * c + k] = static_cast<float>(acc[k - k0]);
    }
  });
}

template <typename T, typename P, bool Gelu>
void affine(const T* a, const float* fa, const T* b, const float* fb, const P* beta, T* y, int64_t n, int64_t p, int64_t c) {
  std::vector<float> shift(static_cast<size_t>(c), 0.0f);
  if (beta)
    for (int64_t k = 0; k < c; ++k) shift[k] = Elem<P>::load(beta, k);
  parallel_for(n * p, std::max<int64_t>(1, 8192 / c), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* ra = fa + (r / p) * c;
      const float* rb = b ? fb + (r / p) * c : nullptr;
      for (int64_t k = 0; k < c; ++k) {
        const int64_t i = r * c + k;
        float v;
        if (!Gelu) {
          v = Elem<T>::load(a, i) * ra[k] + shift[k];
          if (rb) v += Elem<T>::load(b, i) * rb[k];
        } else if (!rb) {
          v = gelu_of(Elem<T>::load(a, i)) * ra[k] + shift[k];
        } else {
          const float x = Elem<T>::load(b, i);
          v = (Elem<T>::load(a, i) * ra[k] + gelu_of(x) * rb[k]) * unary_grad(UnaryOp::GeluErf, x, 0.0f, 0.0f);
        }
        Elem<T>::store(y, i, v);
      }
    }
  });
}

}  // namespace

void sample_channel_dot(DType dtype, const void* a, const void* b, float* out, int64_t n, int64_t p, int64_t c, bool gelu, Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    if (gelu) dot<T, true>(ta, tb, out, n, p, c);
    else dot<T, false>(ta, tb, out, n, p, c);
  });
}

void sample_channel_affine(DType dtype, DType beta_dtype, const void* a, const float* fa, const void* b, const float* fb, const void* beta,
                           void* y, int64_t n, int64_t p, int64_t c, bool gelu, Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, beta_dtype, T, P, {
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    const P* pb = static_cast<const P*>(beta);
    if (gelu) affine<T, P, true>(ta, fa, tb, fb, pb, static_cast<T*>(y), n, p, c);
    else affine<T, P, false>(ta, fa, tb, fb, pb, static_cast<T*>(y), n, p, c);
  });
}

}  // namespace cf::cpu
