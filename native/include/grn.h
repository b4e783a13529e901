// The two memory passes of global response normalization (GRN, lib/tensor/ops/grn.ts) over
// channels-last activations a, b, y of shape [N, P, C] (P = H * W pixels per sample), f32 or
// bf16, with per-sample, per-channel factors A, B and sums `out` of shape [N, C] in f32;
// beta [C] (or [N, C] with beta_per_sample) in beta_dtype, a's or f32 beside bf16 a (GRN's f32
// parameter under autocast):
//
//   sample_channel_dot:    out[n, c] = sum_p a[n, p, c] * b[n, p, c]     (b null: a * a)
//                          and, when a_sums is given, a_sums[n, c] = sum_p a[n, p, c] in the
//                          same pass (GRN's beta gradient from the dy its backward reads anyway)
//   sample_channel_affine: y[n, p, c] = a[n, p, c] * A[n, c] + b[n, p, c] * B[n, c] + beta[c]
//                          (b and B null: no second term; beta null: no shift; beta_per_sample:
//                          beta[n, c], as squeeze-and-excitation's input gradient needs)
//
// With `gelu`, the activations are the input of a GELU (erf form, G) that GRN normalizes, read
// without G(x) ever being written (UniRepLKNet's act = GRN(GELU(.))): x is the last tensor
// operand (b, or a when b is null), and
//   dot:    sum_p G(a)^2,  or sum_p a * G(b)
//   affine: y = G(a) * A + beta                          (b null: GRN's forward)
//           y = (a * A + G(b) * B) * G'(b)               (b given, beta null: GRN's input
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
  void sample_channel_dot(DType dtype, const void* a, const void* b, float* out, float* a_sums, int64_t n, int64_t p, \
                          int64_t c, bool gelu, Stream stream);                                                    \
  void sample_channel_affine(DType dtype, DType beta_dtype, const void* a, const float* fa, const void* b, const float* fb,          \
                             const void* beta, bool beta_per_sample, void* y, int64_t n, int64_t p, int64_t c, bool gelu,  \
                             Stream stream);                                                                       \
  }

CF_GRN_OPS(cpu)
CF_GRN_OPS(cuda)
#undef CF_GRN_OPS
