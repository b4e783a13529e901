// BatchNorm over channels-last [rows, C] on the CPU (see batchnorm.h). The per-channel sums
// are taken over fixed blocks of kBlockRows rows, each block's partial sums in f64 and the
// blocks combined in order: the same numbers whatever the thread count. Inner loops run
// along C, contiguous in memory.
#include <algorithm>
#include <cmath>
#include <vector>

#include "batchnorm.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

constexpr int64_t kBlockRows = 256;

// Per-channel sums over all rows of f(r, c, v) for v read from `a`: out[c] = sum_r f.
template <typename T, typename F>
void channel_sums(const T* a, int64_t rows, int64_t c, int parts, std::vector<double>* out, F f) {
  const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  std::vector<double> partial(static_cast<size_t>(blocks * c * parts), 0.0);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double* acc = partial.data() + b * c * parts;
      const int64_t r1 = std::min(rows, (b + 1) * kBlockRows);
      for (int64_t r = b * kBlockRows; r < r1; ++r) {
        const T* row = a + r * c;
        for (int64_t k = 0; k < c; ++k) f(r, k, Elem<T>::load(row, k), acc + k * parts);
      }
    }
  });
  for (int p = 0; p < parts; ++p) out[p].assign(static_cast<size_t>(c), 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t k = 0; k < c; ++k)
      for (int p = 0; p < parts; ++p) out[p][k] += partial[(b * c + k) * parts + p];
}

}  // namespace

void batchnorm_stats(DType dtype, const void* xv, float* mean, float* var, float* rstd, int64_t rows, int64_t c, float eps,
                     Stream) {
  CF_FLOAT_DTYPE(dtype, T, {
    const T* x = static_cast<const T*>(xv);
    std::vector<double> sum[1], sq[1];
    channel_sums(x, rows, c, 1, sum, [](int64_t, int64_t, float v, double* acc) { acc[0] += v; });
    std::vector<double> mu(static_cast<size_t>(c));
    for (int64_t k = 0; k < c; ++k) mu[k] = sum[0][k] / static_cast<double>(rows);
    channel_sums(x, rows, c, 1, sq, [&](int64_t, int64_t k, float v, double* acc) {
      const double d = v - mu[k];
      acc[0] += d * d;
    });
    for (int64_t k = 0; k < c; ++k) {
      const double v = sq[0][k] / static_cast<double>(rows);
      mean[k] = static_cast<float>(mu[k]);
      var[k] = static_cast<float>(v);
      rstd[k] = static_cast<float>(1.0 / std::sqrt(v + eps));
    }
  });
}

void batchnorm_apply(DType dtype, DType param_dtype, DType out_dtype, const BatchNormBranches& branches, const void* residualv, void* yv,
                     int64_t rows, int64_t c, Stream) {
  CF_SAME_OR_WIDER_DTYPES_2(dtype, param_dtype, out_dtype, T, P, R, {
    const R* residual = static_cast<const R*>(residualv);
    R* y = static_cast<R*>(yv);
    const int count = branches.count;
    // (x - mean) * scale + bias, not x * scale + (bias - mean * scale): the latter cancels
    // catastrophically when |mean| is large against the spread.
    std::vector<float> scale(static_cast<size_t>(count * c)), shift(static_cast<size_t>(count * c));
    for (int b = 0; b < count; ++b) {
      const P* weight = static_cast<const P*>(branches.weight[b]);
      const P* bias = static_cast<const P*>(branches.bias[b]);
      for (int64_t k = 0; k < c; ++k) {
        scale[b * c + k] = branches.rstd[b][k] * (weight ? Elem<P>::load(weight, k) : 1.0f);
        shift[b * c + k] = bias ? Elem<P>::load(bias, k) : 0.0f;
      }
    }
    parallel_for(rows, std::max<int64_t>(1, 8192 / c), [&](int64_t r0, int64_t r1) {
      std::vector<float> acc(static_cast<size_t>(c));
      for (int64_t r = r0; r < r1; ++r) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        // Branch by branch along the row (contiguous reads), summed in branch order.
        for (int b = 0; b < count; ++b) {
          const T* x = static_cast<const T*>(branches.x[b]) + r * c;
          const float* mean = branches.mean[b];
          for (int64_t k = 0; k < c; ++k) acc[k] += (Elem<T>::load(x, k) - mean[k]) * scale[b * c + k] + shift[b * c + k];
        }
        for (int64_t k = 0; k < c; ++k) {
          const int64_t i = r * c + k;
          Elem<R>::store(y, i, residual ? Elem<R>::load(residual, i) + acc[k] : acc[k]);
        }
      }
    });
  });
}

