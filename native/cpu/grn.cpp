// GRN's passes on the CPU (see grn.h). The dot runs one task per (sample, block of 64
// channels), walking the pixels in order with f64 accumulators; the affine is elementwise
// over rows of C.
#include <algorithm>
#include <vector>

#include "grn.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {
constexpr int64_t kChannelBlock = 64;
}

void sample_channel_dot(DType dtype, const void* av, const void* bv, float* out, int64_t n, int64_t p, int64_t c, Stream) {
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
  CF_FLOAT_DTYPE(dtype, T, {
    const T* a = static_cast<const T*>(av);
    const T* b = bv ? static_cast<const T*>(bv) : a;
    parallel_for(n * blocks, 1, [&](int64_t t0, int64_t t1) {
      double acc[kChannelBlock];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t s = t / blocks, k0 = (t % blocks) * kChannelBlock, k1 = std::min(c, k0 + kChannelBlock);
        std::fill(acc, acc + kChannelBlock, 0.0);
        for (int64_t q = 0; q < p; ++q) {
          const int64_t row = (s * p + q) * c;
          for (int64_t k = k0; k < k1; ++k) acc[k - k0] += static_cast<double>(Elem<T>::load(a, row + k)) * Elem<T>::load(b, row + k);
        }
        for (int64_t k = k0; k < k1; ++k) out[s * c + k] = static_cast<float>(acc[k - k0]);
      }
    });
  });
}

void sample_channel_affine(DType dtype, DType beta_dtype, const void* av, const float* fa, const void* bv, const float* fb, const void* betav, void* yv,
                           int64_t n, int64_t p, int64_t c, Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, beta_dtype, T, P, {
    const T* a = static_cast<const T*>(av);
    const T* b = static_cast<const T*>(bv);
    const P* beta = static_cast<const P*>(betav);
    T* y = static_cast<T*>(yv);
    std::vector<float> shift(static_cast<size_t>(c), 0.0f);
    if (beta)
      for (int64_t k = 0; k < c; ++k) shift[k] = Elem<P>::load(beta, k);
    parallel_for(n * p, std::max<int64_t>(1, 8192 / c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* ra = fa + (r / p) * c;
        const float* rb = b ? fb + (r / p) * c : nullptr;
        for (int64_t k = 0; k < c; ++k) {
          const int64_t i = r * c + k;
          float v = Elem<T>::load(a, i) * ra[k] + shift[k];
          if (rb) v += Elem<T>::load(b, i) * rb[k];
          Elem<T>::store(y, i, v);
        }
      }
    });
  });
}

}  // namespace cf::cpu
