// Elementwise ops. Unary ops map x -> y with up to two scalar parameters; their backward
// takes x and dy and gives dx. Binary ops broadcast numpy-style; the plan describes the
// output shape and each input's strides (0 along broadcast dims) after merging dims.
// Floor: memory bound, bytes = (inputs + outputs) * n * sizeof(T).
#pragma once
#include "core.h"

namespace cf {

enum class UnaryOp : int32_t {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Square, Reciprocal, Sigmoid, Tanh, Relu,
  GeluErf,    // x * Phi(x)
  GeluTanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  QuickGelu,  // x * sigmoid(1.702 x)
  Affine,     // p0 * x + p1
  Pow,        // x ^ p0
  Clamp,      // min(max(x, p0), p1)
  Count
};

enum class BinaryOp : int32_t { Add, Sub, Mul, Div, Maximum, Minimum, Count };

struct BroadcastPlan {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t a_stride[kMaxRank] = {};
  int64_t b_stride[kMaxRank] = {};
  int64_t numel = 0;
};

}  // namespace cf

#define CF_ELEMENTWISE_OPS(NS)                                                                                  \
  namespace cf::NS {                                                                                            \
  void unary(UnaryOp op, DType dtype, const void* x, void* y, int64_t n, float p0, float p1, Stream stream);    \
  void unary_backward(UnaryOp op, DType dtype, const void* x, const void* dy, void* dx, int64_t n, float p0,    \
                      float p1, Stream stream);                                                                 \
  void binary(BinaryOp op, DType dtype, const void* a, const void* b, void* out, const BroadcastPlan& plan,     \
              Stream stream);                                                                                   \
  /* Full-shape gradient of one operand (side 0: a, 1: b) of a binary op: out = dy * d op / d side. */         \
  void binary_backward(BinaryOp op, int side, DType dtype, const void* a, const void* b, const void* dy,        \
                       void* out, const BroadcastPlan& plan, Stream stream);                                    \
  }

CF_ELEMENTWISE_OPS(cpu)
CF_ELEMENTWISE_OPS(cuda)
#undef CF_ELEMENTWISE_OPS
