// The two memory passes of global response normalization (GRN, lib/tensor/ops/grn.ts) over
// channels-last activations a, b, y of shape [N, P, C] (P = H * W pixels per sample), f32 or
// bf16, with per-sample, per-channel factors A, B and sums `out` of shape [N, C] in f32. The
// operand x that GRN normalizes is b, or a when b is null; an optional input bias [C] is added
// to x as it is read (the bias of the linear layer before GRN, so that layer writes no bias and
// its gradient comes from the affine pass's sums). beta [C] (or [N, C] with beta_per_sample)
// and the input bias share param_dtype: a's, or f32 beside bf16 a (f32 parameters under autocast).
//
//   sample_channel_dot:    out[n, c] = sum_p a[n, p, c] * x[n, p, c]     (b null: x * x)
//                          and, when a_sums is given, a_sums[n, c] = sum_p a[n, p, c] in the
//                          same pass (GRN's beta gradient from the dy its backward reads anyway)
//   sample_channel_affine: y[n, p, c] = a[n, p, c] * A[n, c] + b[n, p, c] * B[n, c] + beta[c]
//                          (b and B null: no second term; beta null: no shift; beta_per_sample:
//                          beta[n, c], as squeeze-and-excitation's input gradient needs), and,
//                          when y_sums is given, y_sums[n, c] = sum_p y[n, p, c] (f32 values
//                          before rounding to y's dtype)
//
// With `gelu`, x is the input of a GELU (erf form, G) that GRN normalizes, read without G(x)
// ever being written (UniRepLKNet's act = GRN(GELU(.))):
//   dot:    sum_p G(x)^2,  or sum_p a * G(x)
//   affine: y = G(x) * A + beta                          (b null: GRN's forward)
//           y = (a * A + G(x) * B) * G'(x)               (b given, beta null: GRN's input
//                                                          gradient carried through the GELU)
//
// GRN's forward is one dot (the squared norms) and one affine (x * (1 + gamma * Nx) + beta);
// its backward one dot (sum_p dy * x) and one affine (dy * gain + x * coefficient). The
// [N, C]-sized math between them is left to ordinary ops.
//
// Floor: memory bound; the dot reads one or two [N, P, C] tensors, the affine reads one or
// two and writes one. Sums accumulate per (n, c) in a fixed order (deterministic).
#pragma once
#include "core.h"

#define CF_GRN_OPS(NS)                                                                                             \
  namespace cf::NS {                                                                                               \
  void sample_channel_dot(DType dtype, DType bias_dtype, const void* a, const void* b, const void* x_bias, float* out,   \
                          float* a_sums, int64_t n, int64_t p, int64_t c, bool gelu, Stream stream);                      \
  void sample_channel_affine(DType dtype, DType param_dtype, const void* a, const float* fa, const void* b, const float* fb, \
                             const void* beta, bool beta_per_sample, const void* x_bias, void* y, float* y_sums, int64_t n, \
                             int64_t p, int64_t c, bool gelu, Stream stream);                                            \
  }

CF_GRN_OPS(cpu)
CF_GRN_OPS(cuda)
#undef CF_GRN_OPS
