// Reductions over one axis. The tensor is viewed as [outer, n, inner] and reduced over n:
// out[o, i] = sum / mean / max over k of x[o, k, i]. Max also writes the index of the
// (first) maximum, which its backward scatters the gradient to. out has x's dtype, or f32
// for a bf16 x's sum or mean (out_dtype): a bf16 gradient's sum for an f32 parameter, kept
// in f32 instead of rounded to bf16 on the way.
// Floor: memory bound, bytes = (outer * n * inner + outer * inner) * sizeof(T).
#pragma once
#include "core.h"

namespace cf {
enum class ReduceOp : int32_t { Sum = 0, Mean = 1, Max = 2 };
}

#define CF_REDUCE_OPS(NS)                                                                                        \
  namespace cf::NS {                                                                                             \
  /* indices (i32, may be null unless op is Max) receives the argmax along the axis */                            \
  void reduce(ReduceOp op, DType dtype, DType out_dtype, const void* x, void* out, int32_t* indices, int64_t outer, int64_t n,     \
              int64_t inner, Stream stream);                                                                     \
  /* dx[o, k, i] = (k == indices[o, i]) ? dy[o, i] : 0 */                                                        \
  void reduce_max_backward(DType dtype, const void* dy, const int32_t* indices, void* dx, int64_t outer, int64_t n, \
                           int64_t inner, Stream stream);                                                        \
  }

CF_REDUCE_OPS(cpu)
CF_REDUCE_OPS(cuda)
#undef CF_REDUCE_OPS
