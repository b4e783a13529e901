// Cross-entropy of logits [rows, C] (f32 or bf16, f32 math) against integer labels [rows]
// (i32), fused with the log-softmax. Per row r with label y = labels[r]:
//   lse_r  = log sum_c exp(x_rc)                       (saved, f32, for the backward)
//   loss_r = lse_r - (1 - eps) x_ry - (eps / C) sum_c x_rc
// which is PyTorch's cross_entropy with label_smoothing = eps: the target is
// (1 - eps) onehot(y) + eps / C. Rows whose label equals ignore_index have loss 0 and are
// left out of the mean. Reduction None writes loss_r to out [rows] (dtype of the logits);
// Sum writes sum_r loss_r to out [1]; Mean writes that sum over the number of rows not
// ignored (NaN when every row is ignored, as in PyTorch).
// Backward, recomputed from the logits and lse (nothing else is saved):
//   dx_rc = g_r * (exp(x_rc - lse_r) - eps / C - (1 - eps) [c == y_r]),   0 for ignored rows,
// with g_r = dy[r] (None), dy[0] (Sum) or dy[0] / count (Mean).
// Labels outside [0, C) that are not ignore_index: the CPU backend throws cf::Error before
// touching any output. The CUDA backend cannot report an error without a host sync, so it
// validates on the device instead: such a row never reads or writes outside its own row,
// its loss and its lse are NaN (so a mean or sum is NaN) and its gradient row is NaN.
// Floor: memory bound; forward reads rows * C * sizeof(T) (+ labels), backward reads that
// and writes the same again.
#pragma once
#include "core.h"

namespace cf {
enum class CrossEntropyReduction : int32_t { None = 0, Mean = 1, Sum = 2 };
}

#define CF_CROSS_ENTROPY_OPS(NS)                                                                                   \
  namespace cf::NS {                                                                                               \
  void cross_entropy_forward(DType dtype, const void* logits, const int32_t* labels, void* out, float* lse,        \
                             int64_t rows, int64_t classes, CrossEntropyReduction reduction, int32_t ignore_index, \
                             float smoothing, Stream stream);                                                      \
  void cross_entropy_backward(DType dtype, const void* logits, const int32_t* labels, const float* lse,            \
                              const void* dy, void* dlogits, int64_t rows, int64_t classes,                        \
                              CrossEntropyReduction reduction, int32_t ignore_index, float smoothing,              \
                              Stream stream);                                                                      \
  }

CF_CROSS_ENTROPY_OPS(cpu)
CF_CROSS_ENTROPY_OPS(cuda)
#undef CF_CROSS_ENTROPY_OPS
