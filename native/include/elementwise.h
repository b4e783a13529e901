// Elementwise ops. Unary ops map x -> y with up to two scalar parameters; their backward
// takes x and dy and gives dx. Binary ops broadcast numpy-style; the plan describes the
// output shape and each input's strides (0 along broadcast dims) after merging dims. Their
// operands may differ in dtype: a bf16 operand beside an f32 one is read as f32 and the
// output (and a backward's dy and result) is f32, as in PyTorch's type promotion; this is how
// a bf16 product under autocast joins the f32 residual stream without a cast pass.
// Floor: memory bound, bytes = sum over inputs and outputs of n * its element size.
#pragma once
#include <type_traits>

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

// A binary op's dtypes: each operand f32 or bf16, the output f32 when either operand is.
struct BinaryDTypes {
  DType a = DType::F32;
  DType b = DType::F32;
  DType out() const { return a == DType::BF16 && b == DType::BF16 ? DType::BF16 : DType::F32; }
};

}  // namespace cf

// Runs the statements with TA, TB and TO bound to the storage types of a binary op's operands
// and output (dt: BinaryDTypes): all f32, all bf16, or one bf16 operand with f32 elsewhere.
#define CF_BINARY_DTYPES(dt, TA, TB, TO, ...)                                                              \
  do {                                                                                                     \
    const ::cf::BinaryDTypes cf_dt_ = (dt);                                                                \
    CF_FLOAT_DTYPE(cf_dt_.a, TA,                                                                           \
                   CF_FLOAT_DTYPE(cf_dt_.b, TB,                                                            \
                                  using TO = std::conditional_t<std::is_same_v<TA, ::cf::bf16> &&          \
                                                                    std::is_same_v<TB, ::cf::bf16>,        \
                                                                ::cf::bf16, float>;                        \
                                  __VA_ARGS__));                                                           \
  } while (0)

#define CF_ELEMENTWISE_OPS(NS)                                                                                  \
  namespace cf::NS {                                                                                            \
  void unary(UnaryOp op, DType dtype, const void* x, void* y, int64_t n, float p0, float p1, Stream stream);    \
  void unary_backward(UnaryOp op, DType dtype, const void* x, const void* dy, void* dx, int64_t n, float p0,    \
                      float p1, Stream stream);                                                                 \
  void binary(BinaryOp op, BinaryDTypes dtypes, const void* a, const void* b, void* out,                       \
              const BroadcastPlan& plan, Stream stream);                                                        \
  /* Full-shape gradient of one operand (side 0: a, 1: b) of a binary op: out = dy * d op / d side, with */    \
  /* dy and out in the output's dtype. */                                                                       \
  void binary_backward(BinaryOp op, int side, BinaryDTypes dtypes, const void* a, const void* b, const void* dy, \
                       void* out, const BroadcastPlan& plan, Stream stream);                                    \
  }

CF_ELEMENTWISE_OPS(cpu)
CF_ELEMENTWISE_OPS(cuda)
#undef CF_ELEMENTWISE_OPS
