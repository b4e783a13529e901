// GRN's passes on the CPU (see grn.h). The dot runs one task per (sample, block of 64
// channels), walking the pixels in order with f64 accumulators; the affine is elementwise
// over rows of C. The GELU forms compute GELU (and its derivative) a row segment at a time
// with the vectorized GELU (gelu.h) into f32 buffers.
#include <algorithm>
#include <vector>

#include "gelu.h"
#include "grn.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

constexpr int64_t kChannelBlock = 64;
constexpr int64_t kGeluSegment = 256;

template <typename T, bool Gelu>
void dot(const T* a, const T* b, float* out, float* a_sums, int64_t n, int64_t p, int64_t c) {
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  parallel_for(n * blocks, 1, [&](int64_t t0, int64_t t1) {
    double acc[kChannelBlock], acc_a[kChannelBlock];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = t / blocks, k0 = (t % blocks) * kChannelBlock, k1 = std::min(c, k0 + kChannelBlock);
      std::fill(acc, acc + kChannelBlock, 0.0);
      std::fill(acc_a, acc_a + kChannelBlock, 0.0);
      // x, the operand GELU applies to, is b (a when b is null).
      const T* x = b ? b : a;
      float gx[kChannelBlock];
      for (int64_t q = 0; q < p; ++q) {
        const int64_t row = (s * p + q) * c;
        if (Gelu) gelu_erf_values(x + row + k0, gx, nullptr, k1 - k0);
        for (int64_t k = k0; k < k1; ++k) {
          const float v = Gelu ? gx[k - k0] : Elem<T>::load(x, row + k);
          acc[k - k0] += static_cast<double>(b ? Elem<T>::load(a, row + k) : v) * v;
        }
        if (a_sums)
          for (int64_t k = k0; k < k1; ++k) acc_a[k - k0] += Elem<T>::load(a, row + k);
      }
      for (int64_t k = k0; k < k1; ++k) out[s * c + k] = static_cast<float>(acc[k - k0]);
      if (a_sums)
        for (int64_t k = k0; k < k1; ++k) a_sums[s * c + k] = static_cast<float>(acc_a[k - k0]);
    }
  });
}

template <typename T, typename P, bool Gelu>
void affine(const T* a, const float* fa, const T* b, const float* fb, const P* beta, bool beta_per_sample, T* y, int64_t n, int64_t p,
            int64_t c) {
  // The shifts as f32, one row per sample (a single row shared by all samples for beta [C]).
  const int64_t shift_rows = beta_per_sample ? n : 1;
  std::vector<float> shifts(static_cast<size_t>(shift_rows * c), 0.0f);
  if (beta)
    for (int64_t k = 0; k < shift_rows * c; ++k) shifts[k] = Elem<P>::load(beta, k);
  parallel_for(n * p, std::max<int64_t>(1, 8192 / c), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* ra = fa + (r / p) * c;
      const float* rb = b ? fb + (r / p) * c : nullptr;
      const float* shift = shifts.data() + (beta_per_sample ? (r / p) * c : 0);
      if (!Gelu) {
        for (int64_t k = 0; k < c; ++k) {
          const int64_t i = r * c + k;
          float v = Elem<T>::load(a, i) * ra[k] + shift[k];
          if (rb) v += Elem<T>::load(b, i) * rb[k];
          Elem<T>::store(y, i, v);
        }
        continue;
      }
      float gx[kGeluSegment], dg[kGeluSegment];
      for (int64_t k0 = 0; k0 < c; k0 += kGeluSegment) {
        const int64_t len = std::min(kGeluSegment, c - k0), i0 = r * c + k0;
        if (!rb) {
          gelu_erf_values(a + i0, gx, nullptr, len);
          for (int64_t j = 0; j < len; ++j) Elem<T>::store(y, i0 + j, gx[j] * ra[k0 + j] + shift[k0 + j]);
        } else {
          gelu_erf_values(b + i0, gx, dg, len);
          for (int64_t j = 0; j < len; ++j)
            Elem<T>::store(y, i0 + j, (Elem<T>::load(a, i0 + j) * ra[k0 + j] + gx[j] * rb[k0 + j]) * dg[j]);
        }
      }
    }
  });
}

}  // namespace

void sample_channel_dot(DType dtype, const void* a, const void* b, float* out, float* a_sums, int64_t n, int64_t p, int64_t c, bool gelu,
                        Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    if (gelu) dot<T, true>(ta, tb, out, a_sums, n, p, c);
    else dot<T, false>(ta, tb, out, a_sums, n, p, c);
  });
}

void sample_channel_affine(DType dtype, DType beta_dtype, const void* a, const float* fa, const void* b, const float* fb, const void* beta,
                           bool beta_per_sample, void* y, int64_t n, int64_t p, int64_t c, bool gelu, Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, beta_dtype, T, P, {
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    const P* pb = static_cast<const P*>(beta);
    if (gelu) affine<T, P, true>(ta, fa, tb, fb, pb, beta_per_sample, static_cast<T*>(y), n, p, c);
    else affine<T, P, false>(ta, fa, tb, fb, pb, beta_per_sample, static_cast<T*>(y), n, p, c);
  });
}

}  // namespace cf::cpu
