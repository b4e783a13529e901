// Fused scaled-dot-product attention, forward and backward, for one or more heads.
// For each batch b and head h, with q, k, v the [S, D] rows of that head, c = scale:
//   s_ij = c * (q_i . k_j)                  (j <= i only when causal; masked scores are -inf)
//   lse_i = log sum_j exp(s_ij)             (f32, saved for the backward)
//   o_i   = sum_j exp(s_ij - lse_i) v_j
// Backward, from dO and the saved O and lse (the probabilities are recomputed, never stored):
//   p_ij = exp(s_ij - lse_i),  delta_i = dO_i . o_i,  ds_ij = p_ij (dO_i . v_j - delta_i)
//   dq_i = c sum_j ds_ij k_j,  dk_j = c sum_i ds_ij q_i,  dv_j = sum_i p_ij dO_i
// No S x S matrix is ever written to memory. Storage is f32 or bf16; all math is f32.
//
// Layout: every tensor is a set of contiguous rows of D elements; row (b, h, s) of a tensor
// starts at element b * layout.batch + h * layout.head + s * layout.seq of its pointer.
//   plain  [B, H, S, D]:     {H*S*D, S*D, D}
//   packed [B, S, 3, H, D]:  {S*3*H*D, D, 3*H*D} with k = q + H*D, v = q + 2*H*D (the QKV
//                            projection's output, read in place: no permute copies)
//   [B, S, H, D]:            {S*H*D, D, H*D} (the packed form's output, ready for out_proj)
// q, k, v and their gradients share `in`; out and dout share `out`; lse is [B, H, S].
// dq, dk and dv are overwritten (not accumulated into).
//
// Floor: 4*B*H*S^2*D FLOPs forward, 2.5x that backward (two more matmuls recompute S and
// dP), half of each when causal. Bytes: forward reads q, k, v and writes o (4*B*H*S*D
// elements); backward reads q, k, v, o, dO and writes dq, dk, dv (8*B*H*S*D elements). At
// CLIP's S (17..257) and D 64 the arithmetic intensity is S/2 (bf16) FLOP/byte, so short
// sequences sit near the tensor-core ridge and long ones are compute bound.
#pragma once
#include "core.h"

namespace cf {

struct AttentionDims {
  int64_t batch = 0, heads = 0, seq = 0, dim = 0;
};

// Element strides of the [S, D] rows of one head; see the layout note above.
struct AttentionLayout {
  int64_t batch = 0, head = 0, seq = 0;
};

// The CUDA kernels keep a row of D values in registers, 8 per lane of a warp at most; the
// CPU takes any D.
constexpr int64_t kAttentionCudaMaxDim = 256;

}  // namespace cf

#define CF_ATTENTION_OPS(NS)                                                                                        \
  namespace cf::NS {                                                                                                \
  void attention_forward(DType dtype, const AttentionDims& dims, bool causal, float scale, const void* q,           \
                         const void* k, const void* v, AttentionLayout in, void* out, AttentionLayout out_layout,    \
                         float* lse, Stream stream);                                                                \
  void attention_backward(DType dtype, const AttentionDims& dims, bool causal, float scale, const void* q,          \
                          const void* k, const void* v, AttentionLayout in, const void* out, const void* dout,      \
                          AttentionLayout out_layout, const float* lse, void* dq, void* dk, void* dv, Stream stream); \
  }

CF_ATTENTION_OPS(cpu)
CF_ATTENTION_OPS(cuda)
#undef CF_ATTENTION_OPS
