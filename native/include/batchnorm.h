// Batch normalization over the channel axis of channels-last data (NHWC, UniRepLKNet's
// layout): x, y, dy, dx are [rows, C] (rows = N * H * W) in f32 or bf16; weight and bias are
// [C] in the same dtype (weight may be null, meaning 1); mean, rstd, var and the gradient sums
// are [C] f32. f32 math; the CPU accumulates in f64 over fixed blocks of rows combined in
// order, so its results do not depend on the thread count.
//
//   stats:           mean_c = sum_r x_rc / rows,  var_c = sum_r (x_rc - mean_c)^2 / rows (biased),
//                    rstd_c = 1 / sqrt(var_c + eps)
//   apply:           y_rc = sum over branches b of (x_brc - mean_bc) * rstd_bc * weight_bc + bias_bc
//                    [+ residual_rc]. One norm is one branch (eval mode passes the running mean
//                    and 1 / sqrt(running_var + eps)); the parallel branches of a Dilated Reparam
//                    Block, whose BatchNorm outputs are summed, are summed in one pass that reads
//                    each x_b and writes y once, where a norm per branch and a sum would write
//                    and read every branch's output again. With a residual, y has the residual's
//                    dtype, x's or f32 beside bf16 x: a block's last norm writes the f32 residual
//                    stream's sum x + BN(z) in one pass, where a bf16 BN output and an add would
//                    write and read it again
//   backward_reduce: sum_dy_c = sum_r dy_rc,  sum_dy_xhat_c = sum_r dy_rc * (x_rc - mean_c) * rstd_c
//                    (the bias and weight gradients)
//   backward_input:  dx_rc = weight_c * rstd_c * (dy_rc - (sum_dy_c + xhat_rc * sum_dy_xhat_c) / rows)
//                    when the statistics came from the batch, weight_c * rstd_c * dy_rc when they
//                    were constants (eval mode)
// The backward takes branches: one norm is one branch, a sum's branches share dy, and
// each pass reads dy once for all of them (sum_dy, the same for every branch, is written once).
// dy has x's dtype or f32 beside bf16 x (the gradient of apply's f32 residual sum, read as it
// is rather than cast to bf16 first); dx has x's dtype.
//
// Floor: memory bound. stats reads x once on CUDA (twice on the CPU, whose two f64 passes are
// the reference), apply reads x and writes y, the backward reads x and dy twice and writes dx:
// 1, 2 and 5 passes of rows * C * sizeof(T) bytes; apply of a sum reads the branches' x and
// writes y: branches + 1 passes; the sum's backward reads dy twice and each branch's x twice and
// writes each dx: 3 * branches + 2 passes.
#pragma once
#include "core.h"

namespace cf {

constexpr int kMaxBatchNormBranches = 8;

// The branches of apply and of the backward: x [rows, C] in one dtype; mean, rstd [C] f32;
// weight, bias [C] in one dtype for all branches (null: 1 and 0).
struct BatchNormBranches {
  const void* x[kMaxBatchNormBranches];
  const float* mean[kMaxBatchNormBranches];
  const float* rstd[kMaxBatchNormBranches];
  const void* weight[kMaxBatchNormBranches];
  const void* bias[kMaxBatchNormBranches];
  int count;
};

// The backward's per-branch outputs: sum_dy_xhat [C] f32 (backward_reduce writes them,
// backward_input reads them) and dx [rows, C] in x's dtype (null: not needed).
struct BatchNormBranchGrads {
  float* sum_dy_xhat[kMaxBatchNormBranches];
  void* dx[kMaxBatchNormBranches];
};

}  // namespace cf

#define CF_BATCHNORM_OPS(NS)                                                                                          \
  namespace cf::NS {                                                                                                  \
  void batchnorm_stats(DType dtype, const void* x, float* mean, float* var, float* rstd, int64_t rows, int64_t c,     \
                       float eps, Stream stream);                                                                     \
  void batchnorm_apply(DType dtype, DType param_dtype, DType out_dtype, const BatchNormBranches& branches,           \
                       const void* residual, void* y, int64_t rows, int64_t c, Stream stream);                        \
  void batchnorm_backward_reduce(DType dtype, DType dy_dtype, const BatchNormBranches& branches, const void* dy,      \
                                 float* sum_dy, const BatchNormBranchGrads& grads, int64_t rows, int64_t c,           \
                                 Stream stream);                                                                      \
  void batchnorm_backward_input(DType dtype, DType param_dtype, DType dy_dtype, const BatchNormBranches& branches,    \
                                const void* dy, const float* sum_dy, const BatchNormBranchGrads& grads, int64_t rows, \
                                int64_t c, bool batch_stats, Stream stream);                                          \
  }

CF_BATCHNORM_OPS(cpu)
CF_BATCHNORM_OPS(cuda)
#undef CF_BATCHNORM_OPS