void batchnorm_backward_reduce(DType dtype, DType dy_dtype, const BatchNormBranches& branches, const void* dyv, float* sum_dy,
                               const BatchNormBranchGrads& grads, int64_t rows, int64_t c, Stream) {
  CF_SAME_OR_WIDER_DTYPES(dtype, dy_dtype, T, D, {
    const D* dy = static_cast<const D*>(dyv);
    const int count = branches.count;
    // Part 0 sums dy, part b + 1 branch b's dy * xhat, each over the same fixed blocks: a
    // branch's sums do not depend on how many branches share the pass.
    std::vector<double> sums[1 + kMaxBatchNormBranches];
    channel_sums(dy, rows, c, 1 + count, sums, [&](int64_t r, int64_t k, float g, double* acc) {
      acc[0] += g;
      for (int b = 0; b < count; ++b)
        acc[1 + b] += static_cast<double>(g) * (Elem<T>::load(static_cast<const T*>(branches.x[b]), r * c + k) - branches.mean[b][k]) *
                      branches.rstd[b][k];
    });
    for (int64_t k = 0; k < c; ++k) sum_dy[k] = static_cast<float>(sums[0][k]);
    for (int b = 0; b < count; ++b)
      for (int64_t k = 0; k < c; ++k) grads.sum_dy_xhat[b][k] = static_cast<float>(sums[1 + b][k]);
  });
}

void batchnorm_backward_input(DType dtype, DType param_dtype, DType dy_dtype, const BatchNormBranches& branches, const void* dyv,
                              const float* sum_dy, const BatchNormBranchGrads& grads, int64_t rows, int64_t c, bool batch_stats,
                              Stream) {
  CF_SAME_OR_WIDER_DTYPES_2(dtype, param_dtype, dy_dtype, T, P, D, {
    const D* dy = static_cast<const D*>(dyv);
    const int count = branches.count;
    const float inv_rows = 1.0f / static_cast<float>(rows);
    std::vector<float> gain(static_cast<size_t>(count * c)), mean_dy_xhat(static_cast<size_t>(count * c)), mean_dy(static_cast<size_t>(c));
    for (int64_t k = 0; k < c; ++k) mean_dy[k] = batch_stats ? sum_dy[k] * inv_rows : 0.0f;
    for (int b = 0; b < count; ++b) {
      const P* weight = static_cast<const P*>(branches.weight[b]);
      for (int64_t k = 0; k < c; ++k) {
        gain[b * c + k] = branches.rstd[b][k] * (weight ? Elem<P>::load(weight, k) : 1.0f);
        mean_dy_xhat[b * c + k] = batch_stats ? grads.sum_dy_xhat[b][k] * inv_rows : 0.0f;
      }
    }
    parallel_for(rows, std::max<int64_t>(1, 8192 / c), [&](int64_t r0, int64_t r1) {
      for (int b = 0; b < count; ++b) {
        T* dx = static_cast<T*>(grads.dx[b]);
        if (!dx) continue;
        const T* x = static_cast<const T*>(branches.x[b]);
        const float* mean = branches.mean[b];
        const float* rstd = branches.rstd[b];
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t k = 0; k < c; ++k) {
            const int64_t i = r * c + k;
            const float xhat = (Elem<T>::load(x, i) - mean[k]) * rstd[k];
            Elem<T>::store(dx, i, gain[b * c + k] * (Elem<D>::load(dy, i) - mean_dy[k] - xhat * mean_dy_xhat[b * c + k]));
          }
      }
    });
  });
}

}  // namespace cf::cpu
