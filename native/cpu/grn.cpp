// GRN's passes on the CPU (see grn.h). The dot runs one task per (sample, block of 64
// channels), walking the pixels in order with f64 accumulators. The affine is elementwise over
// rows of C, or, when it also sums its output per (sample, channel), laid out like the dot so
// each sum has one owner and a fixed order. Row segments go through f32 buffers: the operand x
// with its per-channel input bias, and in the GELU forms GELU (and its derivative) from the
// vectorized GELU (gelu.h).
#include <algorithm>
#include <vector>

#include "gelu.h"
#include "grn.h"
#include "row_math.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

using rowmath::values_f32;

constexpr int64_t kChannelBlock = 64;
constexpr int64_t kSegment = 256;  // channels per row segment (f32 buffers on the stack)

// xv[j] = x[i0 + j] + bias[j] for one segment; bias may be null.
template <typename T>
inline void load_x(const T* x, int64_t i0, const float* bias, int64_t len, float* xv) {
  for (int64_t j = 0; j < len; ++j) xv[j] = Elem<T>::load(x, i0 + j) + (bias ? bias[j] : 0.0f);
}

template <typename T, bool Gelu>
void dot(const T* a, const T* b, const float* x_bias, float* out, float* a_sums, int64_t n, int64_t p, int64_t c) {
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  // x, the operand the input bias and GELU apply to, is b (a when b is null).
  const T* x = b ? b : a;
  parallel_for(n * blocks, 1, [&](int64_t t0, int64_t t1) {
    double acc[kChannelBlock], acc_a[kChannelBlock];
    float xv[kChannelBlock], gx[kChannelBlock];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = t / blocks, k0 = (t % blocks) * kChannelBlock, len = std::min(c, k0 + kChannelBlock) - k0;
      std::fill(acc, acc + kChannelBlock, 0.0);
      std::fill(acc_a, acc_a + kChannelBlock, 0.0);
      for (int64_t q = 0; q < p; ++q) {
        const int64_t i0 = (s * p + q) * c + k0;
        load_x(x, i0, x_bias ? x_bias + k0 : nullptr, len, xv);
        if (Gelu) gelu_erf_values(xv, gx, nullptr, len);
        for (int64_t j = 0; j < len; ++j) {
          const float v = Gelu ? gx[j] : xv[j];
          acc[j] += static_cast<double>(b ? Elem<T>::load(a, i0 + j) : v) * v;
        }
        if (a_sums)
          for (int64_t j = 0; j < len; ++j) acc_a[j] += Elem<T>::load(a, i0 + j);
      }
      for (int64_t j = 0; j < len; ++j) out[s * c + k0 + j] = static_cast<float>(acc[j]);
      if (a_sums)
        for (int64_t j = 0; j < len; ++j) a_sums[s * c + k0 + j] = static_cast<float>(acc_a[j]);
    }
  });
}

template <typename T>
struct AffineJob {
  const T* a;
  const float* fa;
  const T* b;
  const float* fb;
  const float* shifts;  // f32, one row per sample with beta_per_sample, else one row; zeros without beta
  bool beta_per_sample;
  const float* x_bias;  // f32 [C] or null
  T* y;
  int64_t p, c;
};

// GCC cannot see that load_x writes the xv[0, len) that GELU then reads, and warns that xv may
// be uninitialized where it is passed as a const pointer.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// y for row r, channels [k0, k0 + len) (len <= kSegment), stored; added to sums (f64) when given.
template <typename T, bool Gelu>
inline void affine_segment(const AffineJob<T>& J, int64_t r, int64_t k0, int64_t len, double* sums) {
  const int64_t s = r / J.p, i0 = r * J.c + k0;
  const float* ra = J.fa + s * J.c + k0;
  const float* rb = J.b ? J.fb + s * J.c + k0 : nullptr;
  const float* shift = J.shifts + (J.beta_per_sample ? s * J.c : 0) + k0;
  float xv[kSegment], gx[kSegment], dg[kSegment];
  load_x(J.b ? J.b : J.a, i0, J.x_bias ? J.x_bias + k0 : nullptr, len, xv);
  if (Gelu) gelu_erf_values(xv, gx, rb ? dg : nullptr, len);
  for (int64_t j = 0; j < len; ++j) {
    float v;
    if (!Gelu) {
      v = (rb ? Elem<T>::load(J.a, i0 + j) : xv[j]) * ra[j] + shift[j];
      if (rb) v += xv[j] * rb[j];
    } else if (!rb) {
      v = gx[j] * ra[j] + shift[j];
    } else {
      v = (Elem<T>::load(J.a, i0 + j) * ra[j] + gx[j] * rb[j]) * dg[j];
    }
    Elem<T>::store(J.y, i0 + j, v);
    if (sums) sums[j] += v;
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

template <typename T, bool Gelu>
void affine(const AffineJob<T>& J, float* y_sums, int64_t n) {
  const int64_t p = J.p, c = J.c;
  if (!y_sums) {
    parallel_for(n * p, std::max<int64_t>(1, 8192 / c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k0 = 0; k0 < c; k0 += kSegment) affine_segment<T, Gelu>(J, r, k0, std::min(kSegment, c - k0), nullptr);
    });
    return;
  }
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  parallel_for(n * blocks, 1, [&](int64_t t0, int64_t t1) {
    double acc[kChannelBlock];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t s = t / blocks, k0 = (t % blocks) * kChannelBlock, len = std::min(c, k0 + kChannelBlock) - k0;
      std::fill(acc, acc + kChannelBlock, 0.0);
      for (int64_t q = 0; q < p; ++q) affine_segment<T, Gelu>(J, s * p + q, k0, len, acc);
      for (int64_t j = 0; j < len; ++j) y_sums[s * c + k0 + j] = static_cast<float>(acc[j]);
    }
  });
}

}  // namespace

void sample_channel_dot(DType dtype, DType bias_dtype, const void* a, const void* b, const void* x_bias, float* out, float* a_sums,
                        int64_t n, int64_t p, int64_t c, bool gelu, Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, bias_dtype, T, P, {
    const std::vector<float> bias = values_f32<P>(x_bias, c);
    const float* xb = x_bias ? bias.data() : nullptr;
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    if (gelu) dot<T, true>(ta, tb, xb, out, a_sums, n, p, c);
    else dot<T, false>(ta, tb, xb, out, a_sums, n, p, c);
  });
}

void sample_channel_affine(DType dtype, DType param_dtype, const void* a, const float* fa, const void* b, const float* fb, const void* beta,
                           bool beta_per_sample, const void* x_bias, void* y, float* y_sums, int64_t n, int64_t p, int64_t c, bool gelu,
                           Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, param_dtype, T, P, {
    const std::vector<float> shifts = values_f32<P>(beta, (beta_per_sample ? n : 1) * c);
    const std::vector<float> bias = values_f32<P>(x_bias, c);
    const AffineJob<T> J{static_cast<const T*>(a), fa, static_cast<const T*>(b), fb, shifts.data(), beta_per_sample,
                         x_bias ? bias.data() : nullptr, static_cast<T*>(y), p, c};
    if (gelu) affine<T, true>(J, y_sums, n);
    else affine<T, false>(J, y_sums, n);
  });
}

}  // namespace cf::cpu
